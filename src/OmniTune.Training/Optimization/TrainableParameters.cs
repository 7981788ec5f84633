using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Optimization;

/// <summary>Freezing by tower (model.json) and Megatron's weight-decay rule (no decay for biases and 1-D weights).</summary>
public static class TrainableParameters
{
    /// <summary>Tower of a Hugging Face parameter name: vision_encoder, vision_projector, audio_encoder or text_decoder.</summary>
    public static string TowerOf(string name) =>
        name.StartsWith("visual.merger.", StringComparison.Ordinal) ? "vision_projector"
        : name.StartsWith("visual.", StringComparison.Ordinal) ? "vision_encoder"
        : name.StartsWith("audio_tower.", StringComparison.Ordinal) ? "audio_encoder"
        : "text_decoder";

    /// <summary>Sets requires_grad by tower; returns the trainable parameters by name.</summary>
    public static List<(string Name, Parameter Parameter)> Apply(Qwen25OmniThinkerForConditionalGeneration model, ModelJsonConfig config)
    {
        var frozen = new HashSet<string>();
        if (config.FreezeVisionEncoder) frozen.Add("vision_encoder");
        if (config.FreezeVisionProjector) frozen.Add("vision_projector");
        if (config.FreezeAudioEncoder) frozen.Add("audio_encoder");
        if (config.FreezeTextDecoder) frozen.Add("text_decoder");
        var trainable = new List<(string, Parameter)>();
        foreach (var (name, parameter) in model.HuggingFaceParameters())
        {
            bool train = !frozen.Contains(TowerOf(name));
            parameter.requires_grad = train;
            if (train) trainable.Add((name, parameter));
        }
        // The audio tower's bos/eos embedding is never used by the forward pass; training it would only add zeros.
        trainable.RemoveAll(p => p.Item1 == "audio_tower.audio_bos_eos_token.weight");
        return trainable;
    }

    /// <summary>Whether Megatron applies weight decay to this parameter (not to biases or 1-D weights).</summary>
    public static bool Decays(string name, Tensor parameter) => !name.EndsWith(".bias", StringComparison.Ordinal) && parameter.dim() > 1;
}
