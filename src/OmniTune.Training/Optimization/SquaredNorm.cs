using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>
/// Sums of squares for the global gradient norm, in float64, slice by slice: a float64 copy of a whole gradient (the 7B's
/// embedding: 4.4 GB) and its square would otherwise exist at once for every parameter until the norm was done.
/// </summary>
public static class SquaredNorm
{
    /// <summary>Σ x² (times <paramref name="weights"/> element by element, when given) as a float64 scalar on x's device — no host synchronisation.</summary>
    public static Tensor Of(Tensor x, Tensor? weights = null)
    {
        using var outer = NewDisposeScope();
        using Tensor flat = x.reshape(-1);
        using Tensor? w = weights?.reshape(-1);
        Tensor total = zeros([], ScalarType.Float64, x.device);
        foreach (var (start, n) in FlatSlices.Of(flat.shape[0]))
        {
            using var scope = NewDisposeScope();
            Tensor squares = flat.narrow(0, start, n).to(ScalarType.Float64).square();   // never in place: a float64 gradient would be squared itself
            if (w is not null) squares.mul_(w.narrow(0, start, n).to(ScalarType.Float64));
            total.add_(squares.sum());
        }
        return total.MoveToOuterDisposeScope();
    }
}
