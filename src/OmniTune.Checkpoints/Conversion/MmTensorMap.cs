using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>Tower a MindSpeed-MM tensor belongs to.</summary>
public enum Tower
{
    /// <summary>text_decoder.*</summary>
    Text,

    /// <summary>image_encoder.*</summary>
    Vision,

    /// <summary>audio_encoder.*</summary>
    Audio,
}

/// <summary>How Hugging Face tensors combine into one MindSpeed-MM tensor.</summary>
public enum MergeKind
{
    /// <summary>One tensor, renamed.</summary>
    Rename,

    /// <summary>cat(gate, up) along rows.</summary>
    UpGate,

    /// <summary>q, k, v interleaved per group.</summary>
    Qkv,

    /// <summary>q and v biases with a zero k bias, interleaved per group (audio).</summary>
    QkvZeroK,
}

/// <summary>How a tensor is cut across tensor-parallel ranks.</summary>
public enum SplitKind
{
    /// <summary>Every rank holds it whole.</summary>
    Replicated,

    /// <summary>Contiguous row blocks (column-parallel weights, vocabulary).</summary>
    Row,

    /// <summary>Contiguous column blocks (row-parallel weights).</summary>
    Column,

    /// <summary>The matching blocks of gate and up.</summary>
    Glu,
}

/// <summary>Where a tensor goes in the pipeline: a layer (by global index), or the tower's first or last non-empty slot.</summary>
public enum Placement
{
    /// <summary>A transformer layer.</summary>
    Layer,

    /// <summary>Embeddings and stems.</summary>
    First,

    /// <summary>Final norms, heads and projectors.</summary>
    Last,
}

/// <summary>One MindSpeed-MM tensor and how it is made from Hugging Face tensors (keys without the thinker prefix).</summary>
/// <param name="Name">MindSpeed-MM key with the global layer index.</param>
/// <param name="Tower">Owning tower.</param>
/// <param name="Placement">Pipeline placement.</param>
/// <param name="Layer">Global layer index for <see cref="Placement.Layer"/>.</param>
/// <param name="Merge">How the sources combine.</param>
/// <param name="Sources">Hugging Face keys (q, k, v / gate, up / one).</param>
/// <param name="Groups">Interleave groups for QKV merges.</param>
/// <param name="Split">Tensor-parallel split.</param>
public sealed record MmTensor(string Name, Tower Tower, Placement Placement, int Layer, MergeKind Merge, string[] Sources, int Groups, SplitKind Split)
{
    /// <summary>The key with its layer renumbered to <paramref name="local"/> (the first ".&lt;layer&gt;." after "layers").</summary>
    public string LocalName(int local) => Placement != Placement.Layer ? Name : Name.Replace($"layers.{Layer}.", $"layers.{local}.", StringComparison.Ordinal);
}

