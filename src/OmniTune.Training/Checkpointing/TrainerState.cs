using System.Text.Json.Nodes;

namespace OmniTune.Training.Checkpointing;

/// <summary>Everything besides weights and optimizer moments that an exact resume needs; stored as trainer_state.json.</summary>
public sealed record TrainerState
{
    /// <summary>Completed optimizer steps.</summary>
    public int Iteration { get; init; }

    /// <summary>Samples consumed (drives the learning-rate schedule).</summary>
    public long ConsumedSamples { get; init; }

    /// <summary>Epoch of the next micro-batch.</summary>
    public int LoaderEpoch { get; init; }

    /// <summary>Micro-batch index of the next micro-batch within its epoch.</summary>
    public int LoaderBatch { get; init; }

    /// <summary>Data-parallel size the loader position refers to.</summary>
    public int DataParallelSize { get; init; } = 1;

    /// <summary>torch CPU generator state (base64), when saved.</summary>
    public string? RngState { get; init; }

    /// <summary>Steps skipped for non-finite loss or gradients.</summary>
    public int SkippedIterations { get; init; }

    /// <summary>Byte length of every file of the iteration folder handed to a binary reader (optimizer state), checked before loading.</summary>
    public Dictionary<string, long>? FileLengths { get; init; }

    /// <summary>The resolved configuration of the run that wrote the checkpoint.</summary>
    public JsonObject? Config { get; init; }
}
