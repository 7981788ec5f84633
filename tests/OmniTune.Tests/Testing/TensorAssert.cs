using static TorchSharp.torch;

namespace OmniTune.Tests.Testing;

public static class TensorAssert
{
    /// <summary>Same dtype, shape and bytes.</summary>
    public static void BitEqual(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(CheckpointBytes.Of(expected.contiguous()).AsSpan().SequenceEqual(CheckpointBytes.Of(actual.contiguous())), "tensors differ in their bytes");
    }

    /// <summary>Max absolute difference at most <paramref name="tolerance"/>.</summary>
    public static void Close(Tensor expected, Tensor actual, double tolerance)
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(diff <= tolerance, $"max |difference| {diff:E3} exceeds {tolerance:E3}");
    }
}
