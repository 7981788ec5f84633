using System.Diagnostics;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>Measures the fp32 matrix-multiply rate of this machine in the same process as the model benchmark.</summary>
static class GemmRate
{
    /// <summary>Best GFLOP/s of <paramref name="repeats"/> n×n×n products after one warm-up.</summary>
    public static double Measure(int n, int repeats)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        Tensor a = randn([n, n], generator: g), b = randn([n, n], generator: g);
        using (var warm = NewDisposeScope()) a.matmul(b);
        double best = 0;
        for (int i = 0; i < repeats; i++)
        {
            using var step = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            a.matmul(b);
            best = Math.Max(best, 2.0 * n * n * n / clock.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }
}
