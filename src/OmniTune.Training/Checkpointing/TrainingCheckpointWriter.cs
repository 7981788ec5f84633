using OmniTune.Checkpoints.Conversion;
using OmniTune.Distributed;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using OmniTune.Training.Lora;
using OmniTune.Training.Optimization;
using OmniTune.Training.Pipeline;
using TorchSharp.Modules;

namespace OmniTune.Training.Checkpointing;

/// <summary>What one checkpoint holds; <see cref="State"/> is read when the trainer state is written.</summary>
/// <param name="Model">This process's model (all of it, or one pipeline stage's parts).</param>
/// <param name="Optimizer">The AdamW optimizer (state written unless --no-save-optim).</param>
/// <param name="Adapters">LoRA adapters, written instead of the base weights.</param>
/// <param name="Masters">fp32 master weights of a bf16 model.</param>
/// <param name="Distributed">The sharded optimizer (ZeRO-1), whose state every data-parallel rank helps gather.</param>
/// <param name="State">The trainer state at this iteration.</param>
public sealed record CheckpointContents(Qwen25OmniThinkerForConditionalGeneration Model, OptimizerHelper Optimizer, LoraAdapters? Adapters, MasterWeights? Masters,
    DistributedAdamW? Distributed, Func<TrainerState> State);

