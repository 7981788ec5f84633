using System.Text;

namespace OmniTune.Data.Datasets;

/// <summary>The summary <c>omnitune data check</c> prints.</summary>
public static class DatasetStatistics
{
    /// <summary>Samples per modality, length percentiles, truncations, bad samples and token totals.</summary>
    public static string Describe(SupervisedDataset dataset, int seqLength)
    {
        var text = new StringBuilder();
        var samples = dataset.Samples;
        text.AppendLine($"samples: {samples.Count} usable, {dataset.Invalid.Count} rejected{(dataset.FromCache ? " (from cache)" : "")}");
        foreach (var group in samples.GroupBy(s => s.Modalities).OrderByDescending(g => g.Count()))
            text.AppendLine($"  {group.Key,-18} {group.Count(),8}");
        if (samples.Count > 0)
        {
            int[] lengths = samples.Select(s => s.InputIds.Length).Order().ToArray();
            int P(double q) => lengths[Math.Min(lengths.Length - 1, (int)Math.Ceiling(q * lengths.Length) - 1)];
            text.AppendLine($"token length: min {lengths[0]}, p50 {P(0.5)}, p90 {P(0.9)}, p99 {P(0.99)}, max {lengths[^1]} (sequence length {seqLength})");
            text.AppendLine($"truncated samples: {samples.Count(s => s.Truncated)}");
            text.AppendLine($"total tokens: {samples.Sum(s => (long)s.InputIds.Length):N0}, trained (labelled) tokens: {samples.Sum(s => (long)s.TrainedTokens):N0}");
        }
        if (dataset.Invalid.Count > 0)
        {
            text.AppendLine($"rejected samples ({dataset.Invalid.Count}):");
            foreach (InvalidSample bad in dataset.Invalid) text.AppendLine($"  {bad}");
        }
        return text.ToString();
    }
}
