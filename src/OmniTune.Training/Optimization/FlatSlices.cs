namespace OmniTune.Training.Optimization;

/// <summary>
/// The slices a flat tensor is walked in by element-wise optimizer work (AdamW's update, the gradient norm, the replica
/// check), so that its temporaries are one slice long instead of as long as the largest parameter (the 7B's embedding:
/// 545M elements).
/// </summary>
public static class FlatSlices
{
    /// <summary>Elements per slice (16 MiB in fp32).</summary>
    public const long Elements = 1L << 22;

    /// <summary>(start, length) of each slice of <paramref name="total"/> elements.</summary>
    public static IEnumerable<(long Start, long Length)> Of(long total)
    {
        for (long start = 0; start < total; start += Elements) yield return (start, Math.Min(Elements, total - start));
    }
}
