using System.Diagnostics;
using OmniTune.Distributed;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>All-reduce bandwidth over the MPI world (run under mpirun).</summary>
static class AllReduceBenchmark
{
    public static void Run(TextWriter log)
    {
        using IProcessGroup world = ProcessGroups.World();
        foreach (long megabytes in new long[] { 1, 16, 64 })
        {
            using Tensor t = ones(megabytes * (1 << 20) / 4);
            world.AllReduce(t);
            int repeats = 5;
            world.Barrier();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < repeats; i++) world.AllReduce(t);
            double seconds = clock.Elapsed.TotalSeconds / repeats;
            double bytes = megabytes * (1 << 20);
            double busBandwidth = bytes * 2 * (world.Size - 1) / world.Size / seconds / 1e9;
            if (world.Rank == 0)
                log.WriteLine($"RESULT allreduce {megabytes} MiB fp32 over {world.Size} ranks: {seconds * 1000:F1} ms, algbw {bytes / seconds / 1e9:F2} GB/s, busbw {busBandwidth:F2} GB/s");
        }
    }
}
