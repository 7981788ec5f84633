using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>Pre-norm ViT block: x + Attn(RMSNorm₁(x)), then + MLP(RMSNorm₂(x)).</summary>
public sealed class Qwen25OmniVisionBlock : nn.Module
{
    readonly RmsNorm norm1, norm2;
    readonly Qwen25OmniVisionAttention attn;
    readonly Qwen25OmniVisionMlp mlp;

    /// <summary>Creates the block.</summary>
    public Qwen25OmniVisionBlock(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("block")
    {
        norm1 = new RmsNorm("norm1", config.HiddenSize, 1e-6, device, dtype);
        norm2 = new RmsNorm("norm2", config.HiddenSize, 1e-6, device, dtype);
        attn = new Qwen25OmniVisionAttention(config, device, dtype);
        mlp = new Qwen25OmniVisionMlp(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>x [N, D] → [N, D].</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, IReadOnlyList<int> segments)
    {
        using var scope = NewDisposeScope();
        Tensor h = x + attn.Forward(norm1.Forward(x), cos, sin, segments);
        return (h + mlp.Forward(norm2.Forward(h))).MoveToOuterDisposeScope();
    }
}
