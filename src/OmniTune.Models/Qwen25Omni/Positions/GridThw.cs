namespace OmniTune.Models.Qwen25Omni.Positions;

/// <summary>An image's or video's size in patches: temporal groups, patch rows, patch columns.</summary>
/// <param name="T">Temporal patch groups (1 for an image).</param>
/// <param name="H">Patch rows.</param>
/// <param name="W">Patch columns.</param>
public readonly record struct GridThw(int T, int H, int W)
{
    /// <summary>Number of patches (rows of pixel_values).</summary>
    public long Patches => (long)T * H * W;

    /// <summary>Number of LLM tokens after merging m×m patch blocks.</summary>
    public long Tokens(int mergeSize) => Patches / (mergeSize * mergeSize);
}
