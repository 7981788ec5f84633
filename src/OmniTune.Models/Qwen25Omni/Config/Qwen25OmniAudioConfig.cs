using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>The Whisper-style audio encoder (<c>thinker_config.audio_config</c>). Defaults are the 7B values.</summary>
public sealed record Qwen25OmniAudioConfig
{
    /// <summary>Log-mel bins per frame.</summary>
    [JsonPropertyName("num_mel_bins")] public int NumMelBins { get; init; } = 128;

    /// <summary>Encoder width.</summary>
    [JsonPropertyName("d_model")] public int DModel { get; init; } = 1280;

    /// <summary>Encoder layers.</summary>
    [JsonPropertyName("encoder_layers")] public int EncoderLayers { get; init; } = 32;

    /// <summary>Attention heads.</summary>
    [JsonPropertyName("encoder_attention_heads")] public int EncoderAttentionHeads { get; init; } = 20;

    /// <summary>MLP inner width.</summary>
    [JsonPropertyName("encoder_ffn_dim")] public int EncoderFfnDim { get; init; } = 5120;

    /// <summary>MLP activation (exact GELU).</summary>
    [JsonPropertyName("activation_function")] public string ActivationFunction { get; init; } = "gelu";

    /// <summary>Length of the sinusoidal position table.</summary>
    [JsonPropertyName("max_source_positions")] public int MaxSourcePositions { get; init; } = 1500;

    /// <summary>Half the chunk length in mel frames (chunks of 2·n_window).</summary>
    [JsonPropertyName("n_window")] public int NWindow { get; init; } = 100;

    /// <summary>Projection width (= text hidden size).</summary>
    [JsonPropertyName("output_dim")] public int OutputDim { get; init; } = 3584;

    /// <summary>Whether embeddings are scaled by √d_model (false; unused).</summary>
    [JsonPropertyName("scale_embedding")] public bool ScaleEmbedding { get; init; }

    /// <summary>Residual dropout.</summary>
    [JsonPropertyName("dropout")] public double Dropout { get; init; }

    /// <summary>Attention dropout.</summary>
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; init; }

    /// <summary>MLP activation dropout.</summary>
    [JsonPropertyName("activation_dropout")] public double ActivationDropout { get; init; }

    /// <summary>Keys not modelled above.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }

    /// <summary>Width of one attention head.</summary>
    [JsonIgnore] public int HeadDim => DModel / EncoderAttentionHeads;
}
