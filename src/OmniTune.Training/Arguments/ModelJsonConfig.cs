using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;

namespace OmniTune.Training.Arguments;

/// <summary>
/// The parts of MindSpeed-MM's <c>model.json</c> that decide training (mindspeed_mm.md §2): per-tower <c>freeze</c>
/// (vision encoder and audio encoder frozen, projector trainable by default), <c>pipeline_num_layers</c>, recompute
/// settings and <c>img_context_token_id</c>. Structure values present in the file are checked against config.json.
/// </summary>
public sealed record ModelJsonConfig
{
    /// <summary>Freeze the ViT blocks and patch embedding.</summary>
    public bool FreezeVisionEncoder { get; init; } = true;

    /// <summary>Freeze the patch merger.</summary>
    public bool FreezeVisionProjector { get; init; }

    /// <summary>Freeze the audio encoder.</summary>
    public bool FreezeAudioEncoder { get; init; } = true;

    /// <summary>Freeze the text decoder (ignored by MindSpeed-MM; honoured here, with a warning that the run trains nothing else).</summary>
    public bool FreezeTextDecoder { get; init; }

    /// <summary>Token id whose positions receive the vision features (recorded; OmniTune fills images and videos by their own ids).</summary>
    public int? ImgContextTokenId { get; init; }

    /// <summary>Recompute of the ViT blocks.</summary>
    public RecomputeSettings? VisionRecompute { get; init; }

    /// <summary>Recompute of the audio layers.</summary>
    public RecomputeSettings? AudioRecompute { get; init; }

    /// <summary>Recompute of the decoder layers.</summary>
    public RecomputeSettings? TextRecompute { get; init; }

    /// <summary>The vision encoder's pipeline_num_layers (rows = virtual chunks), when given.</summary>
    public int[][]? VisionPipeline { get; init; }

    /// <summary>The audio encoder's pipeline_num_layers, when given.</summary>
    public int[][]? AudioPipeline { get; init; }

    /// <summary>The text decoder's pipeline_num_layers, when given.</summary>
    public int[][]? TextPipeline { get; init; }

    /// <summary>
    /// Tensor-parallel size of the vision encoder and projector (<c>image_encoder.tp</c>, MindSpeed-MM's per-module key;
    /// the decoder's when absent). It must divide the decoder's size: the encoder's groups lie inside the decoder's.
    /// </summary>
    public int? VisionTensorSize { get; init; }

    /// <summary>Tensor-parallel size of the audio encoder (<c>audio_encoder.tp</c>; the decoder's when absent).</summary>
    public int? AudioTensorSize { get; init; }

    /// <summary>The raw document, stored in checkpoints.</summary>
    public JsonObject Raw { get; init; } = [];

    /// <summary>Reads <paramref name="path"/> and checks it against the thinker config.</summary>
    public static ModelJsonConfig Load(string path, Qwen25OmniThinkerConfig thinker)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model.json not found", path);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject
                ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
        JsonObject? Section(params string[] keys)
        {
            JsonNode? node = root;
            foreach (string k in keys) node = node?[k];
            return node as JsonObject;
        }
        var vision = Section("image_encoder", "vision_encoder");
        var projector = Section("image_encoder", "vision_projector");
        var audio = Section("audio_encoder", "audio_encoder");
        var text = Section("text_decoder");
        void Check(JsonObject? section, string name, string key, int expected)
        {
            if (section?[key] is JsonValue v && v.TryGetValue(out int given) && given != expected)
                throw new InvalidDataException($"{path}: {name}.{key} is {given} but the checkpoint's config.json has {expected}");
        }
        Check(vision, "image_encoder.vision_encoder", "num_layers", thinker.Vision.Depth);
        Check(vision, "image_encoder.vision_encoder", "hidden_size", thinker.Vision.HiddenSize);
        Check(audio, "audio_encoder.audio_encoder", "num_layers", thinker.Audio.EncoderLayers);
        Check(text, "text_decoder", "num_layers", thinker.Text.NumHiddenLayers);
        Check(text, "text_decoder", "hidden_size", thinker.Text.HiddenSize);
        Check(text, "text_decoder", "vocab_size", thinker.Text.VocabSize);
        int[][]? visionPipeline = Pipeline(path, vision, "image_encoder.vision_encoder", thinker.Vision.Depth);
        int[][]? audioPipeline = Pipeline(path, audio, "audio_encoder.audio_encoder", thinker.Audio.EncoderLayers);
        int[][]? textPipeline = Pipeline(path, text, "text_decoder", thinker.Text.NumHiddenLayers);

