using System.Text;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Loading;

/// <summary>
/// Loads a Hugging Face Qwen2.5-Omni folder into the thinker with strict key checking: every model parameter must be
/// in the checkpoint with its shape, every checkpoint thinker key must be a known thinker tensor; talker and token2wav
/// weights are skipped; keys with or without the <c>thinker.</c> prefix are accepted (reference §2.4–2.6).
/// </summary>
public static class ThinkerCheckpointLoader
{
    static readonly string[] SpeechPrefixes = ["talker.", "token2wav."];
    const int MaxListed = 20;

    /// <summary>
    /// Reads config.json and the weights of <paramref name="folder"/> and builds the thinker (only <paramref name="parts"/>,
    /// a pipeline stage's share, when given: the other weights are checked, not read).
    /// </summary>
    public static (Qwen25OmniThinkerForConditionalGeneration Model, Qwen25OmniConfig Config, ThinkerLoadReport Report) Load(
        string folder, Device? device = null, ScalarType dtype = ScalarType.Float32, ThinkerParts? parts = null)
    {
        var (config, _) = Qwen25OmniConfigLoader.Load(folder);
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(folder);
        string prefix = DetectPrefix(checkpoint);
        bool tied = !checkpoint.Contains(prefix + ThinkerWeightLayout.LmHeadKey);
        var model = new Qwen25OmniThinkerForConditionalGeneration(config.Thinker, tied, device, dtype, parts);
        try
        {
            ThinkerLoadReport report = LoadWeights(model, checkpoint);
            return (model, config, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Keys and shapes of <paramref name="checkpoint"/> against the thinker <paramref name="layout"/>: missing tensors,
    /// unexpected ones (anything that is neither a thinker tensor nor a talker / token2wav weight), wrong shapes.
    /// </summary>
    public static ThinkerCheckpointComparison Compare(SafetensorsCheckpoint checkpoint, IReadOnlyList<ThinkerWeight> layout)
    {
        string prefix = DetectPrefix(checkpoint);
        var byKey = layout.ToDictionary(w => w.Key, StringComparer.Ordinal);
        int speech = 0;
        var present = new Dictionary<string, string>(StringComparer.Ordinal);   // thinker key -> checkpoint key
        var unexpected = new List<string>();
        foreach (string key in checkpoint.Keys)
        {
            if (SpeechPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal))) { speech++; continue; }
            if (!key.StartsWith(prefix, StringComparison.Ordinal)) { unexpected.Add(key); continue; }
            string local = key[prefix.Length..];
            if (byKey.ContainsKey(local)) present[local] = key;
            else unexpected.Add(key);
        }
        var missing = layout.Where(w => !present.ContainsKey(w.Key)).Select(w => prefix + w.Key).ToList();
        var shapeErrors = new List<string>();
        foreach (var (local, key) in present)
        {
            long[] stored = checkpoint.Info(key).Shape;
            if (!stored.SequenceEqual(byKey[local].Shape))
                shapeErrors.Add($"{key}: checkpoint [{string.Join(", ", stored)}], model [{string.Join(", ", byKey[local].Shape)}]");
        }
        return new ThinkerCheckpointComparison(prefix, present, missing, unexpected, shapeErrors, speech);
    }

    /// <summary>Copies the checkpoint's tensors into <paramref name="model"/> after checking keys and shapes.</summary>
    public static ThinkerLoadReport LoadWeights(Qwen25OmniThinkerForConditionalGeneration model, SafetensorsCheckpoint checkpoint)
    {
        var parameters = model.HuggingFaceParameters().ToDictionary(p => p.Key, p => p.Parameter, StringComparer.Ordinal);
        var comparison = Compare(checkpoint, ThinkerWeightLayout.For(model.Config, model.TiedLmHead));
        var (prefix, present, speech) = (comparison.Prefix, comparison.Present, comparison.SpeechTensors);
        var missing = comparison.Missing.Concat(parameters.Keys.Where(k => !present.ContainsKey(k)).Select(k => prefix + k)).Distinct().ToList();
        if (missing.Count + comparison.Unexpected.Count + comparison.ShapeErrors.Count > 0)
            throw new CheckpointMismatchException(DescribeMismatch(checkpoint.Location, missing, comparison.Unexpected, comparison.ShapeErrors));
        int loaded = 0;
        using (no_grad())
        {
            foreach (var (local, parameter) in parameters)
            {
                using var scope = NewDisposeScope();
                Tensor stored = checkpoint.Read(present[local]);
                parameter.copy_(stored);
                loaded++;
            }
        }
        var notBuilt = present.Keys.Where(k => !parameters.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        return new ThinkerLoadReport(loaded, prefix, speech, notBuilt, model.TiedLmHead);
    }

    /// <summary>"thinker." when the checkpoint holds a full Qwen2.5-Omni model, "" for a thinker saved alone.</summary>
    public static string DetectPrefix(SafetensorsCheckpoint checkpoint) =>
        checkpoint.Keys.Any(k => k.StartsWith(ThinkerWeightLayout.Prefix, StringComparison.Ordinal)) ? ThinkerWeightLayout.Prefix : "";

    /// <summary>The message of a mismatch: each list named, at most 20 entries each.</summary>
    public static string DescribeMismatch(string location, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> shapes)
    {
        var text = new StringBuilder($"{location}: the checkpoint does not match the Qwen2.5-Omni thinker built from its config.json");
        void List(string title, IReadOnlyList<string> items)
        {
            if (items.Count == 0) return;
            text.Append($"\n  {title} ({items.Count}):");
            foreach (string item in items.Take(MaxListed)) text.Append($"\n    {item}");
            if (items.Count > MaxListed) text.Append($"\n    … and {items.Count - MaxListed} more");
        }
        List("missing keys", missing);
        List("unexpected keys", unexpected);
        List("shape mismatches", shapes);
        return text.ToString();
    }
}

/// <summary>A checkpoint's keys against the thinker layout (see <see cref="ThinkerCheckpointLoader.Compare"/>).</summary>
/// <param name="Prefix">"thinker." or "".</param>
/// <param name="Present">Thinker key → checkpoint key of every known tensor found.</param>
/// <param name="Missing">Checkpoint keys the layout needs and the checkpoint lacks.</param>
/// <param name="Unexpected">Checkpoint keys that belong to no known tensor.</param>
/// <param name="ShapeErrors">"key: checkpoint [..], model [..]" for every shape that differs.</param>
/// <param name="SpeechTensors">Talker and token2wav tensors (skipped).</param>
public sealed record ThinkerCheckpointComparison(string Prefix, IReadOnlyDictionary<string, string> Present, IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected, IReadOnlyList<string> ShapeErrors, int SpeechTensors)
{
    /// <summary>Whether the checkpoint matches exactly.</summary>
    public bool Matches => Missing.Count + Unexpected.Count + ShapeErrors.Count == 0;
}
