using OmniTune.Checkpoints.Conversion;
using OmniTune.Training.Lora;

namespace OmniTune.Training.Checkpointing;

/// <summary>What kind of folder a user passed.</summary>
public enum CheckpointKind
{
    /// <summary>A Hugging Face folder (config.json and safetensors).</summary>
    HuggingFace,

    /// <summary>A MindSpeed-MM-layout folder ("release" or an iteration; e.g. <c>convert hf-to-mm</c> output).</summary>
    MindSpeed,

    /// <summary>A training checkpoint of OmniTune's trainer (an iteration with trainer_state.json), any pipeline layout.</summary>
    Training,

    /// <summary>A LoRA adapter folder (adapter_config.json, adapter_model.safetensors).</summary>
    Adapters,
}

/// <summary>
/// A folder resolved: its kind, the folder with config.json and the tokenizer files, the weights as one tensor source
/// (opened on demand), LoRA adapters when it holds some, and for training checkpoints the iteration folder.
/// </summary>
/// <param name="Kind">What was found.</param>
/// <param name="Path">What the user passed.</param>
/// <param name="ConfigFolder">config.json, tokenizer and preprocessor files.</param>
/// <param name="IterationFolder">The iteration of a training checkpoint (for a MindSpeed-MM folder, its release or iteration folder).</param>
/// <param name="AdapterFolder">LoRA adapters (PEFT files), when present.</param>
/// <param name="OpenWeights">The full weights, or null when the folder holds adapters only.</param>
public sealed record LocatedCheckpoint(CheckpointKind Kind, string Path, string ConfigFolder, string? IterationFolder, string? AdapterFolder,
    Func<IThinkerTensorSource>? OpenWeights)
{
    /// <summary>The weights, or an error saying the folder holds LoRA adapters only.</summary>
    public IThinkerTensorSource Weights() => OpenWeights?.Invoke()
        ?? throw new ArgumentException($"{Path} holds LoRA adapters only ({AdapterFolder}): pass the base model as the weights and this folder as the adapters");
}

/// <summary>
/// The one place that turns any folder a user may pass to <c>finetune --load</c>, <c>generate --model / --adapter</c> or
/// <c>convert</c> into weights: a Hugging Face folder, a MindSpeed-MM release or iteration (any TP/PP/VPP layout), a
/// training checkpoint root (PP = 1 ones hold a Hugging Face folder, pipeline ones MindSpeed rank folders) at the
/// tracked or a chosen iteration, or a LoRA adapter folder. Weights are read straight from where they are.
/// </summary>
public static class CheckpointLocator
{
    /// <summary>
    /// Resolves <paramref name="path"/> (at iteration <paramref name="iteration"/> of a checkpoint root, when given).
    /// <paramref name="configFallback"/> is the Hugging Face folder whose config.json serves a MindSpeed-MM checkpoint
    /// that has none (Megatron's training checkpoints).
    /// </summary>
    public static LocatedCheckpoint Locate(string path, int? iteration = null, string? configFallback = null)
    {
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"{path}: no such folder");
        if (CheckpointStore.IsTrainingCheckpoint(path, iteration))
        {
            int it = CheckpointStore.ResolveIteration(path, iteration);
            string folder = CheckpointStore.IterationFolder(path, it);
            if (CheckpointStore.IsStageCheckpoint(folder))
            {
                return CheckpointStore.HasStageAdapters(folder)
                    ? new(CheckpointKind.Training, path, folder, folder, folder, null)   // LoRA: adapters per stage folder
                    : new(CheckpointKind.Training, path, folder, folder, null, () => new MmCheckpoint(path, it));
            }
            string model = System.IO.Path.Combine(folder, CheckpointStore.ModelFolder);
            bool weights = File.Exists(System.IO.Path.Combine(model, OmniTune.Core.Safetensors.SafetensorsCheckpoint.SingleFileName));
            bool adapters = File.Exists(System.IO.Path.Combine(model, LoraAdapters.WeightsFile));
            if (!weights && !adapters) throw new FileNotFoundException($"{model}: the checkpoint holds neither weights (model.safetensors) nor LoRA adapters");
            return new(CheckpointKind.Training, path, model, folder, adapters ? model : null, weights ? () => new HfTensorSource(model) : null);
        }
        if (MmCheckpoint.IsMmCheckpoint(path) || (iteration is int some && Directory.Exists(MmCheckpoint.IterationFolderName(path, some))))
        {
            string config, folder;
            using (var probe = new MmCheckpoint(path, iteration, configFallback))
            {
                config = probe.ConfigFolder;
                folder = probe.Folder;
            }
            return new(CheckpointKind.MindSpeed, path, config, folder, null, () => new MmCheckpoint(path, iteration, configFallback));
        }
        if (iteration is int chosen) throw new DirectoryNotFoundException($"{path}: no training checkpoint for iteration {chosen}");
        if (File.Exists(System.IO.Path.Combine(path, LoraAdapters.ConfigFile)))
            return new(CheckpointKind.Adapters, path, path, null, path, null);
        if (File.Exists(System.IO.Path.Combine(path, "config.json")))
            return new(CheckpointKind.HuggingFace, path, path, null, null, () => new HfTensorSource(path));
        if (File.Exists(System.IO.Path.Combine(path, CheckpointStore.Tracker)))
        {
            // A tracker without what it names: say exactly what is missing.
            string folder = MmCheckpoint.IterationFolder(path);
            throw new FileNotFoundException($"{folder}: no mp_rank_*/{MmCheckpoint.PtFileName} (or {MmCheckpoint.FileName}) rank files");
        }
        throw new DirectoryNotFoundException($"{path}: not a checkpoint: expected a Hugging Face folder (config.json), a MindSpeed-MM folder or a training " +
                                             $"checkpoint root ({CheckpointStore.Tracker} naming release or an iteration), or LoRA adapters ({LoraAdapters.ConfigFile})");
    }
}
