using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>The thinker's Qwen2 decoder stack (HF <c>Qwen2_5OmniThinkerTextModel</c>, keys <c>model.*</c>).</summary>
public sealed class Qwen25OmniThinkerTextModel : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<Qwen25OmniDecoderLayer> layers;
    readonly RmsNorm norm;
    readonly MultimodalRotaryEmbedding rotary;

    /// <summary>Creates the decoder on <paramref name="device"/> (use the meta device for shape-only models).</summary>
    public Qwen25OmniThinkerTextModel(Qwen25OmniTextConfig config, Device? device, ScalarType dtype) : base("model")
    {
        Config = config;
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: device, dtype: dtype);
        layers = new ModuleList<Qwen25OmniDecoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(new Qwen25OmniDecoderLayer(config, device, dtype));
        norm = new RmsNorm("norm", config.HiddenSize, config.RmsNormEps, device, dtype);
        rotary = new MultimodalRotaryEmbedding(config, device?.type == DeviceType.META ? CPU : device);
        RegisterComponents();
    }

    /// <summary>Activation recompute of the decoder layers while training (none when null).</summary>
    public RecomputeSettings? Recompute { get; set; }

    /// <summary>The decoder's configuration.</summary>
    public Qwen25OmniTextConfig Config { get; }

    /// <summary>The token embedding (shared with a tied LM head).</summary>
    public Embedding EmbedTokens => embed_tokens;

    /// <summary>Looks up token embeddings: ids [B, S] → [B, S, H].</summary>
    public Tensor Embed(Tensor inputIds) => embed_tokens.forward(inputIds);

    /// <summary>Number of decoder layers.</summary>
    public int LayerCount => layers.Count;

    /// <summary>
    /// inputs_embeds [B, S, H], position_ids [3, B, S], padding mask [B, S] (optional) → final-normed hidden states [B, S, H].
    /// With a cache (batch 1, no padding) the new keys and values are appended and attention covers the cached positions.
    /// </summary>
    public Tensor Forward(Tensor inputsEmbeds, Tensor positionIds, Tensor? paddingMask, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = rotary.Compute(positionIds, inputsEmbeds.dtype);
        using var mask = AttentionMask.FromPadding(paddingMask);
        if (cache is not null)
        {
            Tensor x = inputsEmbeds;
            for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, cos, sin, mask, cache, i);
            return norm.Forward(x).MoveToOuterDisposeScope();
        }
        Tensor h = RecomputeSettings.Run(Recompute, layers.Count, inputsEmbeds, [cos, sin, mask.AsTensor()], (i, x, c) =>
        {
            using var m = AttentionMask.FromTensor(c[2]);
            return layers[i].Forward(x, c[0], c[1], m);
        });
        return norm.Forward(h).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) rotary.Dispose();
        base.Dispose(disposing);
    }
}
