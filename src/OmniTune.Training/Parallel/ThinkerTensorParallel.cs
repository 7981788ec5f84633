using OmniTune.Distributed;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Parallel;

/// <summary>
/// The tensor-parallel plans of the thinker, one per tower, in MindSpeed-MM's cuts (mindspeed_mm.md §1.5): q/k/v,
/// gate/up and fc1 by output rows (column-parallel; whole query groups or heads per rank, since the rows of a head are
/// contiguous), o_proj/proj/out_proj, down_proj and fc2 by input columns (row-parallel; their biases whole), the token
/// embedding and the LM head by vocabulary rows. Each function checks that the tower's sizes divide and names the tower
/// when they do not. The model files stay single-device: the plans swap modules from outside.
/// </summary>
public static class ThinkerTensorParallel
{
    /// <summary>Text decoder: embedding, attention, SwiGLU, LM head.</summary>
    public static readonly IReadOnlyList<ParallelRule> TextDecoder =
    [
        new("model.embed_tokens", ParallelStyle.Vocabulary),
        new("model.layers.*.self_attn.q_proj", ParallelStyle.Column),
        new("model.layers.*.self_attn.k_proj", ParallelStyle.Column),
        new("model.layers.*.self_attn.v_proj", ParallelStyle.Column),
        new("model.layers.*.self_attn.o_proj", ParallelStyle.Row),
        new("model.layers.*.mlp.gate_proj", ParallelStyle.Column),
        new("model.layers.*.mlp.up_proj", ParallelStyle.Column),
        new("model.layers.*.mlp.down_proj", ParallelStyle.Row),
        new("lm_head", ParallelStyle.Column),
    ];

    /// <summary>Vision encoder blocks.</summary>
    public static readonly IReadOnlyList<ParallelRule> VisionEncoder =
    [
        new("visual.blocks.*.attn.q", ParallelStyle.Column),
        new("visual.blocks.*.attn.k", ParallelStyle.Column),
        new("visual.blocks.*.attn.v", ParallelStyle.Column),
        new("visual.blocks.*.attn.proj", ParallelStyle.Row),
        new("visual.blocks.*.mlp.gate_proj", ParallelStyle.Column),
        new("visual.blocks.*.mlp.up_proj", ParallelStyle.Column),
        new("visual.blocks.*.mlp.down_proj", ParallelStyle.Row),
    ];

    /// <summary>Vision projector (the patch merger's MLP).</summary>
    public static readonly IReadOnlyList<ParallelRule> VisionProjector =
    [
        new("visual.merger.mlp.0", ParallelStyle.Column),
        new("visual.merger.mlp.2", ParallelStyle.Row),
    ];

    /// <summary>Audio encoder layers (the k projection has no bias; nothing makes one).</summary>
    public static readonly IReadOnlyList<ParallelRule> AudioEncoder =
    [
        new("audio_tower.layers.*.self_attn.q_proj", ParallelStyle.Column),
        new("audio_tower.layers.*.self_attn.k_proj", ParallelStyle.Column),
        new("audio_tower.layers.*.self_attn.v_proj", ParallelStyle.Column),
        new("audio_tower.layers.*.self_attn.out_proj", ParallelStyle.Row),
        new("audio_tower.layers.*.fc1", ParallelStyle.Column),
        new("audio_tower.layers.*.fc2", ParallelStyle.Row),
    ];

    /// <summary>Text decoder over <paramref name="group"/>; with <paramref name="sequenceParallel"/> its linears gather and reduce-scatter the sequence (dim 1).</summary>
    public static ParallelizedTower ParallelizeTextDecoder(Qwen25OmniThinkerForConditionalGeneration model, IProcessGroup group, bool sequenceParallel)
    {
        var c = model.Config.Text;
        if (model.TiedLmHead && group.Size > 1) throw new NotSupportedException("text_decoder: a tied LM head under tensor parallel is not built (Qwen2.5-Omni's is untied)");
        Require("text_decoder", group, ("num_key_value_heads", c.NumKeyValueHeads), ("intermediate_size", c.IntermediateSize), ("vocab_size", c.VocabSize));
        return TensorParallelPlan.Apply(model, "text_decoder", TextDecoder, group, sequenceParallel ? 1 : null);
    }

    /// <summary>Vision encoder blocks over <paramref name="group"/>.</summary>
    public static ParallelizedTower ParallelizeVisionEncoder(Qwen25OmniThinkerForConditionalGeneration model, IProcessGroup group)
    {
        var c = model.Config.Vision;
        Require("vision_encoder", group, ("num_heads", c.NumHeads), ("intermediate_size", c.IntermediateSize));
        return TensorParallelPlan.Apply(model, "vision_encoder", VisionEncoder, group);
    }

    /// <summary>Vision projector over <paramref name="group"/>.</summary>
    public static ParallelizedTower ParallelizeVisionProjector(Qwen25OmniThinkerForConditionalGeneration model, IProcessGroup group)
    {
        var c = model.Config.Vision;
        Require("vision_projector", group, ("hidden_size × spatial_merge_size²", c.HiddenSize * c.SpatialMergeSize * c.SpatialMergeSize));
        return TensorParallelPlan.Apply(model, "vision_projector", VisionProjector, group);
    }

    /// <summary>Audio encoder layers over <paramref name="group"/>.</summary>
    public static ParallelizedTower ParallelizeAudioEncoder(Qwen25OmniThinkerForConditionalGeneration model, IProcessGroup group)
    {
        var c = model.Config.Audio;
        Require("audio_encoder", group, ("encoder_attention_heads", c.EncoderAttentionHeads), ("encoder_ffn_dim", c.EncoderFfnDim));
        return TensorParallelPlan.Apply(model, "audio_encoder", AudioEncoder, group);
    }

