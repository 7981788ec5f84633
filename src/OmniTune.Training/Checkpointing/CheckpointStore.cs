using System.Globalization;
using System.Text.Json;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Core.Native;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Thinker;

namespace OmniTune.Training.Checkpointing;

/// <summary>
/// Training checkpoints in Megatron's layout: <c>root/iter_0000010/</c> with <c>mp_rank_00/</c> (a complete Hugging Face
/// folder: config.json, model.safetensors, tokenizer and preprocessor files), <c>optimizer.bin</c> and
/// <c>trainer_state.json</c>, plus <c>root/latest_checkpointed_iteration.txt</c>. Each checkpoint is written into a
/// temporary folder and renamed, and the tracker file replaced atomically afterwards, so a crash at any moment leaves
/// the previous checkpoint usable.
/// </summary>
public static class CheckpointStore
{
    /// <summary>Tracker file name.</summary>
    public const string Tracker = OmniTune.Checkpoints.Conversion.MmCheckpoint.Tracker;

    /// <summary>Model folder inside an iteration folder.</summary>
    public const string ModelFolder = "mp_rank_00";

    /// <summary>Optimizer state file.</summary>
    public const string OptimizerFile = "optimizer.bin";

    /// <summary>Trainer state file.</summary>
    public const string StateFile = "trainer_state.json";

    /// <summary>Step metrics, one JSON object per logged iteration.</summary>
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>Loss curve drawn at the end of a run.</summary>
    public const string PlotFile = "loss.png";

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    /// <summary>Folder of iteration <paramref name="iteration"/>.</summary>
    public static string IterationFolder(string root, int iteration) => OmniTune.Checkpoints.Conversion.MmCheckpoint.IterationFolderName(root, iteration);

    /// <summary>The pipeline layout of a pipeline-parallel checkpoint (JSON), beside trainer_state.json.</summary>
    public const string LayoutFile = OmniTune.Checkpoints.Conversion.LoraCheckpoint.LayoutFile;

    /// <summary>
    /// Whether an iteration folder holds a pipeline-parallel checkpoint: MindSpeed rank folders with weights, or (LoRA) with
    /// each stage's adapters — not the Hugging Face folder of a single-stage checkpoint (which has its config.json).
    /// </summary>
    public static bool IsStageCheckpoint(string iterationFolder) =>
        Directory.Exists(iterationFolder) && Directory.GetDirectories(iterationFolder, "mp_rank_*").Any(d =>
            OmniTune.Checkpoints.Conversion.MmCheckpoint.HasRankFile(d)
            || (File.Exists(Path.Combine(d, Lora.LoraAdapters.WeightsFile)) && !File.Exists(Path.Combine(d, "config.json"))));

    /// <summary>Whether a pipeline-parallel checkpoint holds LoRA adapters (per rank folder) rather than weights.</summary>
    public static bool HasStageAdapters(string iterationFolder) =>
        Directory.GetDirectories(iterationFolder, "mp_rank_*").Any(d => File.Exists(Path.Combine(d, Lora.LoraAdapters.ConfigFile)));

    /// <summary>
    /// Whether <paramref name="root"/> holds a training checkpoint (trainer_state.json) at iteration <paramref name="chosen"/>
    /// or, without one, at the iteration its tracker names (a MindSpeed "release" tracker is not one).
    /// </summary>
    public static bool IsTrainingCheckpoint(string root, int? chosen)
    {
        if (!IsCheckpointRoot(root)) return false;
        int? iteration = chosen ?? (int.TryParse(File.ReadAllText(Path.Combine(root, Tracker)).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) ? i : null);
        return iteration is int it && (File.Exists(Path.Combine(IterationFolder(root, it), StateFile))
                                       || Directory.GetDirectories(root, $"iter_{it:D7}{AtomicDirectory.ReplacedSuffix}*").Length > 0);
    }

    /// <summary>Whether <paramref name="path"/> is a checkpoint root written by the trainer.</summary>
    public static bool IsCheckpointRoot(string path) => File.Exists(Path.Combine(path, Tracker));

