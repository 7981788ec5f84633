using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>
/// Grouped-query self-attention with q/k/v biases and TMRoPE (HF <c>Qwen2_5OmniAttention</c>). Head counts and the
/// sequence length come from the projections' outputs, so the layer works unchanged when a plan shards the projections.
/// </summary>
public sealed class Qwen25OmniAttention : nn.Module
{
    readonly nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    readonly int headDim;

    /// <summary>Creates the projections for <paramref name="config"/>.</summary>
    public Qwen25OmniAttention(Qwen25OmniTextConfig config, Device? device, ScalarType dtype) : base("self_attn")
    {
        headDim = config.HeadDim;
        long h = config.HiddenSize, q = (long)config.NumAttentionHeads * headDim, kv = (long)config.NumKeyValueHeads * headDim;
        q_proj = nn.Linear(h, q, hasBias: true, device: device, dtype: dtype);
        k_proj = nn.Linear(h, kv, hasBias: true, device: device, dtype: dtype);
        v_proj = nn.Linear(h, kv, hasBias: true, device: device, dtype: dtype);
        o_proj = nn.Linear(q, h, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>Causal mask of <paramref name="newTokens"/> queries that follow the cached keys: query i sees keys up to cached + i.</summary>
    static Tensor CachedMask(long newTokens, long totalKeys, Device device) =>
        ones(newTokens, totalKeys, ScalarType.Bool, device).tril(totalKeys - newTokens);

    /// <summary>x [B, S, H] → [B, S, H]; with a cache, k and v are appended to it and attention covers every cached position.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, AttentionMask mask, KvCache? cache = null, int layer = 0)
    {
        using var scope = NewDisposeScope();
        Tensor qx = q_proj.call(x), kx = k_proj.call(x), vx = v_proj.call(x);
        long b = qx.shape[0], s = qx.shape[1];   // from the projections (a plan may gather the sequence in them)
        // [B, S, nh·hd] -> [B, S, nh, hd] -> [B, nh, S, hd]
        Tensor q = qx.view(b, s, -1, headDim).transpose(1, 2);
        Tensor k = kx.view(b, s, -1, headDim).transpose(1, 2);
        Tensor v = vx.view(b, s, -1, headDim).transpose(1, 2);
        q = MultimodalRotaryEmbedding.Apply(q, cos, sin);
        k = MultimodalRotaryEmbedding.Apply(k, cos, sin);
        bool decoding = cache is not null && cache.Length > 0;
        if (cache is not null) (k, v) = cache.Append(layer, k, v);
        if (mask.Attend is { } partial)   // context parallel: this rank's queries against the whole sequence
            return o_proj.call(partial(q, k, v).transpose(1, 2).reshape(b, s, -1)).MoveToOuterDisposeScope();
        long groups = q.shape[1] / k.shape[1];
        if (groups > 1)
        {
            // GQA: kv head j serves query heads j·g … j·g+g−1. [B, nkv, S, hd] -> [B, nh, S, hd]
            k = k.repeat_interleave(groups, 1);
            v = v.repeat_interleave(groups, 1);
        }
        Tensor attended = decoding
            ? nn.functional.scaled_dot_product_attention(q, k, v, CachedMask(q.shape[2], k.shape[2], q.device))
            : mask.Mask is null
                ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
                : nn.functional.scaled_dot_product_attention(q, k, v, mask.Mask);
        // [B, nh, S, hd] -> [B, S, nh·hd]
        Tensor merged = attended.transpose(1, 2).reshape(b, s, -1);
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }
}
