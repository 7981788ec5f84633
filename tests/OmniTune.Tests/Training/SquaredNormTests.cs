using OmniTune.Training.Optimization;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

/// <summary>The gradient norm's sums of squares, computed slice by slice, against the whole-tensor formula.</summary>
public sealed class SquaredNormTests
{
    [Fact]
    public void Sliced_sums_of_squares_equal_the_whole_tensors_and_leave_the_input_alone()
    {
        var generator = new Generator(4);
        using Tensor x = randn([3, 3_000_001], generator: generator);   // three slices and a tail
        using Tensor mask = randint(0, 2, [3, 3_000_001], generator: generator).to(ScalarType.Float32);
        double whole = x.to(ScalarType.Float64).pow(2).sum().item<double>();
        Assert.Equal(whole, SquaredNorm.Of(x).item<double>(), whole * 1e-12);
        double masked = (x.to(ScalarType.Float64).pow(2) * mask.to(ScalarType.Float64)).sum().item<double>();
        Assert.Equal(masked, SquaredNorm.Of(x, mask).item<double>(), masked * 1e-12);
        Assert.NotEqual(whole, masked);
        using Tensor d = x.to(ScalarType.Float64);
        using Tensor before = d.clone();
        SquaredNorm.Of(d).Dispose();
        Assert.True(d.eq(before).all().item<bool>());   // a float64 gradient is not squared in place
    }
}
