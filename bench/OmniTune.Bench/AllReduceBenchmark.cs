using System.Diagnostics;
using OmniTune.Distributed;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>
/// Bandwidth of the data-parallel collectives over the MPI world (run under mpirun): all-reduce (plain data parallel),
/// reduce-scatter and all-gather (the distributed optimizer), at sizes up to Megatron's default bucket (40M fp32).
/// </summary>
static class AllReduceBenchmark
{
    public static void Run(TextWriter log)
    {
        using IProcessGroup world = ProcessGroups.World();
        foreach (long megabytes in new long[] { 1, 16, 64, 160 })
        {
            long elements = megabytes * (1 << 20) / 4 / world.Size * world.Size;
            using Tensor t = ones(elements), shard = ones(elements / world.Size);
            double bytes = elements * 4.0;
            void Measure(string name, Action call, double busFactor)
            {
                call();
                int repeats = 5;
                world.Barrier();
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < repeats; i++) call();
                double seconds = clock.Elapsed.TotalSeconds / repeats;
                if (world.Rank == 0)
                    log.WriteLine($"RESULT {name} {megabytes} MiB fp32 over {world.Size} ranks: {seconds * 1000:F1} ms, algbw {bytes / seconds / 1e9:F2} GB/s, " +
                                  $"busbw {bytes * busFactor * (world.Size - 1) / world.Size / seconds / 1e9:F2} GB/s");
            }
            Measure("allreduce", () => world.AllReduce(t), 2);
            Measure("reduce-scatter", () => world.ReduceScatter(t).Dispose(), 1);
            Measure("reduce-scatter (non-blocking)", () => world.ReduceScatterAsync(t, shard).Dispose(), 1);
            Measure("all-gather", () => world.AllGather(shard).Dispose(), 1);
        }
    }
}
