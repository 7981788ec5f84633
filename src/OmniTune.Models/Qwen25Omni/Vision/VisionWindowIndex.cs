using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>How the vision encoder groups patches: the window permutation and the segment lengths of both attention kinds.</summary>
/// <param name="WindowIndex">Merged-token order after the window permutation (indices into the original order).</param>
/// <param name="WindowSegments">Patch counts of the non-empty windows, in permuted order.</param>
/// <param name="FullSegments">Patch counts of each temporal group of each image/video (full-attention blocks).</param>
public sealed record VisionWindowIndex(long[] WindowIndex, int[] WindowSegments, int[] FullSegments)
{
    /// <summary>
    /// HF's get_window_index (reference §4.4): per image, pad the merged grid up by <c>w − (l mod w)</c> (a whole extra
    /// window when already divisible), cut w×w windows per temporal group, enumerate row-major, drop padding and empty
    /// windows.
    /// </summary>
    public static VisionWindowIndex For(IReadOnlyList<GridThw> grids, int windowSize, int mergeSize, int patchSize)
    {
        int w = windowSize / mergeSize / patchSize;
        if (w < 1) throw new ArgumentException($"window_size {windowSize} is smaller than one merged token ({mergeSize}×{patchSize} px)");
        int unit = mergeSize * mergeSize;
        var index = new List<long>();
        var windows = new List<int>();
        var full = new List<int>();
        long offset = 0;
        foreach (GridThw g in grids)
        {
            if (g.H % mergeSize != 0 || g.W % mergeSize != 0)
                throw new ArgumentException($"grid {g} is not divisible by spatial_merge_size {mergeSize}");
            int lh = g.H / mergeSize, lw = g.W / mergeSize;
            int windowsH = (lh + w - lh % w) / w, windowsW = (lw + w - lw % w) / w;
            for (int t = 0; t < g.T; t++)
            {
                full.Add(g.H * g.W);
                for (int wr = 0; wr < windowsH; wr++)
                {
                    for (int wc = 0; wc < windowsW; wc++)
                    {
                        int count = 0;
                        for (int r = wr * w; r < Math.Min((wr + 1) * w, lh); r++)
                        {
                            for (int c = wc * w; c < Math.Min((wc + 1) * w, lw); c++)
                            {
                                index.Add(offset + ((long)t * lh * lw) + ((long)r * lw) + c);
                                count++;
                            }
                        }
                        if (count > 0) windows.Add(count * unit);
                    }
                }
            }
            offset += (long)g.T * lh * lw;
        }
        return new VisionWindowIndex(index.ToArray(), windows.ToArray(), full.ToArray());
    }

    /// <summary>Cumulative window boundaries starting at 0 (HF's cu_window_seqlens after removing duplicates).</summary>
    public int[] CumulativeWindowSeqlens()
    {
        var result = new List<int> { 0 };
        foreach (int s in WindowSegments) result.Add(result[^1] + s);
        return result.ToArray();
    }
}
