using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using OmniTune.Core.Json;

namespace OmniTune.Models.Qwen25Omni.Config;

/// <summary>
/// Reads and writes Qwen2.5-Omni <c>config.json</c>: the full model (with <c>thinker_config</c>) or a thinker saved alone.
/// Accepts both the checkpoint spelling (<c>rope_scaling</c> + <c>rope_theta</c>) and transformers v5's
/// <c>rope_parameters</c>, and the alias keys of the vision config.
/// </summary>
public static class Qwen25OmniConfigLoader
{
    static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    static readonly HashSet<string> TopLevelIgnored = new(HuggingFaceConfigKeys.Ignored, StringComparer.Ordinal)
    {
        "talker_config", "token2wav_config", "enable_talker",
    };

    static readonly HashSet<string> AliasKeys = new(HuggingFaceConfigKeys.Ignored, StringComparer.Ordinal)
    {
        "embed_dim", "in_chans", "spatial_patch_size", "rope_parameters", "mlp_ratio", "tokens_per_second", "encoder_layerdrop",
        "ignore_index", "d_model_hidden",
    };

    /// <summary>Loads <paramref name="path"/> (a config.json or the folder holding it).</summary>
    public static (Qwen25OmniConfig Config, ConfigKeyReport Report) Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: config.json not found", file);
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(file));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}: invalid JSON: {e.Message}", e);
        }
        if (root is not JsonObject rootObject) throw new InvalidDataException($"{file}: the config is not a JSON object");
        return Parse(file, rootObject);
    }

    /// <summary>Parses an already-read config object; <paramref name="source"/> names it in messages.</summary>
    public static (Qwen25OmniConfig Config, ConfigKeyReport Report) Parse(string source, JsonObject root)
    {
        string modelType = root["model_type"]?.GetValue<string>() ?? "";
        JsonObject full;
        if (root["thinker_config"] is JsonObject)
        {
            if (modelType != "qwen2_5_omni")
                throw new InvalidDataException($"{source}: model_type is '{modelType}', not 'qwen2_5_omni': not a Qwen2.5-Omni checkpoint");
            full = root;
        }
        else if (modelType == "qwen2_5_omni_thinker")
        {
            full = new JsonObject { ["model_type"] = "qwen2_5_omni", ["thinker_config"] = root.DeepClone() };
        }
        else
        {
            throw new InvalidDataException($"{source}: not a Qwen2.5-Omni config (model_type '{modelType}', no thinker_config)");
        }
        var thinker = (JsonObject)full["thinker_config"]!;
        Normalize(source, thinker);
        Qwen25OmniConfig config;
        try
        {
            config = full.Deserialize<Qwen25OmniConfig>(Options) ?? throw new InvalidDataException($"{source}: empty config");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: {e.Path}: {e.Message}", e);
        }
        Validate(source, config.Thinker);
        var report = new ConfigKeyReport(source);
        report.Collect("", config.Extra, TopLevelIgnored);
        report.Collect("thinker_config", config.Thinker.Extra, AliasKeys);
        report.Collect("thinker_config.text_config", config.Thinker.Text.Extra, AliasKeys);
        report.Collect("thinker_config.text_config.rope_scaling", config.Thinker.Text.RopeScaling.Extra, AliasKeys);
        report.Collect("thinker_config.vision_config", config.Thinker.Vision.Extra, AliasKeys);
        report.Collect("thinker_config.audio_config", config.Thinker.Audio.Extra, AliasKeys);
        return (config, report);
    }

    static void Normalize(string source, JsonObject thinker)
    {
        if (thinker["vision_config"] is JsonObject vision)
        {
            CopyAlias(vision, "embed_dim", "hidden_size");
            CopyAlias(vision, "in_chans", "in_channels");
            CopyAlias(vision, "spatial_patch_size", "patch_size");
        }
        if (thinker["text_config"] is JsonObject text && text["rope_parameters"] is JsonObject rope)
        {
            // transformers >= 5 folds rope_theta into rope_parameters.
            if (text["rope_theta"] == null && rope["rope_theta"] != null) text["rope_theta"] = rope["rope_theta"]!.DeepClone();
            if (text["rope_scaling"] == null)
            {
                var scaling = (JsonObject)rope.DeepClone();
                scaling.Remove("rope_theta");
                text["rope_scaling"] = scaling;
            }
        }
        if (thinker["text_config"] is JsonObject t && t["rope_scaling"] is JsonObject s && s["mrope_section"] == null)
            throw new InvalidDataException($"{source}: thinker_config.text_config.rope_scaling has no mrope_section");
    }

    static void CopyAlias(JsonObject node, string alias, string canonical)
    {
        if (node[canonical] == null && node[alias] != null) node[canonical] = node[alias]!.DeepClone();
    }

    static void Validate(string source, Qwen25OmniThinkerConfig thinker)
    {
        var text = thinker.Text;
        void Require(bool ok, string message)
        {
            if (!ok) throw new InvalidDataException($"{source}: {message}");
        }
        Require(text.NumAttentionHeads > 0 && text.NumKeyValueHeads > 0 && text.NumAttentionHeads % text.NumKeyValueHeads == 0,
            $"text_config: num_attention_heads {text.NumAttentionHeads} is not a multiple of num_key_value_heads {text.NumKeyValueHeads}");
        Require(text.ExplicitHeadDim != null || text.HiddenSize % text.NumAttentionHeads == 0,
            $"text_config: hidden_size {text.HiddenSize} is not divisible by num_attention_heads {text.NumAttentionHeads}");
        Require(text.HeadDim % 2 == 0, $"text_config: head_dim {text.HeadDim} must be even for rotary embeddings");
        Require(text.RopeScaling.MropeSection.Length == 3 && text.RopeScaling.MropeSection.Sum() == text.HeadDim / 2,
            $"text_config.rope_scaling.mrope_section [{string.Join(", ", text.RopeScaling.MropeSection)}] must have 3 entries summing to head_dim/2 = {text.HeadDim / 2}");
        Require(thinker.Vision.HiddenSize % thinker.Vision.NumHeads == 0,
            $"vision_config: hidden_size {thinker.Vision.HiddenSize} is not divisible by num_heads {thinker.Vision.NumHeads}");
        Require(thinker.Audio.DModel % thinker.Audio.EncoderAttentionHeads == 0,
            $"audio_config: d_model {thinker.Audio.DModel} is not divisible by encoder_attention_heads {thinker.Audio.EncoderAttentionHeads}");
        Require(thinker.Vision.OutHiddenSize == text.HiddenSize,
            $"vision_config.out_hidden_size {thinker.Vision.OutHiddenSize} differs from text hidden_size {text.HiddenSize}");
        Require(thinker.Audio.OutputDim == text.HiddenSize,
            $"audio_config.output_dim {thinker.Audio.OutputDim} differs from text hidden_size {text.HiddenSize}");
    }

    /// <summary>Serialises a config as Hugging Face writes config.json.</summary>
    public static string ToJson(Qwen25OmniConfig config) => JsonSerializer.Serialize(config, Options);

    /// <summary>Writes <c>config.json</c> into <paramref name="folder"/>.</summary>
    public static void Save(Qwen25OmniConfig config, string folder) =>
        File.WriteAllText(Path.Combine(folder, "config.json"), ToJson(config) + "\n");
}
