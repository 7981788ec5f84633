using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

/// <summary>
/// An independent, deliberately plain transcription of reference §3 (HF's eager path): explicit score matrix with a
/// finite-minimum mask, float32 softmax, GQA by head index, and mrope assembled by splitting the three cos/sin tables
/// into the sections [t, h, w, t, h, w] as HF does.
/// </summary>
public static class NaiveTextDecoderReference
{
    public static Tensor Logits(IReadOnlyDictionary<string, Tensor> w, Qwen25OmniTextConfig c, Tensor ids, Tensor positions, Tensor? padding)
    {
        long b = ids.shape[0], s = ids.shape[1];
        int hd = c.HeadDim, nh = c.NumAttentionHeads, nkv = c.NumKeyValueHeads;
        Tensor x = w["model.embed_tokens.weight"].index_select(0, ids.reshape(-1)).reshape(b, s, -1);

        // inv_freq and the three cos/sin tables [3, B, S, hd]
        Tensor invFreq = 1.0 / full(hd / 2, c.RopeTheta).pow(arange(0, hd, 2, ScalarType.Int64).to(ScalarType.Float32) / hd);
        Tensor freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * invFreq;
        Tensor emb = cat([freqs, freqs], -1);
        int[] sections = [.. c.RopeScaling.MropeSection, .. c.RopeScaling.MropeSection];
        Tensor Assemble(Tensor table)
        {
            var pieces = new List<Tensor>();
            int start = 0;
            for (int i = 0; i < sections.Length; i++)
            {
                pieces.Add(table[i % 3].narrow(-1, start, sections[i]));
                start += sections[i];
            }
            return cat(pieces, -1).unsqueeze(1);   // [B, 1, S, hd]
        }
        Tensor cos = Assemble(emb.cos()), sin = Assemble(emb.sin());
        Tensor Rotate(Tensor t) => t * cos + cat([-t.narrow(-1, hd / 2, hd / 2), t.narrow(-1, 0, hd / 2)], -1) * sin;

        Tensor RmsNorm(Tensor t, string key) => w[key] * (t * rsqrt(t.pow(2).mean([-1], keepdim: true) + c.RmsNormEps));
        Tensor Linear(Tensor t, string key, bool bias) =>
            bias ? nn.functional.linear(t, w[key + ".weight"], w[key + ".bias"]) : nn.functional.linear(t, w[key + ".weight"]);

        Tensor allowed = ones(s, s, ScalarType.Bool).tril().unsqueeze(0).expand(b, s, s);
        if (padding is not null) allowed = allowed & padding.to(ScalarType.Bool).unsqueeze(1);
        Tensor additive = zeros(b, 1, s, s).masked_fill(allowed.logical_not().unsqueeze(1), float.MinValue);

        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            Tensor h = RmsNorm(x, p + "input_layernorm.weight");
            Tensor q = Rotate(Linear(h, p + "self_attn.q_proj", true).view(b, s, nh, hd).transpose(1, 2));
            Tensor k = Rotate(Linear(h, p + "self_attn.k_proj", true).view(b, s, nkv, hd).transpose(1, 2));
            Tensor v = Linear(h, p + "self_attn.v_proj", true).view(b, s, nkv, hd).transpose(1, 2);
            Tensor kvHead = arange(nh, ScalarType.Int64).floor_divide(nh / nkv);
            k = k.index_select(1, kvHead);
            v = v.index_select(1, kvHead);
            Tensor scores = q.matmul(k.transpose(2, 3)) / Math.Sqrt(hd) + additive;
            Tensor attended = scores.softmax(-1, ScalarType.Float32).matmul(v).transpose(1, 2).reshape(b, s, -1);
            x = x + Linear(attended, p + "self_attn.o_proj", false);
            h = RmsNorm(x, p + "post_attention_layernorm.weight");
            Tensor mlp = nn.functional.silu(Linear(h, p + "mlp.gate_proj", false)) * Linear(h, p + "mlp.up_proj", false);
            x = x + Linear(mlp, p + "mlp.down_proj", false);
        }
        x = RmsNorm(x, "model.norm.weight");
        return nn.functional.linear(x, w.TryGetValue("lm_head.weight", out var head) ? head : w["model.embed_tokens.weight"]);
    }
}
