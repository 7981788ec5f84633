using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Qwen2RMSNorm: normalise in float32, cast back to the input dtype, then scale by the weight (reference §3.2).
/// </summary>
public sealed class RmsNorm : nn.Module
{
    readonly Parameter weight;
    readonly double eps;

    /// <summary>Creates the norm with weight ones.</summary>
    public RmsNorm(string name, long dim, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(name)
    {
        weight = new Parameter(ones(dim, dtype, device));
        this.eps = eps;
        RegisterComponents();
    }

    /// <summary>y = weight ⊙ (x / √(mean(x²) + ε)), the mean taken over the last dimension in float32.</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        ScalarType inputType = x.dtype;
        Tensor h = x.to(ScalarType.Float32);
        Tensor variance = h.pow(2).mean([-1], keepdim: true);
        h = h * rsqrt(variance + eps);
        return (weight * h.to(inputType)).MoveToOuterDisposeScope();
    }
}
