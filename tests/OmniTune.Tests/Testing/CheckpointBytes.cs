using OmniTune.Core.Safetensors;
using static TorchSharp.torch;

namespace OmniTune.Tests.Testing;

/// <summary>Raw bytes of tensors, for bit-exact comparisons.</summary>
public static class CheckpointBytes
{
    /// <summary>
    /// A copy of <paramref name="tensor"/>'s bytes; disposes it. (The span from <c>tensor.bytes</c> points into native
    /// memory that the GC may free once the tensor object is unreachable, so the tensor must live until the copy ends.)
    /// </summary>
    public static byte[] Of(Tensor tensor)
    {
        using (tensor) return tensor.bytes.ToArray();
    }

    /// <summary>Every tensor of a safetensors folder by key.</summary>
    public static Dictionary<string, byte[]> Read(string folder)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        return checkpoint.Keys.ToDictionary(k => k, k => Of(checkpoint.Read(k)));
    }

    /// <summary>Every tensor of one safetensors file by key.</summary>
    public static Dictionary<string, byte[]> ReadFile(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.Tensors.Keys.ToDictionary(k => k, k => Of(file.Read(k)));
    }

    /// <summary>Largest absolute difference between two fp32 tensors given as bytes.</summary>
    public static float MaxFloatDifference(byte[] a, byte[] b) =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a).ToArray().Zip(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b).ToArray(), (x, y) => Math.Abs(x - y)).Max();

    /// <summary>Where two fp32 tensors given as bytes differ most: the flat index and both values.</summary>
    static string WorstElement(byte[] a, byte[] b)
    {
        ReadOnlySpan<float> x = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a), y = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b);
        int at = 0;
        for (int i = 1; i < x.Length; i++)
        {
            if (Math.Abs(x[i] - y[i]) > Math.Abs(x[at] - y[at])) at = i;
        }
        int over = 0;
        for (int i = 0; i < x.Length; i++)
        {
            if (Math.Abs(x[i] - y[i]) > 2e-5) over++;
        }
        return x.Length == 0 ? "" : $"(element {at}: {x[at]:G9} against {y[at]:G9}; {over} of {x.Length} differ by more than 2e-5)";
    }

    /// <summary>
    /// Elements allowed beyond the tolerance: at most <paramref name="Fraction"/> of a tensor's, each within
    /// <paramref name="Bound"/> — AdamW's update lr · m / (√v + eps) turns a rounding difference of a gradient near eps into
    /// a step of up to lr, so a few such elements can differ by up to lr × steps whatever the kernels.
    /// </summary>
    public sealed record Outliers(double Fraction, double Bound);

    /// <summary>
    /// Every fp32 weight of <paramref name="expected"/> within <paramref name="tolerance"/>(key) of <paramref name="actual"/>'s
    /// (but for <paramref name="outliers"/>), naming the key.
    /// </summary>
    public static void AssertClose(Dictionary<string, byte[]> expected, Dictionary<string, byte[]> actual, Func<string, double> tolerance, Outliers? outliers = null,
        [System.Runtime.CompilerServices.CallerFilePath] string file = "", [System.Runtime.CompilerServices.CallerLineNumber] int line = 0)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        var worst = expected.Select(e => (e.Key, Ratio: MaxFloatDifference(e.Value, actual[e.Key]) / tolerance(e.Key))).MaxBy(d => d.Ratio);
        Margins.Record(file, line, $"weights {worst.Key} {WorstElement(expected[worst.Key], actual[worst.Key])}", worst.Ratio);
        bool Within(string key, byte[] a, byte[] b)
        {
            if (MaxFloatDifference(a, b) < tolerance(key)) return true;
            if (outliers is null || MaxFloatDifference(a, b) > outliers.Bound) return false;
            ReadOnlySpan<float> x = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a), y = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(b);
            int over = 0;
            for (int i = 0; i < x.Length; i++)
            {
                if (Math.Abs(x[i] - y[i]) >= tolerance(key)) over++;
            }
            return over <= outliers.Fraction * x.Length;
        }
        var over = expected.Where(e => !Within(e.Key, e.Value, actual[e.Key])).Select(e => (e.Key, Worst: MaxFloatDifference(e.Value, actual[e.Key]))).ToList();
        Assert.True(over.Count == 0, $"{over.Count} of {expected.Count} tensors differ from the single-process run beyond the tolerance: " +
                                     string.Join(", ", over.OrderByDescending(d => d.Worst).Select(d => $"{d.Key} by {d.Worst:G3}")));
    }

    /// <summary>The same tensors, bit for bit, naming the first that differs.</summary>
    public static void AssertIdentical(Dictionary<string, byte[]> expected, Dictionary<string, byte[]> actual, string what = "")
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.All(expected, kv => Assert.True(kv.Value.AsSpan().SequenceEqual(actual[kv.Key]), $"{what}{kv.Key} differs"));
    }

    /// <summary>Per-iteration losses equal within a relative tolerance.</summary>
    public static void AssertLossesClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double relative,
        [System.Runtime.CompilerServices.CallerFilePath] string file = "", [System.Runtime.CompilerServices.CallerLineNumber] int line = 0)
    {
        Assert.Equal(expected.Count, actual.Count);
        Margins.Record(file, line, "losses", expected.Zip(actual, (e, a) => Math.Abs(e - a) / (Math.Abs(e) * relative)).DefaultIfEmpty(0).Max());
        for (int i = 0; i < actual.Count; i++) Assert.Equal(expected[i], actual[i], Math.Abs(expected[i]) * relative);
    }
}
