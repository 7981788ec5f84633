namespace OmniTune.Data.Datasets;

/// <summary>The encoded samples of all datasets, in order, and the rows that were rejected with their reasons.</summary>
/// <param name="Samples">Usable samples.</param>
/// <param name="Invalid">Rejected rows.</param>
/// <param name="FromCache">Whether the samples were read from the cache.</param>
public sealed record SupervisedDataset(IReadOnlyList<EncodedSample> Samples, IReadOnlyList<InvalidSample> Invalid, bool FromCache);
