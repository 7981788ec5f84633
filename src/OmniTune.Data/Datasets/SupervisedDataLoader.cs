namespace OmniTune.Data.Datasets;

/// <summary>Where a loader stands: the next batch is batch <paramref name="Batch"/> of epoch <paramref name="Epoch"/>.</summary>
/// <param name="Epoch">0-based epoch.</param>
/// <param name="Batch">0-based micro-batch index of this rank within the epoch.</param>
public sealed record LoaderPosition(int Epoch, int Batch);

/// <summary>
/// Micro-batches for one data-parallel rank, cyclic over epochs. The global order is a function of the seed and the
/// global batch size alone: each epoch is a permutation seeded by (seed, epoch) cut into ⌊N / GBS⌋ global batches
/// (the tail that does not fill one is dropped), and global batch g holds micro-batches m = 0 … GBS/MBS − 1 of MBS
/// consecutive samples each. Data-parallel rank r takes micro-batches r, r + DP, r + 2·DP, … of every global batch
/// (Megatron's split of each MBS·DP chunk), so every data-parallel size — and every other layout — trains on the same
/// global batches, drops the same samples and forms the same micro-batches as a single process. Background workers
/// collate ahead (prefetch) and batches come out in order. The position can be saved and restored exactly.
/// </summary>
public sealed class SupervisedDataLoader : IDisposable
{
    readonly IReadOnlyList<EncodedSample> samples;
    readonly BatchCollator collator;
    readonly int microBatch, globalBatch, rank, worldSize, seed, workers;
    readonly bool shuffle;
    readonly Queue<(LoaderPosition Position, Task<TrainingBatch> Batch)> pending = new();
    readonly SemaphoreSlim running;
    LoaderPosition scheduled;
    int[]? epochOrder;
    int orderEpoch = -1;

    /// <summary>
    /// Creates a loader starting at <paramref name="start"/> (the beginning when null); <paramref name="globalBatch"/>
    /// defaults to one micro-batch per rank (MBS × DP) and must be a multiple of it.
    /// </summary>
    public SupervisedDataLoader(IReadOnlyList<EncodedSample> samples, BatchCollator collator, int microBatch, int seed, bool shuffle,
        int workers = 0, int dataParallelRank = 0, int dataParallelSize = 1, LoaderPosition? start = null, int? globalBatch = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(microBatch, 1);
        if (dataParallelRank < 0 || dataParallelRank >= dataParallelSize) throw new ArgumentOutOfRangeException(nameof(dataParallelRank));
        this.samples = samples;
        this.collator = collator;
        this.microBatch = microBatch;
        this.globalBatch = globalBatch ?? microBatch * dataParallelSize;
        if (this.globalBatch % (microBatch * dataParallelSize) != 0)
            throw new ArgumentException($"global batch {this.globalBatch} is not a multiple of micro-batch {microBatch} × data-parallel size {dataParallelSize}");
        this.seed = seed;
        this.shuffle = shuffle;
        this.workers = Math.Max(0, workers);
        running = new SemaphoreSlim(Math.Max(1, this.workers));
        rank = dataParallelRank;
        worldSize = dataParallelSize;
        if (BatchesPerEpoch == 0)
            throw new ArgumentException($"{samples.Count} samples are fewer than one global batch of {this.globalBatch} (drop_last)");
        Position = start ?? new LoaderPosition(0, 0);
        if (Position.Batch >= BatchesPerEpoch) throw new ArgumentException($"position {Position} is past the {BatchesPerEpoch} batches of an epoch");
        scheduled = Position;
    }

    /// <summary>Micro-batches of this rank per global batch.</summary>
    int MicroBatchesPerGlobalBatch => globalBatch / (microBatch * worldSize);

    /// <summary>Micro-batches of this rank per epoch.</summary>
    public int BatchesPerEpoch => samples.Count / globalBatch * MicroBatchesPerGlobalBatch;

    /// <summary>Position of the next batch <see cref="Next"/> returns.</summary>
    public LoaderPosition Position { get; private set; }

    /// <summary>The sample order of an epoch (all ranks): a seeded permutation, or identity without shuffle.</summary>
    public static int[] EpochOrder(int count, int seed, int epoch, bool shuffle)
    {
        int[] order = Enumerable.Range(0, count).ToArray();
        if (!shuffle) return order;
        // A fixed mix of seed and epoch (HashCode.Combine is randomised per process and would break resume).
        var random = new Random(unchecked((seed * 1_000_003) ^ (epoch * 7919) ^ 0x5EED));
        for (int i = count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>Indices of the samples of micro-batch <paramref name="position"/> for this rank.</summary>
    public int[] SampleIndices(LoaderPosition position)
    {
        if (orderEpoch != position.Epoch)
        {
            epochOrder = EpochOrder(samples.Count, seed, position.Epoch, shuffle);
            orderEpoch = position.Epoch;
        }
        int g = position.Batch / MicroBatchesPerGlobalBatch, j = position.Batch % MicroBatchesPerGlobalBatch;
        int first = g * globalBatch + (j * worldSize + rank) * microBatch;   // micro-batch j·DP + r of global batch g
        return Enumerable.Range(first, microBatch).Select(i => epochOrder![i]).ToArray();
    }

    /// <summary>The next micro-batch (cyclic over epochs); the caller disposes it.</summary>
    public TrainingBatch Next()
    {
        if (workers == 0)
        {
            var batch = collator.Collate(SampleIndices(Position).Select(i => samples[i]).ToList());
            Position = Advance(Position);
            return batch;
        }
        while (pending.Count < workers * 2) Schedule();
        var (position, task) = pending.Dequeue();
        Schedule();
        Position = Advance(position);
        return task.GetAwaiter().GetResult();
    }

    void Schedule()
    {
        var items = SampleIndices(scheduled).Select(i => samples[i]).ToList();
        pending.Enqueue((scheduled, Task.Run(async () =>
        {
            await running.WaitAsync().ConfigureAwait(false);
            try
            {
                return collator.Collate(items);
            }
            finally
            {
                running.Release();
            }
        })));
        scheduled = Advance(scheduled);
    }

    LoaderPosition Advance(LoaderPosition p) => p.Batch + 1 < BatchesPerEpoch ? p with { Batch = p.Batch + 1 } : new LoaderPosition(p.Epoch + 1, 0);

    /// <inheritdoc/>
    public void Dispose()
    {
        while (pending.Count > 0)
        {
            var (_, task) = pending.Dequeue();
            try
            {
                task.GetAwaiter().GetResult().Dispose();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A batch that failed to collate has nothing to dispose; its error was not asked for.
            }
        }
        running.Dispose();
    }
}
