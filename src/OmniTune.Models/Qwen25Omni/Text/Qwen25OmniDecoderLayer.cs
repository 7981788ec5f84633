using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>Pre-norm decoder layer: h = x + Attn(Norm₁(x)); out = h + MLP(Norm₂(h)).</summary>
public sealed class Qwen25OmniDecoderLayer : nn.Module
{
    readonly RmsNorm input_layernorm, post_attention_layernorm;
    readonly Qwen25OmniAttention self_attn;
    readonly Qwen25OmniMlp mlp;

    /// <summary>Creates one layer.</summary>
    public Qwen25OmniDecoderLayer(Qwen25OmniTextConfig config, Device? device, ScalarType dtype) : base("layer")
    {
        input_layernorm = new RmsNorm("input_layernorm", config.HiddenSize, config.RmsNormEps, device, dtype);
        self_attn = new Qwen25OmniAttention(config, device, dtype);
        post_attention_layernorm = new RmsNorm("post_attention_layernorm", config.HiddenSize, config.RmsNormEps, device, dtype);
        mlp = new Qwen25OmniMlp(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>x [B, S, H] → [B, S, H].</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, AttentionMask mask, KvCache? cache = null, int layer = 0)
    {
        using var scope = NewDisposeScope();
        Tensor h = x + self_attn.Forward(input_layernorm.Forward(x), cos, sin, mask, cache, layer);
        return (h + mlp.Forward(post_attention_layernorm.Forward(h))).MoveToOuterDisposeScope();
    }
}
