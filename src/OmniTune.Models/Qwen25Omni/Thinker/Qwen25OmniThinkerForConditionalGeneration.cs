using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>
/// The Qwen2.5-Omni thinker as Hugging Face names it. This version holds the text decoder and LM head; the vision and
/// audio towers load into the same module when they are built (their checkpoint keys are recognised and reported).
/// </summary>
public sealed class Qwen25OmniThinkerForConditionalGeneration : nn.Module
{
    readonly Qwen25OmniThinkerTextModel model;
    readonly Linear lm_head;

    /// <summary>Creates the thinker; with <paramref name="tiedLmHead"/> the head shares the embedding matrix.</summary>
    public Qwen25OmniThinkerForConditionalGeneration(Qwen25OmniThinkerConfig config, bool tiedLmHead, Device? device = null,
        ScalarType dtype = ScalarType.Float32) : base("thinker")
    {
        Config = config;
        TiedLmHead = tiedLmHead;
        model = new Qwen25OmniThinkerTextModel(config.Text, device, dtype);
        lm_head = nn.Linear(config.Text.HiddenSize, config.Text.VocabSize, hasBias: false, device: device, dtype: dtype);
        if (tiedLmHead) lm_head.weight = model.EmbedTokens.weight!;
        RegisterComponents();
    }

    /// <summary>The thinker configuration.</summary>
    public Qwen25OmniThinkerConfig Config { get; }

    /// <summary>Whether lm_head.weight is the embedding matrix.</summary>
    public bool TiedLmHead { get; }

    /// <summary>The text decoder.</summary>
    public Qwen25OmniThinkerTextModel TextModel => model;

    /// <summary>
    /// Parameters by Hugging Face key (without the <c>thinker.</c> prefix); a tied head appears once, as the embedding.
    /// </summary>
    public IEnumerable<(string Key, Parameter Parameter)> HuggingFaceParameters() =>
        named_parameters().Where(p => !(TiedLmHead && p.name == ThinkerWeightLayout.LmHeadKey));

    /// <summary>ids [B, S] (+ optional position ids [3, B, S] and padding mask [B, S]) → logits [B, S, V].</summary>
    public Tensor Forward(Tensor inputIds, Tensor? positionIds = null, Tensor? paddingMask = null)
    {
        using var scope = NewDisposeScope();
        Tensor positions = positionIds ?? TextPositionIds.For(inputIds, paddingMask);
        Tensor hidden = model.Forward(model.Embed(inputIds), positions, paddingMask);
        return lm_head.forward(hidden).MoveToOuterDisposeScope();
    }
}