/// <summary>
/// The complete Hugging Face ↔ MindSpeed-MM mapping of the Qwen2.5-Omni thinker (mindspeed_mm.md §1.3–1.5): renames,
/// gate/up merges, QKV interleaves per query group (LLM) or per head (ViT, audio; audio's missing k bias as zeros),
/// and the tensor-parallel split of every tensor.
/// </summary>
public static class MmTensorMap
{
    /// <summary>Every MindSpeed-MM tensor of the thinker, towers in text, vision, audio order.</summary>
    public static List<MmTensor> For(Qwen25OmniThinkerConfig c, bool tiedLmHead)
    {
        var map = new List<MmTensor>();
        void Add(string name, Tower tower, Placement placement, int layer, MergeKind merge, string[] sources, int groups, SplitKind split) =>
            map.Add(new MmTensor(name, tower, placement, layer, merge, sources, groups, split));

        // Text decoder.
        Add("text_decoder.embedding.word_embeddings.weight", Tower.Text, Placement.First, 0, MergeKind.Rename, ["model.embed_tokens.weight"], 0, SplitKind.Row);
        for (int i = 0; i < c.Text.NumHiddenLayers; i++)
        {
            string h = $"model.layers.{i}.", m = $"text_decoder.decoder.layers.{i}.";
            Add(m + "input_layernorm.weight", Tower.Text, Placement.Layer, i, MergeKind.Rename, [h + "input_layernorm.weight"], 0, SplitKind.Replicated);
            foreach (string kind in new[] { "weight", "bias" })
            {
                Add(m + "self_attention.linear_qkv." + kind, Tower.Text, Placement.Layer, i, MergeKind.Qkv,
                    [h + "self_attn.q_proj." + kind, h + "self_attn.k_proj." + kind, h + "self_attn.v_proj." + kind], c.Text.NumKeyValueHeads, SplitKind.Row);
            }
            Add(m + "self_attention.linear_proj.weight", Tower.Text, Placement.Layer, i, MergeKind.Rename, [h + "self_attn.o_proj.weight"], 0, SplitKind.Column);
            Add(m + "pre_mlp_layernorm.weight", Tower.Text, Placement.Layer, i, MergeKind.Rename, [h + "post_attention_layernorm.weight"], 0, SplitKind.Replicated);
            Add(m + "mlp.linear_fc1.weight", Tower.Text, Placement.Layer, i, MergeKind.UpGate, [h + "mlp.gate_proj.weight", h + "mlp.up_proj.weight"], 0, SplitKind.Glu);
            Add(m + "mlp.linear_fc2.weight", Tower.Text, Placement.Layer, i, MergeKind.Rename, [h + "mlp.down_proj.weight"], 0, SplitKind.Column);
        }
        Add("text_decoder.decoder.final_layernorm.weight", Tower.Text, Placement.Last, 0, MergeKind.Rename, ["model.norm.weight"], 0, SplitKind.Replicated);
        if (!tiedLmHead) Add("text_decoder.output_layer.weight", Tower.Text, Placement.Last, 0, MergeKind.Rename, [ThinkerWeightLayout.LmHeadKey], 0, SplitKind.Row);

        // Vision encoder.
        Add("image_encoder.encoder.patch_embed.proj.weight", Tower.Vision, Placement.First, 0, MergeKind.Rename, ["visual.patch_embed.proj.weight"], 0, SplitKind.Replicated);
        for (int i = 0; i < c.Vision.Depth; i++)
        {
            string h = $"visual.blocks.{i}.", m = $"image_encoder.encoder.blocks.layers.{i}.";
            Add(m + "input_layernorm.weight", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "norm1.weight"], 0, SplitKind.Replicated);
            Add(m + "pre_mlp_layernorm.weight", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "norm2.weight"], 0, SplitKind.Replicated);
            foreach (string kind in new[] { "weight", "bias" })
            {
                Add(m + "self_attention.linear_qkv." + kind, Tower.Vision, Placement.Layer, i, MergeKind.Qkv, [h + "attn.q." + kind, h + "attn.k." + kind, h + "attn.v." + kind], c.Vision.NumHeads, SplitKind.Row);
                Add(m + "mlp.linear_fc1." + kind, Tower.Vision, Placement.Layer, i, MergeKind.UpGate, [h + "mlp.gate_proj." + kind, h + "mlp.up_proj." + kind], 0, SplitKind.Glu);
            }
            Add(m + "self_attention.linear_proj.weight", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "attn.proj.weight"], 0, SplitKind.Column);
            Add(m + "self_attention.linear_proj.bias", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "attn.proj.bias"], 0, SplitKind.Replicated);
            Add(m + "mlp.linear_fc2.weight", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "mlp.down_proj.weight"], 0, SplitKind.Column);
            Add(m + "mlp.linear_fc2.bias", Tower.Vision, Placement.Layer, i, MergeKind.Rename, [h + "mlp.down_proj.bias"], 0, SplitKind.Replicated);
        }
        Add("image_encoder.projector.layernorm.weight", Tower.Vision, Placement.Last, 0, MergeKind.Rename, ["visual.merger.ln_q.weight"], 0, SplitKind.Replicated);
        Add("image_encoder.projector.encoder.linear_fc1.weight", Tower.Vision, Placement.Last, 0, MergeKind.Rename, ["visual.merger.mlp.0.weight"], 0, SplitKind.Row);
        Add("image_encoder.projector.encoder.linear_fc1.bias", Tower.Vision, Placement.Last, 0, MergeKind.Rename, ["visual.merger.mlp.0.bias"], 0, SplitKind.Row);
        Add("image_encoder.projector.encoder.linear_fc2.weight", Tower.Vision, Placement.Last, 0, MergeKind.Rename, ["visual.merger.mlp.2.weight"], 0, SplitKind.Column);
        Add("image_encoder.projector.encoder.linear_fc2.bias", Tower.Vision, Placement.Last, 0, MergeKind.Rename, ["visual.merger.mlp.2.bias"], 0, SplitKind.Replicated);

        // Audio encoder.
        foreach (string conv in new[] { "conv1", "conv2" })
        {
            foreach (string kind in new[] { "weight", "bias" })
                Add($"audio_encoder.encoder.{conv}.{kind}", Tower.Audio, Placement.First, 0, MergeKind.Rename, [$"audio_tower.{conv}.{kind}"], 0, SplitKind.Replicated);
        }
        Add("audio_encoder.encoder.audio_bos_eos_token.weight", Tower.Audio, Placement.First, 0, MergeKind.Rename, ["audio_tower.audio_bos_eos_token.weight"], 0, SplitKind.Replicated);
        for (int i = 0; i < c.Audio.EncoderLayers; i++)
        {
            string h = $"audio_tower.layers.{i}.", m = $"audio_encoder.encoder.blocks.layers.{i}.";
            Add(m + "self_attention.linear_qkv.weight", Tower.Audio, Placement.Layer, i, MergeKind.Qkv,
                [h + "self_attn.q_proj.weight", h + "self_attn.k_proj.weight", h + "self_attn.v_proj.weight"], c.Audio.EncoderAttentionHeads, SplitKind.Row);
            Add(m + "self_attention.linear_qkv.bias", Tower.Audio, Placement.Layer, i, MergeKind.QkvZeroK,
                [h + "self_attn.q_proj.bias", h + "self_attn.v_proj.bias"], c.Audio.EncoderAttentionHeads, SplitKind.Row);
            Add(m + "self_attention.linear_proj.weight", Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "self_attn.out_proj.weight"], 0, SplitKind.Column);
            Add(m + "self_attention.linear_proj.bias", Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "self_attn.out_proj.bias"], 0, SplitKind.Replicated);
            foreach (string kind in new[] { "weight", "bias" })
            {
                Add(m + "input_layernorm." + kind, Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "self_attn_layer_norm." + kind], 0, SplitKind.Replicated);
                Add(m + "pre_mlp_layernorm." + kind, Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "final_layer_norm." + kind], 0, SplitKind.Replicated);
                Add(m + "mlp.linear_fc1." + kind, Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "fc1." + kind], 0, SplitKind.Row);
            }
            Add(m + "mlp.linear_fc2.weight", Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "fc2.weight"], 0, SplitKind.Column);
            Add(m + "mlp.linear_fc2.bias", Tower.Audio, Placement.Layer, i, MergeKind.Rename, [h + "fc2.bias"], 0, SplitKind.Replicated);
        }
        foreach (string kind in new[] { "weight", "bias" })
        {
            Add($"audio_encoder.encoder.ln_post.{kind}", Tower.Audio, Placement.Last, 0, MergeKind.Rename, [$"audio_tower.ln_post.{kind}"], 0, SplitKind.Replicated);
            Add($"audio_encoder.encoder.proj.{kind}", Tower.Audio, Placement.Last, 0, MergeKind.Rename, [$"audio_tower.proj.{kind}"], 0, SplitKind.Replicated);
        }
        return map;
    }
}
