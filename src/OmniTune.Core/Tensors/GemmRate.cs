using System.Diagnostics;
using static TorchSharp.torch;

namespace OmniTune.Core.Tensors;

/// <summary>
/// The fp32 matrix-multiply rate of this machine, measured in the process that reports an MFU against it (the bench and
/// <c>finetune</c>, both at <see cref="ReferenceSize"/>³, the best of at least <see cref="ReferenceRepeats"/> products into one output), and the known peak
/// rates of accelerators.
/// </summary>
public static class GemmRate
{
    /// <summary>Matrix size of the reference CPU rate (small enough to measure in a moment at every start).</summary>
    public const int ReferenceSize = 1024;

    /// <summary>Timed products of the reference rate.</summary>
    public const int ReferenceRepeats = 5;

    /// <summary>The reference CPU rate, GFLOP/s.</summary>
    public static double Reference() => Measure(ReferenceSize, ReferenceRepeats);

    /// <summary>Dense bf16 peak TFLOP/s of known accelerators by a fragment of their name (NVIDIA's data sheets, SXM parts).</summary>
    public static readonly IReadOnlyList<(string Name, double Tflops)> KnownPeaks =
    [
        ("H200", 989), ("H100", 989), ("A100", 312), ("L40S", 362), ("A10", 125), ("L4", 121), ("V100", 125),
    ];

    /// <summary>The peak of an accelerator whose name contains a known fragment, or null.</summary>
    public static double? PeakOf(string deviceName) =>
        KnownPeaks.Where(p => deviceName.Contains(p.Name, StringComparison.OrdinalIgnoreCase)).Select(p => (double?)p.Tflops).FirstOrDefault();

    /// <summary>
    /// Best GFLOP/s of at least <paramref name="repeats"/> n×n×n products (and as many more as fit in a quarter of a second)
    /// after one warm-up, each written into the same output: the rate of the GEMM alone, without the allocation and page
    /// faults of a fresh output (which a 1024³ product at ~150 GFLOP/s would spend ~5 % of its time on).
    /// </summary>
    public static double Measure(int n, int repeats)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        Tensor a = randn([n, n], generator: g), b = randn([n, n], generator: g), c = zeros(n, n);
        c.addmm_(a, b, beta: 0, alpha: 1);
        double best = 0;
        var window = Stopwatch.StartNew();
        for (int i = 0; i < repeats || (window.Elapsed.TotalSeconds < 0.25 && i < 1000); i++)
        {
            var clock = Stopwatch.StartNew();
            c.addmm_(a, b, beta: 0, alpha: 1);
            best = Math.Max(best, 2.0 * n * n * n / clock.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }
}