/// <summary>
/// Writes the trainer's checkpoints under --save, for one process or data-parallel replicas (rank 0 writes a Hugging
/// Face folder with the optimizer state beside it) and for pipeline stages (MindSpeed-MM's rank folders, every stage
/// writing its own into one temporary iteration folder committed once all have written), and says where a resumed
/// run finds this rank's optimizer state.
/// </summary>
public sealed class TrainingCheckpointWriter(TrainingArguments args, IProcessGroup world, IProcessGroup dataParallel, IProcessGroup pipelineGroup,
    IProcessGroup tensorGroup, PipelineSetup pipeline, Qwen25OmniConfig config, string configFolder, string processorFolder, TextWriter log, IProcessGroup? contextGroup = null)
{
    /// <summary>The rank that writes for its replica: the first of its data-parallel and context-parallel groups (all hold the same weights).</summary>
    bool Writes => dataParallel.Rank == 0 && (contextGroup?.Rank ?? 0) == 0;

    /// <summary>Folder of the merged weights (--lora-save-full-weight) inside an iteration folder of rank folders: a MindSpeed release.</summary>
    public const string MergedFolder = "merged";

    /// <summary>This rank's folder in a MindSpeed-layout checkpoint (mp_rank_0T, or mp_rank_0T_00P with pipeline stages).</summary>
    public string StageFolder => new PipelinePlan(pipeline.Layout).Folder(tensorGroup.Rank, pipelineGroup.Rank);

    /// <summary>Writes iteration <paramref name="iteration"/> (a collective: every rank calls it); returns its folder on the writing ranks.</summary>
    public string? Save(int iteration, CheckpointContents contents) =>
        pipeline.RankFolders || contents.Adapters?.Settings.Flavour == LoraFlavour.MindSpeed ? SaveStages(iteration, contents) : SaveSingle(iteration, contents);

    /// <summary>
    /// Where this rank's optimizer state lies in a checkpoint: beside trainer_state.json, or in this stage's rank folder of a
    /// pipeline-parallel one — which must have this run's layout (the weights load at any layout; optimizer state does not).
    /// </summary>
    public string OptimizerStatePrefix(string iterationFolder)
    {
        if (!CheckpointStore.IsStageCheckpoint(iterationFolder)) return "";
        if (args.NoLoadOptim) return StageFolder + "/";
        string saved = File.ReadAllText(Path.Combine(iterationFolder, CheckpointStore.LayoutFile));
        if (saved != pipeline.Layout.ToJson())
        {
            throw new ArgumentException($"{iterationFolder} was written with the pipeline layout {saved}, this run's is {pipeline.Layout.ToJson()}: " +
                                        "the weights load at any layout, the optimizer state does not. Pass --no-load-optim (and --no-load-rng) to continue with a fresh optimizer, " +
                                        "or keep the checkpoint's --pipeline-model-parallel-size and pipeline_num_layers");
        }
        return StageFolder + "/";
    }

    /// <summary>Written once, by rank 0 (data-parallel replicas are identical); the others wait for it.</summary>
    string? SaveSingle(int iteration, CheckpointContents c)
    {
        // The sharded optimizer state is gathered by every rank into a staging file first (rank 0 writes it).
        string staging = Path.Combine(args.Save!, $".distrib_optim-{iteration}-cp{contextGroup?.Rank ?? 0}.staging");   // context-parallel replicas gather alike
        if (c.Distributed is not null && !args.NoSaveOptim)
        {
            Directory.CreateDirectory(args.Save!);
            c.Distributed.Save(staging);
        }
        string? folder = null;
        if (dataParallel.Rank == 0 && !Writes && File.Exists(staging)) File.Delete(staging);
        if (Writes)
        {
            Action<string>? writeAdapters = c.Adapters is null ? null : modelFolder =>
            {
                c.Adapters.Save(modelFolder);
                if (c.Adapters.Settings.SaveFullWeight) c.Adapters.SaveMerged(c.Model, modelFolder);
            };
            Action<string>? writeOptimizer = args.NoSaveOptim ? null : path =>
            {
                if (c.Distributed is not null)
                {
                    File.Move(staging, Path.Combine(Path.GetDirectoryName(path)!, DistributedAdamW.FileName));
                    return;
                }
                c.Optimizer.save_state_dict(path);
                c.Masters?.Save(Path.Combine(Path.GetDirectoryName(path)!, MasterWeights.FileName));
            };
            folder = CheckpointStore.Save(args.Save!, iteration, c.Model, configFolder, processorFolder, c.State(), writeOptimizer, writeAdapters, writeWeights: c.Adapters is null);
            log.WriteLine($"saved checkpoint {folder}");
        }
        dataParallel.Barrier();
        return folder;
    }

    /// <summary>
    /// A pipeline- or tensor-parallel checkpoint (or one of MindSpeed-named LoRA adapters) in MindSpeed-MM's layout: every
    /// stage's first data-parallel rank writes its rank folder (<c>mp_rank_0T_00P/model_optim_rng.safetensors</c> with
    /// MindSpeed names, or its LoRA adapters — MindSpeed's <c>model_optim_rng.pt</c> for MindSpeed names; its optimizer
    /// state beside it) into one temporary iteration folder; after a barrier rank 0 adds config, tokenizer files, the
    /// layout and trainer_state.json, moves the folder in place and the tracker on. A checkpoint is "latest" only once
    /// every stage has written.
    /// </summary>
    string SaveStages(int iteration, CheckpointContents c)
    {
        string root = args.Save!, final = CheckpointStore.IterationFolder(root, iteration), temporary = final + ".tmp-stages";
        if (world.Rank == 0)
        {
            Directory.CreateDirectory(root);
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            Directory.CreateDirectory(temporary);
        }
        world.Barrier();
        string rankFolder = Path.Combine(temporary, StageFolder);
        Directory.CreateDirectory(rankFolder);
        if (c.Distributed is not null && !args.NoSaveOptim) c.Distributed.Save(Path.Combine(rankFolder, DistributedAdamW.FileName + (Writes || dataParallel.Rank != 0 ? "" : ".replica")));
        if (dataParallel.Rank == 0 && !Writes) File.Delete(Path.Combine(rankFolder, DistributedAdamW.FileName + ".replica"));
        if (Writes)
        {
            if (c.Adapters is not null)
            {
                c.Adapters.SaveRank(rankFolder, pipeline.Layout, pipelineGroup.Rank, iteration);   // LoRA: this rank's adapters only (the base weights are the run's base model)
                if (c.Adapters.Settings.SaveFullWeight)
                {
                    // --lora-save-full-weight: the merged weights as a MindSpeed release beside the adapters (merged/).
                    using var merged = c.Adapters.MergedSource(config, configFolder);
                    CheckpointConverter.WriteRank(merged, pipeline.Layout, tensorGroup.Rank, pipelineGroup.Rank, Path.Combine(temporary, MergedFolder, "release"),
                        sourceIsPart: tensorGroup.Size > 1, format: MmFileFormat.PyTorch);
                }
            }
            else
            {
                using var source = new ModelTensorSource(c.Model, config, configFolder);
                CheckpointConverter.WriteRank(source, pipeline.Layout, tensorGroup.Rank, pipelineGroup.Rank, temporary, sourceIsPart: tensorGroup.Size > 1);
            }
            if (!args.NoSaveOptim && c.Distributed is null)
            {
                c.Optimizer.save_state_dict(Path.Combine(rankFolder, CheckpointStore.OptimizerFile));
                c.Masters?.Save(Path.Combine(rankFolder, MasterWeights.FileName));
            }
        }
        world.Barrier();
        if (world.Rank == 0)
        {
            CheckpointConverter.CopySideFiles(configFolder, temporary, processorFolder);
            File.WriteAllText(Path.Combine(temporary, CheckpointStore.LayoutFile), pipeline.Layout.ToJson());
            if (c.Adapters?.Settings.SaveFullWeight == true)
            {
                CheckpointConverter.CopySideFiles(configFolder, Path.Combine(temporary, MergedFolder), processorFolder);
                File.WriteAllText(Path.Combine(temporary, MergedFolder, MmCheckpoint.Tracker), "release");
            }
            CheckpointStore.Commit(root, iteration, temporary, c.State());
            log.WriteLine($"saved checkpoint {final} ({string.Join(" × ", new[] { tensorGroup.Size > 1 ? $"{tensorGroup.Size} tensor-parallel ranks" : null, pipelineGroup.Size > 1 ? $"{pipelineGroup.Size} stages" : null }.OfType<string>())})");
        }
        world.Barrier();
        return final;
    }
}
