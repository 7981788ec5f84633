using OmniTune.Models.Qwen25Omni.Config;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>One tensor of the Hugging Face checkpoint: key (without the <c>thinker.</c> prefix) and shape.</summary>
/// <param name="Key">Key as the thinker names it, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="Shape">PyTorch shape (<c>[out, in]</c> for linear weights).</param>
public sealed record ThinkerWeight(string Key, long[] Shape)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Every tensor a Hugging Face Qwen2.5-Omni thinker checkpoint holds, derived from the config (reference §2.1).
/// Used to check checkpoints strictly, to build tiny random checkpoints and to count parameters.
/// </summary>
public static class ThinkerWeightLayout
{
    /// <summary>Prefix of the thinker's keys inside a full Qwen2.5-Omni checkpoint.</summary>
    public const string Prefix = "thinker.";

    /// <summary>Key prefixes of the towers.</summary>
    public const string TextPrefix = "model.", VisionPrefix = "visual.", AudioPrefix = "audio_tower.", LmHeadModule = "lm_head", LmHeadKey = LmHeadModule + ".weight";

    /// <summary>All thinker tensors in checkpoint order: text decoder, LM head (unless tied), vision, audio.</summary>
    public static IReadOnlyList<ThinkerWeight> For(Qwen25OmniThinkerConfig config, bool tiedLmHead = false)
    {
        var weights = new List<ThinkerWeight>();
        weights.AddRange(Text(config.Text));
        if (!tiedLmHead) weights.Add(new(LmHeadKey, [config.Text.VocabSize, config.Text.HiddenSize]));
        weights.AddRange(Vision(config.Vision));
        weights.AddRange(Audio(config.Audio));
        return weights;
    }

    /// <summary>Tensors of the text decoder (<c>model.*</c>).</summary>
    public static IEnumerable<ThinkerWeight> Text(Qwen25OmniTextConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize;
        yield return new("model.embed_tokens.weight", [c.VocabSize, h]);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return new(p + "input_layernorm.weight", [h]);
            yield return new(p + "self_attn.q_proj.weight", [q, h]);
            yield return new(p + "self_attn.q_proj.bias", [q]);
            yield return new(p + "self_attn.k_proj.weight", [kv, h]);
            yield return new(p + "self_attn.k_proj.bias", [kv]);
            yield return new(p + "self_attn.v_proj.weight", [kv, h]);
            yield return new(p + "self_attn.v_proj.bias", [kv]);
            yield return new(p + "self_attn.o_proj.weight", [h, q]);
            yield return new(p + "post_attention_layernorm.weight", [h]);
            yield return new(p + "mlp.gate_proj.weight", [i, h]);
            yield return new(p + "mlp.up_proj.weight", [i, h]);
            yield return new(p + "mlp.down_proj.weight", [h, i]);
        }
        yield return new("model.norm.weight", [h]);
    }

    /// <summary>Tensors of the vision encoder (<c>visual.*</c>).</summary>
    public static IEnumerable<ThinkerWeight> Vision(Qwen25OmniVisionConfig c)
    {
        long d = c.HiddenSize, i = c.IntermediateSize, merged = d * c.SpatialMergeSize * c.SpatialMergeSize;
        yield return new("visual.patch_embed.proj.weight", [d, c.InChannels, c.TemporalPatchSize, c.PatchSize, c.PatchSize]);
        for (int b = 0; b < c.Depth; b++)
        {
            string p = $"visual.blocks.{b}.";
            yield return new(p + "norm1.weight", [d]);
            yield return new(p + "norm2.weight", [d]);
            foreach (string proj in new[] { "q", "k", "v", "proj" })
            {
                yield return new(p + $"attn.{proj}.weight", [d, d]);
                yield return new(p + $"attn.{proj}.bias", [d]);
            }
            yield return new(p + "mlp.gate_proj.weight", [i, d]);
            yield return new(p + "mlp.gate_proj.bias", [i]);
            yield return new(p + "mlp.up_proj.weight", [i, d]);
            yield return new(p + "mlp.up_proj.bias", [i]);
            yield return new(p + "mlp.down_proj.weight", [d, i]);
            yield return new(p + "mlp.down_proj.bias", [d]);
        }
        yield return new("visual.merger.ln_q.weight", [d]);
        yield return new("visual.merger.mlp.0.weight", [merged, merged]);
        yield return new("visual.merger.mlp.0.bias", [merged]);
        yield return new("visual.merger.mlp.2.weight", [c.OutHiddenSize, merged]);
        yield return new("visual.merger.mlp.2.bias", [c.OutHiddenSize]);
    }

    /// <summary>Tensors of the audio encoder (<c>audio_tower.*</c>).</summary>
    public static IEnumerable<ThinkerWeight> Audio(Qwen25OmniAudioConfig c)
    {
        long d = c.DModel, f = c.EncoderFfnDim;
        yield return new("audio_tower.conv1.weight", [d, c.NumMelBins, 3]);
        yield return new("audio_tower.conv1.bias", [d]);
        yield return new("audio_tower.conv2.weight", [d, d, 3]);
        yield return new("audio_tower.conv2.bias", [d]);
        yield return new("audio_tower.audio_bos_eos_token.weight", [2, c.OutputDim]);
        for (int l = 0; l < c.EncoderLayers; l++)
        {
            string p = $"audio_tower.layers.{l}.";
            yield return new(p + "self_attn.q_proj.weight", [d, d]);
            yield return new(p + "self_attn.q_proj.bias", [d]);
            yield return new(p + "self_attn.k_proj.weight", [d, d]);
            yield return new(p + "self_attn.v_proj.weight", [d, d]);
            yield return new(p + "self_attn.v_proj.bias", [d]);
            yield return new(p + "self_attn.out_proj.weight", [d, d]);
            yield return new(p + "self_attn.out_proj.bias", [d]);
            yield return new(p + "self_attn_layer_norm.weight", [d]);
            yield return new(p + "self_attn_layer_norm.bias", [d]);
            yield return new(p + "fc1.weight", [f, d]);
            yield return new(p + "fc1.bias", [f]);
            yield return new(p + "fc2.weight", [d, f]);
            yield return new(p + "fc2.bias", [d]);
            yield return new(p + "final_layer_norm.weight", [d]);
            yield return new(p + "final_layer_norm.bias", [d]);
        }
        yield return new("audio_tower.ln_post.weight", [d]);
        yield return new("audio_tower.ln_post.bias", [d]);
        yield return new("audio_tower.proj.weight", [c.OutputDim, d]);
        yield return new("audio_tower.proj.bias", [c.OutputDim]);
    }
}
