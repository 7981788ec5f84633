using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>Vision self-attention: separate biased q/k/v, 2-D rotary, attention within segments, biased proj.</summary>
public sealed class Qwen25OmniVisionAttention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> q, k, v, proj;
    readonly int headDim;

    /// <summary>Creates the projections.</summary>
    public Qwen25OmniVisionAttention(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("attn")
    {
        headDim = config.HeadDim;
        long d = config.HiddenSize;
        q = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        k = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        v = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        proj = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>x [N, D] → [N, D], attending only within <paramref name="segments"/>.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, IReadOnlyList<int> segments)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0];
        // [N, D] -> [N, heads, hd]
        Tensor qs = VisionRotaryEmbedding.Apply(q.call(x).view(n, -1, headDim), cos, sin);
        Tensor ks = VisionRotaryEmbedding.Apply(k.call(x).view(n, -1, headDim), cos, sin);
        Tensor vs = v.call(x).view(n, -1, headDim);
        Tensor attended = SegmentAttention.Forward(qs, ks, vs, segments).reshape(n, -1);
        return proj.call(attended).MoveToOuterDisposeScope();
    }
}
