namespace OmniTune.Data.Datasets;

/// <summary>
/// The held-out samples of a run (data.json <c>val_rate</c> or <c>val_dataset</c>, MindSpeed-MM's keys): a seeded split of
/// the training set — ⌈rate · N⌉ samples drawn by a permutation of the seed, the rest kept for training in their order —
/// or a dataset of its own, encoded as the training one is.
/// </summary>
public static class ValidationSet
{
    /// <summary>(training, validation) samples for <paramref name="config"/>; validation is empty when neither key is set.</summary>
    public static (IReadOnlyList<EncodedSample> Train, IReadOnlyList<EncodedSample> Validation) Build(DataJsonConfig config, SupervisedDataset train,
        Func<DataJsonConfig, SupervisedDataset> encode, int seed, TextWriter log)
    {
        var basic = config.DatasetParam.BasicParameters;
        if (basic.ValRate is double && basic.ValDataset is not null)
            throw new ArgumentException("data.json: basic_parameters.val_rate and val_dataset exclude each other (hold out a share of the dataset, or name a validation dataset)");
        if (basic.ValDataset is string names)
        {
            var own = encode(config with { DatasetParam = config.DatasetParam with { BasicParameters = basic with { Dataset = names, MaxSamples = basic.ValMaxSamples } } });
            log.WriteLine($"validation: {own.Samples.Count} samples of {names} ({own.Invalid.Count} rejected)");
            return (train.Samples, own.Samples);
        }
        if (basic.ValRate is not double rate || rate == 0) return (train.Samples, []);
        if (rate is < 0 or >= 1 || double.IsNaN(rate)) throw new ArgumentException($"data.json: basic_parameters.val_rate {rate} must be in [0, 1)");
        int count = (int)Math.Ceiling(rate * train.Samples.Count);
        var held = new HashSet<int>(SupervisedDataLoader.EpochOrder(train.Samples.Count, seed, epoch: -1, shuffle: true).Take(count));
        var kept = train.Samples.Where((_, i) => !held.Contains(i)).ToList();
        var validation = train.Samples.Where((_, i) => held.Contains(i)).ToList();
        log.WriteLine($"validation: {validation.Count} of {train.Samples.Count} samples held out (val_rate {rate})");
        return (kept, validation);
    }
}
