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
        double whole = x.to(ScalarType.Float64).pow(2).sum().item<double>();
        Assert.Equal(whole, SquaredNorm.Of(x).item<double>(), whole * 1e-9);   // float32 squares, float64 sum
        Assert.Equal(whole, SquaredNorm.Of(x.narrow(1, 0, 2_000_000)).item<double>() + SquaredNorm.Of(x.narrow(1, 2_000_000, 1_000_001)).item<double>(), whole * 1e-9);
        using Tensor d = x.to(ScalarType.Float64);
        using Tensor before = d.clone();
        Assert.Equal(whole, SquaredNorm.Of(d).item<double>(), whole * 1e-12);   // float64 in: exact to rounding
        Assert.True(d.eq(before).all().item<bool>());   // a float64 gradient is not squared in place
    }
}
