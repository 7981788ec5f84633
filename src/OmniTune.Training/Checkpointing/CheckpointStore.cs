using System.Globalization;
using System.Text.Json;
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
    public const string Tracker = "latest_checkpointed_iteration.txt";

    /// <summary>Model folder inside an iteration folder.</summary>
    public const string ModelFolder = "mp_rank_00";

    /// <summary>Optimizer state file.</summary>
    public const string OptimizerFile = "optimizer.bin";

    /// <summary>Trainer state file.</summary>
    public const string StateFile = "trainer_state.json";

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    static readonly string[] CopiedFiles =
        ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "preprocessor_config.json", "chat_template.json", "generation_config.json"];

    /// <summary>Folder of iteration <paramref name="iteration"/>.</summary>
    public static string IterationFolder(string root, int iteration) => Path.Combine(root, $"iter_{iteration:D7}");

    /// <summary>Whether <paramref name="path"/> is a checkpoint root written by the trainer.</summary>
    public static bool IsCheckpointRoot(string path) => File.Exists(Path.Combine(path, Tracker));

    /// <summary>The iteration the tracker names, or <paramref name="chosen"/> when given (which must exist).</summary>
    public static int ResolveIteration(string root, int? chosen)
    {
        if (chosen is int c)
        {
            if (!Directory.Exists(IterationFolder(root, c))) throw new DirectoryNotFoundException($"{root}: no checkpoint for iteration {c} ({IterationFolder(root, c)})");
            return c;
        }
        string text = File.ReadAllText(Path.Combine(root, Tracker)).Trim();
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int iteration))
            throw new InvalidDataException($"{Path.Combine(root, Tracker)}: '{text}' is not an iteration number");
        if (!Directory.Exists(IterationFolder(root, iteration))) throw new DirectoryNotFoundException($"{root}: the tracker names iteration {iteration} but {IterationFolder(root, iteration)} is missing");
        return iteration;
    }

    /// <summary>Writes a checkpoint atomically; <paramref name="writeOptimizer"/> (when given) writes optimizer.bin.</summary>
    public static string Save(string root, int iteration, Qwen25OmniThinkerForConditionalGeneration model, string baseModelFolder,
        TrainerState state, Action<string>? writeOptimizer, Action<string>? writeAdapters = null, bool writeWeights = true)
    {
        Directory.CreateDirectory(root);
        string final = IterationFolder(root, iteration);
        string temporary = $"{final}.tmp-{Guid.NewGuid():N}";
        try
        {
            string modelFolder = Path.Combine(temporary, ModelFolder);
            Directory.CreateDirectory(modelFolder);
            File.Copy(Path.Combine(baseModelFolder, "config.json"), Path.Combine(modelFolder, "config.json"));
            foreach (string name in CopiedFiles)
            {
                string source = Path.Combine(baseModelFolder, name);
                if (File.Exists(source)) File.Copy(source, Path.Combine(modelFolder, name));
            }
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
            File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state, Indented));
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(temporary, final);
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
        string tracker = Path.Combine(root, Tracker);
        File.WriteAllText(tracker + ".tmp", iteration.ToString(CultureInfo.InvariantCulture));
        File.Move(tracker + ".tmp", tracker, overwrite: true);
        return final;
    }

    /// <summary>Reads trainer_state.json of an iteration folder.</summary>
    public static TrainerState ReadState(string iterationFolder)
    {
        string path = Path.Combine(iterationFolder, StateFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: trainer state missing; the checkpoint is incomplete", path);
        return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty");
    }
}
