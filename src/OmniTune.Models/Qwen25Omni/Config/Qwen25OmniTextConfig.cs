using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>The thinker's Qwen2 text decoder (<c>thinker_config.text_config</c>). Defaults are the 7B values.</summary>
public sealed record Qwen25OmniTextConfig
{
    /// <summary>Rows of the embedding and LM head (may exceed the tokenizer's ids).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 152064;

    /// <summary>Model width H.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 3584;

    /// <summary>SwiGLU inner width.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 18944;

    /// <summary>Decoder layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 28;

    /// <summary>Query heads.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 28;

    /// <summary>Key/value heads (grouped-query attention).</summary>
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; init; } = 4;

    /// <summary>Explicit head width; absent in Qwen2.5-Omni configs, where it is hidden / heads.</summary>
    [JsonPropertyName("head_dim")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ExplicitHeadDim { get; init; }

    /// <summary>MLP activation (silu).</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";

    /// <summary>Trained context length (not a hard cap).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 32768;

    /// <summary>RMSNorm epsilon.</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>Rotary base θ.</summary>
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 1_000_000.0;

    /// <summary>Rotary settings; carries <c>mrope_section</c>.</summary>
    [JsonPropertyName("rope_scaling")] public RopeScalingConfig RopeScaling { get; init; } = new();

    /// <summary>Whether the LM head shares the embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }

    /// <summary>Attention dropout probability.</summary>
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; init; }

    /// <summary>Sliding-window attention switch (false for Qwen2.5-Omni).</summary>
    [JsonPropertyName("use_sliding_window")] public bool UseSlidingWindow { get; init; }

    /// <summary>Window length when sliding windows are on.</summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; }

    /// <summary>Layers using full attention when sliding windows are on.</summary>
    [JsonPropertyName("max_window_layers")] public int MaxWindowLayers { get; init; } = 28;

    /// <summary>Keys not modelled above, kept for round trips.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }

    /// <summary>Width of one attention head.</summary>
    [JsonIgnore] public int HeadDim => ExplicitHeadDim ?? HiddenSize / NumAttentionHeads;
}

/// <summary>Rotary settings of the text decoder.</summary>
public sealed record RopeScalingConfig
{
    /// <summary>Frequencies per position row (temporal, height, width); sums to head_dim / 2.</summary>
    [JsonPropertyName("mrope_section")] public int[] MropeSection { get; init; } = [16, 24, 24];

    /// <summary>Rotary variant; only "default" is used by Qwen2.5-Omni.</summary>
    [JsonPropertyName("rope_type")] public string RopeType { get; init; } = "default";

    /// <summary>Legacy duplicate of <see cref="RopeType"/>.</summary>
    [JsonPropertyName("type")] public string Type { get; init; } = "default";

    /// <summary>Keys not modelled above.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }
}
