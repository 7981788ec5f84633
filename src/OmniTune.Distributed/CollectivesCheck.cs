using System.Diagnostics;
using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>
/// Runs every operation of a process group on known values and fails, naming the operation and rank, on any wrong
/// result: the first thing to run on a new machine or cluster before a long job.
/// </summary>
public static class CollectivesCheck
{
    /// <summary>Checks <paramref name="group"/>; also measures all-reduce bandwidth on <paramref name="megabytes"/> MiB of fp32.</summary>
    public static void Run(IProcessGroup group, TextWriter log, int megabytes = 16)
    {
        int rank = group.Rank, size = group.Size;
        using var scope = NewDisposeScope();

        Tensor sum = full(new long[] { 1000 }, rank + 1.0f);
        group.AllReduce(sum);
        Expect(sum, full(new long[] { 1000 }, size * (size + 1) / 2.0f), "all-reduce (sum)", rank);

        Tensor max = tensor(new long[] { rank, -rank });
        group.AllReduce(max, ReduceOp.Max);
        Expect(max, tensor(new long[] { size - 1, 0 }), "all-reduce (max)", rank);

        Tensor broadcast = rank == size - 1 ? arange(12, dtype: ScalarType.Float64).reshape(3, 4) : zeros(3, 4, dtype: ScalarType.Float64);
        group.Broadcast(broadcast, root: size - 1);
        Expect(broadcast, arange(12, dtype: ScalarType.Float64).reshape(3, 4), "broadcast", rank);

        Tensor gathered = group.AllGather(full(new long[] { 2, 3 }, rank, dtype: ScalarType.Int32));
        Expect(gathered, arange(size, dtype: ScalarType.Int32).repeat_interleave(2).unsqueeze(1).expand(-1, 3), "all-gather", rank);

        Tensor scattered = group.ReduceScatter(arange(size * 4, dtype: ScalarType.Float32).reshape(size, 4));
        Expect(scattered, arange(rank * 4, rank * 4 + 4, dtype: ScalarType.Float32).mul(size).reshape(1, 4), "reduce-scatter", rank);

        if (size > 1)
        {
            // A ring where each rank sends a tensor whose shape and dtype depend on the sender: the receiver learns both.
            int next = (rank + 1) % size, previous = (rank + size - 1) % size;
            Tensor Payload(int sender) => arange((sender + 1) * 3, dtype: sender % 2 == 0 ? ScalarType.Int64 : ScalarType.Float32).reshape(sender + 1, 3);
            Tensor received;
            if (rank % 2 == 0)
            {
                group.Send(Payload(rank), next);
                received = group.Receive(previous);
            }
            else
            {
                received = group.Receive(previous);
                group.Send(Payload(rank), next);
            }
            Expect(received, Payload(previous), "send/receive", rank);
        }
        group.Barrier();

        if (size == 1)
        {
            log.WriteLine($"group '{group.Name}' has one rank: collectives are identities, nothing to exchange");
            return;
        }
        long elements = megabytes * 1024L * 1024 / 4;
        Tensor payload = ones(elements);
        group.AllReduce(payload);   // warm-up
        var clock = Stopwatch.StartNew();
        const int Repeats = 5;
        for (int i = 0; i < Repeats; i++) group.AllReduce(payload);
        double seconds = clock.Elapsed.TotalSeconds / Repeats;
        // Bus bandwidth as nccl-tests defines it: bytes × 2(n−1)/n per second.
        double bus = elements * 4.0 * 2 * (size - 1) / size / seconds / 1e9;
        log.WriteLine($"group '{group.Name}': all-reduce, broadcast, all-gather, reduce-scatter, send/receive and barrier agree on {size} ranks; " +
            $"all-reduce of {megabytes} MiB takes {seconds * 1000:F1} ms ({bus:F2} GB/s bus bandwidth)");
    }

    static void Expect(Tensor actual, Tensor expected, string operation, int rank)
    {
        if (!actual.shape.SequenceEqual(expected.shape) || actual.dtype != expected.dtype || !actual.eq(expected.to(actual.dtype)).all().item<bool>())
            throw new InvalidOperationException($"rank {rank}: {operation} returned a wrong result " +
                $"(shape [{string.Join(", ", actual.shape)}] {actual.dtype}, expected [{string.Join(", ", expected.shape)}] {expected.dtype})");
    }
}
