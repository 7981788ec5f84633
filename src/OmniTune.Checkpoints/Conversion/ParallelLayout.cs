using System.Text.Json;
using OmniTune.Models.Qwen25Omni.Config;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// A MindSpeed-MM parallel layout (mindspeed_mm.md §1.1): layers per pipeline slot for each tower (outer list =
/// virtual-pipeline chunks, inner = pipeline stages) and the tensor-parallel size of each tower (0 = the LLM's).
/// </summary>
public sealed record ParallelLayout(int[][] LlmPpLayers, int[][] VitPpLayers, int[][] AudioPpLayers, int TpSize = 1, int VitTpSize = 0, int AudioTpSize = 0)
{
    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Pipeline stages (length of an LLM row).</summary>
    public int PipelineSize => LlmPpLayers[0].Length;

    /// <summary>Virtual-pipeline chunks (LLM rows).</summary>
    public int VirtualSize => LlmPpLayers.Length;

    /// <summary>TP of the vision encoder.</summary>
    public int VitTp => VitTpSize > 0 ? VitTpSize : TpSize;

    /// <summary>TP of the audio encoder.</summary>
    public int AudioTp => AudioTpSize > 0 ? AudioTpSize : TpSize;

    /// <summary>Output TP shards: the largest TP of the towers.</summary>
    public int MaxTp => Math.Max(TpSize, Math.Max(VitTp, AudioTp));

    /// <summary>Single device: every tower in one slot, no TP.</summary>
    public static ParallelLayout Single(Qwen25OmniThinkerConfig c) =>
        new([[c.Text.NumHiddenLayers]], [[c.Vision.Depth]], [[c.Audio.EncoderLayers]]);

    /// <summary>Checks the layout against the model; every problem names the option.</summary>
    public void Validate(Qwen25OmniThinkerConfig c)
    {
        void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }
        Require(LlmPpLayers.Length >= 1 && LlmPpLayers[0].Length >= 1, "llm_pp_layers is empty");
        Require(LlmPpLayers.All(r => r.Length == PipelineSize), $"every llm_pp_layers row must have {PipelineSize} stages");
        Require(VitPpLayers.Length >= 1 && VitPpLayers.All(r => r.Length == VitPpLayers[0].Length), "vit_pp_layers rows must have equal lengths");
        Require(AudioPpLayers.Length >= 1 && AudioPpLayers.All(r => r.Length == AudioPpLayers[0].Length), "audio_pp_layers rows must have equal lengths");
        foreach (var (name, rows, layers) in new[] { ("llm_pp_layers", LlmPpLayers, c.Text.NumHiddenLayers), ("vit_pp_layers", VitPpLayers, c.Vision.Depth), ("audio_pp_layers", AudioPpLayers, c.Audio.EncoderLayers) })
        {
            Require(rows.SelectMany(r => r).All(n => n >= 0), $"{name} has a negative layer count");
            int sum = rows.SelectMany(r => r).Sum();
            Require(sum == layers, $"{name} {Format(rows)} sums to {sum} but the model has {layers} layers");
        }
        Require(TpSize >= 1 && VitTpSize >= 0 && AudioTpSize >= 0, "tp sizes must be positive (0 = same as tp_size for the encoders)");
        foreach (int tp in new[] { TpSize, VitTp, AudioTp })
            Require(MaxTp % tp == 0, $"TP sizes {TpSize}/{VitTp}/{AudioTp} do not divide the largest ({MaxTp})");
        var t = c.Text;
        Require(t.NumKeyValueHeads % TpSize == 0, $"tp_size {TpSize} does not divide the {t.NumKeyValueHeads} key/value heads");
        Require(t.VocabSize % TpSize == 0, $"tp_size {TpSize} does not divide the vocabulary ({t.VocabSize})");
        Require(t.IntermediateSize % TpSize == 0, $"tp_size {TpSize} does not divide intermediate_size {t.IntermediateSize}");
        Require(c.Vision.NumHeads % VitTp == 0 && c.Vision.IntermediateSize % VitTp == 0, $"vit tp {VitTp} does not divide the ViT's {c.Vision.NumHeads} heads and {c.Vision.IntermediateSize} MLP width");
        long merged = (long)c.Vision.HiddenSize * c.Vision.SpatialMergeSize * c.Vision.SpatialMergeSize;
        Require(merged % VitTp == 0, $"vit tp {VitTp} does not divide the projector width {merged}");
        Require(c.Audio.EncoderAttentionHeads % AudioTp == 0 && c.Audio.EncoderFfnDim % AudioTp == 0, $"audio tp {AudioTp} does not divide the audio encoder's {c.Audio.EncoderAttentionHeads} heads and {c.Audio.EncoderFfnDim} FFN width");
    }

    /// <summary>The same layout with encoder TP sizes equal to the LLM's written as 0 (so equal layouts compare equal).</summary>
    public ParallelLayout Normalized() => this with { VitTpSize = VitTp == TpSize ? 0 : VitTp, AudioTpSize = AudioTp == TpSize ? 0 : AudioTp };

    /// <summary>
    /// What differs from <paramref name="other"/>, each in MindSpeed-MM's conversion option names with both values
    /// ("vit_tp_size 2 here, 1 there"); empty when the layouts are the same.
    /// </summary>
    public IReadOnlyList<string> Differences(ParallelLayout other, string here, string there)
    {
        var found = new List<string>();
        void Compare(string name, string mine, string theirs)
        {
            if (mine != theirs) found.Add($"{name} {mine} {here}, {theirs} {there}");
        }
        Compare("tp_size", TpSize.ToString(), other.TpSize.ToString());
        Compare("vit_tp_size", VitTp.ToString(), other.VitTp.ToString());
        Compare("audio_tp_size", AudioTp.ToString(), other.AudioTp.ToString());
        Compare("llm_pp_layers", Format(LlmPpLayers), Format(other.LlmPpLayers));
        Compare("vit_pp_layers", Format(VitPpLayers), Format(other.VitPpLayers));
        Compare("audio_pp_layers", Format(AudioPpLayers), Format(other.AudioPpLayers));
        return found;
    }

    /// <summary>JSON form (stored in every converted file's metadata).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads <see cref="ToJson"/>'s form.</summary>
    public static ParallelLayout FromJson(string json) => JsonSerializer.Deserialize<ParallelLayout>(json, Json) ?? throw new InvalidDataException("empty layout");

    /// <summary>Parses a list option: "[[11,17]]", "[11,17]" (one chunk) or "11,17".</summary>
    public static int[][] ParseLayers(string text, string option)
    {
        string t = text.Trim();
        try
        {
            if (t.StartsWith("[[", StringComparison.Ordinal)) return JsonSerializer.Deserialize<int[][]>(t)!;
            if (t.StartsWith('[')) return [JsonSerializer.Deserialize<int[]>(t)!];
            return [t.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()];
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            throw new ArgumentException($"{option} '{text}' is not a layer list like [[11,17]]", e);
        }
    }

    static string Format(int[][] rows) => "[" + string.Join(",", rows.Select(r => "[" + string.Join(",", r) + "]")) + "]";
}