    /// <summary>The iteration the tracker names, or <paramref name="chosen"/> when given (which must exist).</summary>
    public static int ResolveIteration(string root, int? chosen)
    {
        if (chosen is int c)
        {
            AtomicDirectory.RecoverInterrupted(IterationFolder(root, c));
            if (!Directory.Exists(IterationFolder(root, c))) throw new DirectoryNotFoundException($"{root}: no checkpoint for iteration {c} ({IterationFolder(root, c)})");
            return c;
        }
        string text = File.ReadAllText(Path.Combine(root, Tracker)).Trim();
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int iteration))
            throw new InvalidDataException($"{Path.Combine(root, Tracker)}: '{text}' is not an iteration number");
        AtomicDirectory.RecoverInterrupted(IterationFolder(root, iteration));
        if (!Directory.Exists(IterationFolder(root, iteration))) throw new DirectoryNotFoundException($"{root}: the tracker names iteration {iteration} but {IterationFolder(root, iteration)} is missing");
        return iteration;
    }

    /// <summary>Writes a checkpoint atomically; <paramref name="writeOptimizer"/> (when given) writes optimizer.bin.</summary>
    public static string Save(string root, int iteration, Qwen25OmniThinkerForConditionalGeneration model, string configFolder, string processorFolder,
        TrainerState state, Action<string>? writeOptimizer, Action<string>? writeAdapters = null, bool writeWeights = true)
    {
        Directory.CreateDirectory(root);
        string final = IterationFolder(root, iteration);
        string temporary = $"{final}.tmp-{Guid.NewGuid():N}";
        try
        {
            string modelFolder = Path.Combine(temporary, ModelFolder);
            Directory.CreateDirectory(modelFolder);
            if (!File.Exists(Path.Combine(configFolder, "config.json"))) throw new FileNotFoundException($"{configFolder}: no config.json to save with the checkpoint");
            CheckpointConverter.CopySideFiles(configFolder, modelFolder, processorFolder);
            if (writeWeights)
            {
                var tensors = model.HuggingFaceParameters()
                    .Select(p => TensorToWrite.Of(ThinkerWeightLayout.Prefix + p.Key, p.Parameter.detach()))
                    .ToList();
                SafetensorsWriter.WriteFile(Path.Combine(modelFolder, SafetensorsCheckpoint.SingleFileName), tensors,
                    new Dictionary<string, string> { ["format"] = "pt", ["iteration"] = iteration.ToString(CultureInfo.InvariantCulture) });
            }
            writeAdapters?.Invoke(modelFolder);
            writeOptimizer?.Invoke(Path.Combine(temporary, OptimizerFile));
            Commit(root, iteration, temporary, state);
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
        return final;
    }

    /// <summary>
    /// Finishes a checkpoint written into <paramref name="temporary"/>: trainer_state.json with the length of every file
    /// (checked before loading), the folder moved in place of iteration <paramref name="iteration"/> (atomically, the
    /// tracker may name it), then the tracker moved on.
    /// </summary>
    public static void Commit(string root, int iteration, string temporary, TrainerState state)
    {
        var lengths = Directory.GetFiles(temporary, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(temporary, f).Replace('\\', '/'), f => new FileInfo(f).Length, StringComparer.Ordinal);
        File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state with { FileLengths = lengths }, Indented));
        AtomicDirectory.Replace(temporary, IterationFolder(root, iteration));   // the tracker may name it: it stays complete throughout
        string tracker = Path.Combine(root, Tracker);
        File.WriteAllText(tracker + ".tmp", iteration.ToString(CultureInfo.InvariantCulture));
        File.Move(tracker + ".tmp", tracker, overwrite: true);
    }

    /// <summary>Reads trainer_state.json of an iteration folder; a damaged file is an error naming it.</summary>
    public static TrainerState ReadState(string iterationFolder)
    {
        string path = Path.Combine(iterationFolder, StateFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: trainer state missing; the checkpoint is incomplete", path);
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid trainer state ({e.Message}); the checkpoint is damaged", e);
        }
    }

    /// <summary>
    /// Checks that <paramref name="file"/> of a checkpoint has the length the save recorded (a truncated or replaced file
    /// is named before a binary reader meets it), then runs <paramref name="load"/>, turning its failure into an error
    /// that names the file.
    /// </summary>
    public static void LoadFile(string iterationFolder, TrainerState state, string file, Action<string> load)
    {
        string path = Path.Combine(iterationFolder, file);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing from the checkpoint", path);
        long length = new FileInfo(path).Length;
        if (state.FileLengths?.TryGetValue(file, out long expected) == true && expected != length)
            throw new InvalidDataException($"{path}: {length:N0} bytes, but the checkpoint wrote {expected:N0}; the file is truncated or damaged");
        try
        {
            load(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException && !e.Message.Contains(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path}: cannot be read ({e.GetType().Name}: {e.Message}); the file is damaged", e);
        }
    }

    /// <summary>What a <c>--save</c> folder holds from an earlier run (empty when nothing).</summary>
    public static IReadOnlyList<string> RunContents(string root)
    {
        if (!Directory.Exists(root)) return [];
        var found = Directory.GetDirectories(root, "iter_*").Where(d => !IsTemporary(d)).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        foreach (string file in new[] { Tracker, MetricsFile })
        {
            if (File.Exists(Path.Combine(root, file))) found.Add(file);
        }
        return found!;
    }

    /// <summary>
    /// Makes <paramref name="root"/> ready for a run. A new run refuses a folder that holds another run unless
    /// <paramref name="overwrite"/> (then that run's checkpoints, tracker, metrics and plot are removed); a resumed run
    /// (<paramref name="resumedIteration"/>) keeps the metrics up to that iteration only. Temporaries of interrupted
    /// saves are removed in both cases. Returns a line saying what was done, or null.
    /// </summary>
    public static string? PrepareSaveFolder(string root, int? resumedIteration, bool overwrite)
    {
        if (!Directory.Exists(root)) return null;
        foreach (string aside in Directory.GetDirectories(root, "iter_*" + AtomicDirectory.ReplacedSuffix + "*"))
            AtomicDirectory.RecoverInterrupted(aside[..aside.IndexOf(AtomicDirectory.ReplacedSuffix, StringComparison.Ordinal)]);
        foreach (string stale in Directory.GetDirectories(root, "iter_*").Where(IsTemporary)) Directory.Delete(stale, recursive: true);
        var held = RunContents(root);
        if (resumedIteration is int resumed)
        {
            int kept = TruncateMetrics(Path.Combine(root, MetricsFile), resumed);
            return kept < 0 ? null : $"{MetricsFile}: kept the {kept} lines up to iteration {resumed}";
        }
        if (held.Count == 0) return null;
        if (!overwrite)
        {
            throw new ArgumentException($"--save {root} holds another run ({string.Join(", ", held.Take(6))}{(held.Count > 6 ? ", …" : "")}): " +
                                        "pass --load with it to resume, --overwrite-output-dir to replace it, or another --save folder");
        }
        foreach (string item in held)
        {
            string path = Path.Combine(root, item);
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else File.Delete(path);
        }
        File.Delete(Path.Combine(root, PlotFile));
        return $"--overwrite-output-dir: removed the earlier run in {root} ({held.Count} items)";
    }

    /// <summary>Keeps the metrics lines of iterations up to <paramref name="iteration"/>; returns their count (-1: no file).</summary>
    static int TruncateMetrics(string path, int iteration)
    {
        if (!File.Exists(path)) return -1;
        var kept = new List<string>();
        foreach (string line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var document = JsonDocument.Parse(line);
                if (document.RootElement.GetProperty(nameof(Logging.StepRecord.Iteration)).GetInt32() <= iteration) kept.Add(line);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                // A line cut by a crash (or not ours): dropped.
            }
        }
        File.WriteAllLines(path + ".tmp", kept);
        File.Move(path + ".tmp", path, overwrite: true);
        return kept.Count;
    }

    static bool IsTemporary(string folder) => Path.GetFileName(folder).Contains(".tmp-", StringComparison.Ordinal)
                                             || Path.GetFileName(folder).Contains(AtomicDirectory.ReplacedSuffix, StringComparison.Ordinal);
}
