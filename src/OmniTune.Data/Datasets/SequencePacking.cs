namespace OmniTune.Data.Datasets;

/// <summary>
/// How samples share rows: none (one per row), plain packing (LLaMA-Factory's and MindSpeed-MM's <c>packing</c>: the
/// row is one sequence — its samples attend to each other and its TMRoPE positions run on across them, as those tools
/// compute them) or neat packing (<c>neat_packing</c>: each sample attends only to itself and its positions, media
/// included, restart — exactly as when it is alone in its row).
/// </summary>
public enum PackingMode
{
    /// <summary>One sample per row.</summary>
    None,

    /// <summary>Several samples per row, one sequence.</summary>
    Plain,

    /// <summary>Several samples per row, each on its own (block-diagonal causal attention, positions per sample).</summary>
    Neat,
}

/// <summary>
/// Sequence packing as LLaMA-Factory builds it (llamafactory_data.md §5.5): within each preprocessing batch of samples
/// (data.json <c>preprocessing_batch_size</c>, 1,000 by default), lengths are bin-packed by LLaMA-Factory's greedy knapsack
/// — sorted ascending, each bin filled by repeatedly taking the largest remaining length that still fits, samples of equal
/// length last in first out — and each bin's samples are concatenated into one row of at most the capacity.
/// </summary>
public static class SequencePacking
{
    /// <summary>The bins of <paramref name="lengths"/> (indices into it, in the order they were put in) of at most <paramref name="capacity"/> each.</summary>
    public static List<List<int>> GreedyKnapsack(IReadOnlyList<int> lengths, int capacity)
    {
        for (int i = 0; i < lengths.Count; i++)
        {
            if (lengths[i] < 1 || lengths[i] > capacity)
                throw new ArgumentException($"sample {i} has {lengths[i]} tokens, which does not fit a packed row of {capacity}");
        }
        var byLength = new Dictionary<int, Stack<int>>();
        for (int i = 0; i < lengths.Count; i++)
        {
            if (!byLength.TryGetValue(lengths[i], out var same)) byLength[lengths[i]] = same = new Stack<int>();
            same.Push(i);
        }
        var sorted = lengths.Order().ToList();
        var bins = new List<List<int>>();
        while (sorted.Count > 0)
        {
            var bin = new List<int>();
            int room = capacity;
            while (true)
            {
                int at = UpperBound(sorted, room) - 1;   // the largest length that fits
                if (at < 0) break;
                room -= sorted[at];
                bin.Add(byLength[sorted[at]].Pop());
                sorted.RemoveAt(at);
            }
            bins.Add(bin);
        }
        return bins;
    }

    static int UpperBound(List<int> sorted, int value)
    {
        int lo = 0, hi = sorted.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (sorted[mid] <= value) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// Packs <paramref name="samples"/> into rows of at most <paramref name="capacity"/> tokens, bin-packing each run of
    /// <paramref name="chunk"/> consecutive samples on its own (LLaMA-Factory packs per preprocessing batch).
    /// </summary>
    public static List<EncodedSample> Pack(IReadOnlyList<EncodedSample> samples, int capacity, int chunk)
    {
        if (chunk < 1) throw new ArgumentOutOfRangeException(nameof(chunk), "preprocessing_batch_size must be positive");
        var rows = new List<EncodedSample>();
        for (int start = 0; start < samples.Count; start += chunk)
        {
            var part = samples.Skip(start).Take(chunk).ToList();
            foreach (var bin in GreedyKnapsack(part.Select(s => s.InputIds.Length).ToList(), capacity))
                rows.Add(Concatenate(bin.Select(i => part[i]).ToList()));
        }
        return rows;
    }

    /// <summary>
    /// One row of <paramref name="parts"/>: ids, labels and media lists concatenated in order. The first label of every
    /// sample after the first becomes −100: it would otherwise be the target of the previous sample's last token (alone in
    /// its row a sample's first label is never a target either).
    /// </summary>
    public static EncodedSample Concatenate(IReadOnlyList<EncodedSample> parts)
    {
        if (parts.Count == 1) return parts[0];
        if (parts.Any(p => p.PackedLengths is not null)) throw new ArgumentException("a packed row cannot be packed again");
        var labels = new List<int>();
        foreach (var p in parts)
        {
            int first = labels.Count;
            labels.AddRange(p.Labels);
            if (first > 0) labels[first] = SupervisedEncoder.IgnoreIndex;
        }
        return new EncodedSample(parts[0].Location, parts.SelectMany(p => p.InputIds).ToArray(), labels.ToArray(),
            parts.SelectMany(p => p.Images).ToArray(), parts.SelectMany(p => p.Videos).ToArray(), parts.SelectMany(p => p.Audios).ToArray(),
            parts.Any(p => p.Truncated))
        {
            PackedLengths = parts.Select(p => p.InputIds.Length).ToArray(),
        };
    }
}