    static void Require(string tower, IProcessGroup group, params (string Name, int Value)[] sizes)
    {
        foreach (var (name, value) in sizes)
        {
            if (value % group.Size != 0)
                throw new ArgumentException($"{tower}: tensor-parallel size {group.Size} does not divide {name} = {value} (heads are cut in whole query groups); choose a size that divides it");
        }
    }
}

/// <summary>
/// The thinker after its plans: each tower's group and cuts, and what the optimizer needs from them — which gradients are
/// partial sums over the sequence (norms under sequence parallel, all-reduced over the group before the step) and which
/// parameters count in the global gradient norm on this rank (every cut once, every replicated tensor once per group).
/// </summary>
public sealed class ThinkerParallelism
{
    readonly Dictionary<string, ParallelizedTower> towers;
    readonly Dictionary<string, TensorShard> shards = new(StringComparer.Ordinal);

    ThinkerParallelism(IProcessGroup tensor, bool sequenceParallel, Dictionary<string, ParallelizedTower> towers)
    {
        (Tensor, SequenceParallel, this.towers) = (tensor, sequenceParallel, towers);
        foreach (var tower in towers.Values)
        {
            foreach (var (key, shard) in tower.Shards) shards[key] = shard;
        }
    }

    /// <summary>The text decoder's tensor-parallel group (the encoders' groups lie within it).</summary>
    public IProcessGroup Tensor { get; }

    /// <summary>Whether the decoder runs sequence parallel.</summary>
    public bool SequenceParallel { get; }

    /// <summary>How each cut parameter (Hugging Face key) is cut.</summary>
    public IReadOnlyDictionary<string, TensorShard> Shards => shards;

    /// <summary>The group of <paramref name="tower"/> (text_decoder, vision_encoder, vision_projector, audio_encoder).</summary>
    public IProcessGroup GroupOf(string tower) => towers[tower].Group;

    /// <summary>No tensor parallel: every parameter whole.</summary>
    public static ThinkerParallelism None(IProcessGroup single) => new(single, false, []);

    /// <summary>
    /// Applies every tower's plan: the decoder over <paramref name="decoder"/>, the encoders over their own groups (the
    /// decoder's, or sub-groups of it).
    /// </summary>
    public static ThinkerParallelism Apply(Qwen25OmniThinkerForConditionalGeneration model, IProcessGroup decoder, IProcessGroup vision, IProcessGroup audio,
        bool sequenceParallel)
    {
        var towers = new Dictionary<string, ParallelizedTower>(StringComparer.Ordinal)
        {
            ["text_decoder"] = ThinkerTensorParallel.ParallelizeTextDecoder(model, decoder, sequenceParallel),
            ["vision_encoder"] = ThinkerTensorParallel.ParallelizeVisionEncoder(model, vision),
            ["vision_projector"] = ThinkerTensorParallel.ParallelizeVisionProjector(model, vision),
            ["audio_encoder"] = ThinkerTensorParallel.ParallelizeAudioEncoder(model, audio),
        };
        return new ThinkerParallelism(decoder, sequenceParallel, towers);
    }

    /// <summary>Records extra cut parameters (LoRA adapters: "lora:" keys).</summary>
    public void AddShards(IEnumerable<(string Key, TensorShard Shard)> extra)
    {
        foreach (var (key, shard) in extra) shards[key] = shard;
    }

    static string Stripped(string key) => key.StartsWith("lora:", StringComparison.Ordinal) ? key[5..] : key;

    /// <summary>
    /// Whether this rank counts <paramref name="key"/>'s gradient in the global norm: a cut parameter on the first copy of
    /// its tower's group within the decoder's group, a whole one on the decoder group's rank 0.
    /// </summary>
    public bool CountsInNorm(string key)
    {
        if (Tensor.Size == 1) return true;
        int groupSize = towers.TryGetValue(TrainableParameters.TowerOf(Stripped(key)), out var tower) ? tower.Group.Size : Tensor.Size;
        return shards.ContainsKey(key) ? Tensor.Rank < groupSize : Tensor.Rank == 0;
    }

    /// <summary>
    /// Sums over the decoder's group the gradients that are partial over the sequence (sequence parallel: the norms, whole
    /// on every rank, saw only this rank's tokens), in one bucket, so every rank then holds the full gradient.
    /// </summary>
    public void ReduceSequencePartials(IReadOnlyList<(string Name, Parameter Parameter)> parameters)
    {
        if (!SequenceParallel) return;
        var partial = parameters.Where(p => IsSequencePartial(p.Name)).Select(p => p.Parameter).ToList();
        if (partial.Count == 0) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor bucket = cat(partial.Select(p => (p.grad ?? zeros_like(p)).to(ScalarType.Float32).reshape(-1)).ToArray());
        Tensor.AllReduce(bucket);
        long offset = 0;
        foreach (Parameter p in partial)
        {
            Tensor slice = bucket.narrow(0, offset, p.numel()).view(p.shape).to(p.dtype);
            if (p.grad is null) p.grad = slice.clone().DetachFromDisposeScope();
            else p.grad.copy_(slice);
            offset += p.numel();
        }
    }

    /// <summary>Whether <paramref name="key"/>'s gradient is a partial sum over this rank's part of the sequence (sequence parallel).</summary>
    public bool IsSequencePartial(string key) =>
        SequenceParallel && !shards.ContainsKey(key) && TrainableParameters.TowerOf(Stripped(key)) == "text_decoder";
}
