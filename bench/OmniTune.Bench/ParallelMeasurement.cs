using OmniTune.Core.Native;
using OmniTune.Distributed;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>One measured configuration of a two-rank benchmark: the slower rank's step, its time in the group's collectives, and each rank's peak memory above resident.</summary>
readonly record struct ParallelMeasurement(double StepMs, double CommunicationMs, double PeakMiB0, double PeakMiB1)
{
    /// <summary>Warms up once, then times <paramref name="steps"/> steps of <paramref name="step"/> on every rank of <paramref name="world"/>.</summary>
    public static ParallelMeasurement Of(IProcessGroup world, TimedProcessGroup group, Func<double> step, int steps)
    {
        step();   // warm-up
        world.Barrier();
        GC.Collect();
        long before = ProcessMemory.Rss();
        ProcessMemory.ResetPeak();
        double commBefore = group.Milliseconds, total = 0;
        for (int i = 0; i < steps; i++) total += step();
        long peak = ProcessMemory.Peak() - before;
        double comm = group.Milliseconds - commBefore;
        using Tensor gathered = world.AllGather(tensor(new[] { total / steps, comm / steps, peak / (double)(1 << 20) }).reshape(1, 3));
        double[] v = gathered.data<double>().ToArray();
        return new(Math.Max(v[0], v[3]), Math.Max(v[1], v[4]), v[2], v[5]);
    }
}
