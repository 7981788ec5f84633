using OmniTune.Models.Qwen25Omni.Positions;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>
/// One batch for the thinker, as the Qwen2.5-Omni processor produces it. Multimodal items are global across the batch:
/// the k-th image fills the k-th run of image placeholders counted row-major (same for videos and audios).
/// </summary>
public sealed record ThinkerInputs
{
    /// <summary>Token ids [B, S].</summary>
    public required Tensor InputIds { get; init; }

    /// <summary>1 = token, 0 = padding, [B, S]; null means no padding.</summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>Image patch rows [ΣN, C·T·P·P].</summary>
    public Tensor? PixelValues { get; init; }

    /// <summary>Grid of each image.</summary>
    public IReadOnlyList<GridThw> ImageGrids { get; init; } = [];

    /// <summary>Video patch rows [ΣN, C·T·P·P].</summary>
    public Tensor? PixelValuesVideos { get; init; }

    /// <summary>Grid of each video.</summary>
    public IReadOnlyList<GridThw> VideoGrids { get; init; } = [];

    /// <summary>Seconds per temporal group of each video (temporal_patch_size / fps).</summary>
    public IReadOnlyList<double> VideoSecondsPerGrid { get; init; } = [];

    /// <summary>Log-mel features [A, mel bins, frames] (padded).</summary>
    public Tensor? InputFeatures { get; init; }

    /// <summary>Valid frames of each audio [A, frames].</summary>
    public Tensor? FeatureAttentionMask { get; init; }

    /// <summary>Whether each video's audio track is interleaved with it (must match how the prompt was built).</summary>
    public bool UseAudioInVideo { get; init; }

    /// <summary>Explicit position ids [3, B, S]; computed with get_rope_index when null.</summary>
    public Tensor? PositionIds { get; init; }
}
