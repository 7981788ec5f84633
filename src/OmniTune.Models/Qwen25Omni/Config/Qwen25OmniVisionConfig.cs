using System.Text.Json;
using System.Text.Json.Serialization;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>The Qwen2.5-VL-style vision encoder (<c>thinker_config.vision_config</c>). Defaults are the 7B values.</summary>
public sealed record Qwen25OmniVisionConfig
{
    /// <summary>Transformer blocks.</summary>
    [JsonPropertyName("depth")] public int Depth { get; init; } = 32;

    /// <summary>Block width (also spelled <c>embed_dim</c>).</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 1280;

    /// <summary>SwiGLU inner width.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3420;

    /// <summary>Attention heads.</summary>
    [JsonPropertyName("num_heads")] public int NumHeads { get; init; } = 16;

    /// <summary>MLP activation: silu, quick_gelu or gelu.</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";

    /// <summary>Image channels (also <c>in_chans</c>).</summary>
    [JsonPropertyName("in_channels")] public int InChannels { get; init; } = 3;

    /// <summary>Spatial patch side in pixels (also <c>spatial_patch_size</c>).</summary>
    [JsonPropertyName("patch_size")] public int PatchSize { get; init; } = 14;

    /// <summary>Frames per temporal patch.</summary>
    [JsonPropertyName("temporal_patch_size")] public int TemporalPatchSize { get; init; } = 2;

    /// <summary>Side of the patch block merged into one LLM token.</summary>
    [JsonPropertyName("spatial_merge_size")] public int SpatialMergeSize { get; init; } = 2;

    /// <summary>Attention window side in pixels.</summary>
    [JsonPropertyName("window_size")] public int WindowSize { get; init; } = 112;

    /// <summary>Blocks that attend over the whole frame group instead of windows.</summary>
    [JsonPropertyName("fullatt_block_indexes")] public int[] FullAttBlockIndexes { get; init; } = [7, 15, 23, 31];

    /// <summary>Merger output width (= text hidden size).</summary>
    [JsonPropertyName("out_hidden_size")] public int OutHiddenSize { get; init; } = 3584;

    /// <summary>Keys not modelled above.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }

    /// <summary>Width of one attention head.</summary>
    [JsonIgnore] public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Values per patch row: C·T·P·P.</summary>
    [JsonIgnore] public int PatchDim => InChannels * TemporalPatchSize * PatchSize * PatchSize;
}