        int? context = root["img_context_token_id"] is JsonValue c && c.TryGetValue(out int id) ? id : null;
        if (context is int ctx && ctx != thinker.ImageTokenId && ctx != thinker.VideoTokenId)
            throw new InvalidDataException($"{path}: img_context_token_id {ctx} is neither the image ({thinker.ImageTokenId}) nor the video ({thinker.VideoTokenId}) token id");
        int? Tensor(string module)
        {
            if (Section(module)?["tp"] is not JsonValue v) return null;
            if (!v.TryGetValue(out int size) || size < 1) throw new InvalidDataException($"{path}: {module}.tp must be a positive integer");
            return size;
        }
        static bool Freeze(JsonObject? section, bool fallback) => section?["freeze"] is JsonValue f && f.TryGetValue(out bool b) ? b : fallback;
        return new ModelJsonConfig
        {
            FreezeVisionEncoder = Freeze(vision, true),
            FreezeVisionProjector = Freeze(projector, false),
            FreezeAudioEncoder = Freeze(audio, true),
            FreezeTextDecoder = Freeze(text, false),
            ImgContextTokenId = context,
            VisionRecompute = Recompute(path, vision, "image_encoder.vision_encoder"),
            AudioRecompute = Recompute(path, audio, "audio_encoder.audio_encoder"),
            TextRecompute = Recompute(path, text, "text_decoder"),
            VisionPipeline = visionPipeline,
            AudioPipeline = audioPipeline,
            TextPipeline = textPipeline,
            VisionTensorSize = Tensor("image_encoder"),
            AudioTensorSize = Tensor("audio_encoder"),
            Raw = root,
        };
    }

    static RecomputeSettings? Recompute(string path, JsonObject? section, string name)
    {
        string? granularity = section?["recompute_granularity"] is JsonValue g && g.GetValueKind() == JsonValueKind.String ? g.GetValue<string>() : null;
        if (granularity is null) return null;
        if (granularity == "selective")
            throw new NotSupportedException($"{path}: {name}.recompute_granularity 'selective' is not built; use 'full' with recompute_method uniform or block");
        if (granularity != "full") throw new InvalidDataException($"{path}: {name}.recompute_granularity '{granularity}' must be full or selective");
        string method = section?["recompute_method"] is JsonValue m && m.GetValueKind() == JsonValueKind.String ? m.GetValue<string>() : "";
        if (method is not ("uniform" or "block")) throw new InvalidDataException($"{path}: {name}.recompute_method '{method}' must be uniform or block with full recompute");
        int layers = section?["recompute_num_layers"] is JsonValue n && n.TryGetValue(out int count) ? count
            : throw new InvalidDataException($"{path}: {name}: full recompute needs recompute_num_layers");
        if (layers < 1) throw new InvalidDataException($"{path}: {name}.recompute_num_layers must be at least 1");
        return new RecomputeSettings(method, layers);
    }

    /// <summary>A tower's pipeline_num_layers: flat [a, b, …] (one row) or MindSpeed's nested [[…], […]] (one row per virtual chunk).</summary>
    static int[][]? Pipeline(string path, JsonObject? section, string name, int layers)
    {
        if (section?["pipeline_num_layers"] is not JsonArray stages) return null;
        int[][] rows;
        try
        {
            rows = stages.Count > 0 && stages[0] is JsonArray
                ? stages.Select(r => ((JsonArray)r!).Select(x => x!.GetValue<int>()).ToArray()).ToArray()
                : [stages.Select(x => x!.GetValue<int>()).ToArray()];
        }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: {name}.pipeline_num_layers must be a list of layer counts (or a list of such lists, one per virtual chunk)", e);
        }
        int sum = rows.Sum(r => r.Sum());
        if (sum != layers)
            throw new InvalidDataException($"{path}: {name}.pipeline_num_layers [{string.Join(", ", rows.SelectMany(r => r))}] sums to {sum}, the model has {layers} layers");
        return rows;
    }
}
