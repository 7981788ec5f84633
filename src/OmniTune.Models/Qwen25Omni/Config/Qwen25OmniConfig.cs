using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>A Qwen2.5-Omni <c>config.json</c>. OmniTune uses the thinker; talker and token2wav settings are kept verbatim.</summary>
public sealed record Qwen25OmniConfig
{
    /// <summary>Format tag.</summary>
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "qwen2_5_omni";

    /// <summary>Class names Hugging Face uses to load the folder.</summary>
    [JsonPropertyName("architectures")] public string[] Architectures { get; init; } = ["Qwen2_5OmniForConditionalGeneration"];

    /// <summary>Whether the speech-output half is enabled (irrelevant to the thinker).</summary>
    [JsonPropertyName("enable_audio_output")] public bool EnableAudioOutput { get; init; }

    /// <summary>Storage dtype of the weights, e.g. "bfloat16".</summary>
    [JsonPropertyName("torch_dtype")] public string TorchDtype { get; init; } = "bfloat16";

    /// <summary>The thinker.</summary>
    [JsonPropertyName("thinker_config")] public Qwen25OmniThinkerConfig Thinker { get; init; } = new();

    /// <summary>Keys not modelled above (talker_config, token2wav_config, …), kept for round trips.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}
