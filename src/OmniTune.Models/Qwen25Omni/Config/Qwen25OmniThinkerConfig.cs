using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>The thinker (<c>thinker_config</c>): its three towers and the multimodal token ids. Defaults are the 7B values.</summary>
public sealed record Qwen25OmniThinkerConfig
{
    /// <summary>Format tag of the thinker config.</summary>
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "qwen2_5_omni_thinker";

    /// <summary>Text decoder.</summary>
    [JsonPropertyName("text_config")] public Qwen25OmniTextConfig Text { get; init; } = new();

    /// <summary>Vision encoder.</summary>
    [JsonPropertyName("vision_config")] public Qwen25OmniVisionConfig Vision { get; init; } = new();

    /// <summary>Audio encoder.</summary>
    [JsonPropertyName("audio_config")] public Qwen25OmniAudioConfig Audio { get; init; } = new();

    /// <summary><c>&lt;|AUDIO|&gt;</c> placeholder id.</summary>
    [JsonPropertyName("audio_token_index")] public int AudioTokenId { get; init; } = 151646;

    /// <summary><c>&lt;|IMAGE|&gt;</c> placeholder id.</summary>
    [JsonPropertyName("image_token_index")] public int ImageTokenId { get; init; } = 151655;

    /// <summary><c>&lt;|VIDEO|&gt;</c> placeholder id.</summary>
    [JsonPropertyName("video_token_index")] public int VideoTokenId { get; init; } = 151656;

    /// <summary><c>&lt;|audio_bos|&gt;</c> id.</summary>
    [JsonPropertyName("audio_start_token_id")] public int AudioStartTokenId { get; init; } = 151647;

    /// <summary><c>&lt;|audio_eos|&gt;</c> id.</summary>
    [JsonPropertyName("audio_end_token_id")] public int AudioEndTokenId { get; init; } = 151648;

    /// <summary><c>&lt;|vision_bos|&gt;</c> id (read by get_rope_index).</summary>
    [JsonPropertyName("vision_start_token_id")] public int VisionStartTokenId { get; init; } = 151652;

    /// <summary><c>&lt;|vision_eos|&gt;</c> id.</summary>
    [JsonPropertyName("vision_end_token_id")] public int VisionEndTokenId { get; init; } = 151653;

    /// <summary><c>&lt;|vision_pad|&gt;</c> id (unused by Omni).</summary>
    [JsonPropertyName("vision_token_id")] public int VisionTokenId { get; init; } = 151654;

    /// <summary>Id of the plain token "user".</summary>
    [JsonPropertyName("user_token_id")] public int UserTokenId { get; init; } = 872;

    /// <summary><c>&lt;|im_start|&gt;</c>.</summary>
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; init; } = 151644;

    /// <summary><c>&lt;|im_end|&gt;</c>: generation stops here.</summary>
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; init; } = 151645;

    /// <summary><c>&lt;|endoftext|&gt;</c>, the padding id.</summary>
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; init; } = 151643;

    /// <summary>TMRoPE temporal positions per second.</summary>
    [JsonPropertyName("position_id_per_seconds")] public int PositionIdPerSeconds { get; init; } = 25;

    /// <summary>Audio-in-video interleaving chunk length in seconds.</summary>
    [JsonPropertyName("seconds_per_chunk")] public int SecondsPerChunk { get; init; } = 2;

    /// <summary>Keys not modelled above.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}
