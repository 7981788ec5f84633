using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// The one LoRA merge: W' = W + (α/r)·B·A, computed in fp32 and rounded once to the weight's dtype. Used by the
/// trainer's merged save, by <c>generate --adapter</c> and by the converter, so that every path gives the same bits in
/// every dtype.
/// </summary>
public static class LoraMerge
{
    /// <summary>The merged weight (a new tensor of <paramref name="weight"/>'s dtype and device).</summary>
    public static Tensor Merged(Tensor weight, Tensor loraA, Tensor loraB, double scaling)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor a = loraA.detach().to(ScalarType.Float32, weight.device), b = loraB.detach().to(ScalarType.Float32, weight.device);
        Tensor merged = weight.detach().to(ScalarType.Float32).add(b.matmul(a), alpha: scaling).to(weight.dtype);
        return merged.MoveToOuterDisposeScope();
    }
}
