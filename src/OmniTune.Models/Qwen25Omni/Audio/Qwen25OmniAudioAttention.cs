using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Audio;

/// <summary>Audio self-attention within chunks: q and v biased, k without bias, biased out_proj.</summary>
public sealed class Qwen25OmniAudioAttention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, out_proj;
    readonly int headDim;

    /// <summary>Creates the projections.</summary>
    public Qwen25OmniAudioAttention(Qwen25OmniAudioConfig config, Device? device, ScalarType dtype) : base("self_attn")
    {
        headDim = config.HeadDim;
        long d = config.DModel;
        q_proj = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        k_proj = nn.Linear(d, d, hasBias: false, device: device, dtype: dtype);
        v_proj = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        out_proj = nn.Linear(d, d, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>x [T, D] → [T, D], attending within each chunk.</summary>
    public Tensor Forward(Tensor x, IReadOnlyList<int> chunks)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0];
        // [T, D] -> [T, heads, hd]
        Tensor attended = SegmentAttention.Forward(q_proj.call(x).view(n, -1, headDim), k_proj.call(x).view(n, -1, headDim),
            v_proj.call(x).view(n, -1, headDim), chunks);
        return out_proj.call(attended.reshape(n, -1)).MoveToOuterDisposeScope();
    }
}
