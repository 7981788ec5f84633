using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Data.Datasets;

/// <summary>One collated micro-batch; owns its tensors.</summary>
public sealed class TrainingBatch : IDisposable
{
    /// <summary>Creates a batch.</summary>
    public TrainingBatch(ThinkerInputs inputs, Tensor labels, IReadOnlyList<SampleLocation> locations, int realTokens)
    {
        Inputs = inputs;
        Labels = labels;
        Locations = locations;
        RealTokens = realTokens;
    }

    /// <summary>Model inputs (ids, mask, positions, media).</summary>
    public ThinkerInputs Inputs { get; }

    /// <summary>Labels [B, S] with −100 on padding and untrained tokens.</summary>
    public Tensor Labels { get; }

    /// <summary>Sources of the samples.</summary>
    public IReadOnlyList<SampleLocation> Locations { get; }

    /// <summary>Tokens that are not padding.</summary>
    public int RealTokens { get; }

    /// <summary>
    /// With packed rows: each token's sample number in its row [B, S] (1, 2, …; 0 on padding), which the per-sample loss
    /// averages by; null when every row holds one sample.
    /// </summary>
    public Tensor? Segments { get; init; }

    Tensor?[] Tensors => [Inputs.InputIds, Inputs.AttentionMask, Inputs.PixelValues, Inputs.PixelValuesVideos, Inputs.InputFeatures, Inputs.FeatureAttentionMask, Inputs.PositionIds, Labels, Segments];

    /// <summary>Moves the batch's tensors out of the current dispose scope (the batch owns them); returns this batch.</summary>
    public TrainingBatch DetachFromDisposeScope()
    {
        foreach (Tensor? t in Tensors) t?.DetachFromDisposeScope();
        return this;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (Tensor? t in Tensors) t?.Dispose();
    }
}
