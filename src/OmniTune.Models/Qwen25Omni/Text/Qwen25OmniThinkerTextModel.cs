using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>The thinker's Qwen2 decoder stack (HF <c>Qwen2_5OmniThinkerTextModel</c>, keys <c>model.*</c>).</summary>
public sealed class Qwen25OmniThinkerTextModel : nn.Module
{
    readonly nn.Module<Tensor, Tensor> embed_tokens;
    readonly ModuleList<Qwen25OmniDecoderLayer> layers;
    readonly RmsNorm norm;
    readonly MultimodalRotaryEmbedding rotary;

    /// <summary>
    /// Creates the decoder on <paramref name="device"/> (use the meta device for shape-only models); <paramref name="parts"/>
    /// (all when null) says which parts are built there, the rest going to the meta device.
    /// </summary>
    public Qwen25OmniThinkerTextModel(Qwen25OmniTextConfig config, Device? device, ScalarType dtype, Thinker.ThinkerParts? parts = null) : base("model")
    {
        Config = config;
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: Thinker.ThinkerParts.Place(parts?.Embedding ?? true, device), dtype: dtype);
        layers = new ModuleList<Qwen25OmniDecoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
            layers.Add(new Qwen25OmniDecoderLayer(config, Thinker.ThinkerParts.Place(parts?.DecoderLayers.Contains(i) ?? true, device), dtype));
        norm = new RmsNorm("norm", config.HiddenSize, config.RmsNormEps, Thinker.ThinkerParts.Place(parts?.Head ?? true, device), dtype);
        rotary = new MultimodalRotaryEmbedding(config, device?.type == DeviceType.META ? CPU : device);
        RegisterComponents();
    }

    /// <summary>Activation recompute of the decoder layers while training (none when null).</summary>
    public RecomputeSettings? Recompute { get; set; }

    /// <summary>Optional: watches the layers in training (the trainer's overlapped gradient reduction).</summary>
    public ILayerProgress? Progress { get; set; }

    /// <summary>The decoder's configuration.</summary>
    public Qwen25OmniTextConfig Config { get; }

    /// <summary>The token embedding matrix (shared with a tied LM head).</summary>
    public Parameter EmbeddingWeight => ((Embedding)embed_tokens).weight!;

    /// <summary>Looks up token embeddings: ids [B, S] → [B, S, H].</summary>
    public Tensor Embed(Tensor inputIds) => embed_tokens.call(inputIds);

    /// <summary>Number of decoder layers.</summary>
    public int LayerCount => layers.Count;

    /// <summary>
    /// inputs_embeds [B, S, H], position_ids [3, B, S], padding mask [B, S] (optional) → final-normed hidden states [B, S, H].
    /// With a cache (batch 1, no padding) the new keys and values are appended and attention covers the cached positions.
    /// </summary>
    public Tensor Forward(Tensor inputsEmbeds, Tensor positionIds, Tensor? paddingMask, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        using var pass = Prepare(positionIds, paddingMask, inputsEmbeds.dtype);
        if (cache is not null)
        {
            Tensor x = inputsEmbeds;
            for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, pass.Cos, pass.Sin, pass.Mask, cache, i);
            return norm.Forward(x).MoveToOuterDisposeScope();
        }
        return Norm(Layers(inputsEmbeds, pass, 0, layers.Count)).MoveToOuterDisposeScope();
    }

    /// <summary>Rotary tables and attention mask of a batch, from its positions and padding alone.</summary>
    public DecoderPass Prepare(Tensor positionIds, Tensor? paddingMask, ScalarType dtype) => Prepare(positionIds, AttentionMask.FromPadding(paddingMask), dtype);

    /// <summary>Rotary tables of <paramref name="positionIds"/> with a given mask (owned by the pass).</summary>
    public DecoderPass Prepare(Tensor positionIds, AttentionMask mask, ScalarType dtype)
    {
        var (cos, sin) = rotary.Compute(positionIds, dtype);
        return new DecoderPass(cos, sin, mask);
    }

    /// <summary>Decoder layers [<paramref name="from"/>, <paramref name="to"/>) on hidden states [B, S, H].</summary>
    public Tensor Layers(Tensor x, DecoderPass pass, int from, int to) =>
        RecomputeSettings.Run(Recompute, from, to, x, [pass.Cos, pass.Sin, pass.Mask.AsTensor()], (i, h, c) =>
        {
            using var m = AttentionMask.FromTensor(c[2], pass.Mask.Attend);
            return layers[i].Forward(h, c[0], c[1], m);
        }, Progress);

    /// <summary>The final RMS norm.</summary>
    public Tensor Norm(Tensor x) => norm.Forward(x);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) rotary.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Rotary cos/sin and the attention mask one decoder forward uses; owns them.</summary>
/// <param name="Cos">Rotary cos.</param>
/// <param name="Sin">Rotary sin.</param>
/// <param name="Mask">Causal (and padding) mask.</param>
public sealed record DecoderPass(Tensor Cos, Tensor Sin, AttentionMask Mask) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
        Mask.Dispose();
    }
}
