using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// hf → mm, mm → hf and mm → mm (reshard) conversions. Every operation streams one tensor at a time (memory bounded by
/// the largest tensor, not the model), writes into a temporary folder renamed at the end (a failure leaves no partial
/// output), and validates the layout before writing anything. Progress reports bytes written.
/// </summary>
public static class CheckpointConverter
{
    /// <summary>Files of a Hugging Face folder copied along with converted weights.</summary>
    static readonly string[] SideFiles =
        ["config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json",
         "special_tokens_map.json", "preprocessor_config.json", "chat_template.json", "chat_template.jinja", "spk_dict.pt"];

    /// <summary>
    /// Writes <paramref name="source"/> in MindSpeed-MM layout <paramref name="layout"/> under <paramref name="mmDir"/> (as
    /// "release"), as MindSpeed-MM's <c>model_optim_rng.pt</c> files or OmniTune's safetensors ones.
    /// </summary>
    public static void ToMm(IThinkerTensorSource source, ParallelLayout layout, string mmDir, IProgress<long>? progress = null, MmFileFormat format = MmFileFormat.PyTorch)
    {
        var config = source.Config.Thinker;
        layout.Validate(config);
        var plan = new PipelinePlan(layout);
        var map = MmTensorMap.For(config, source.TiedLmHead);
        WithTemporaryFolder(mmDir, temporary =>
        {
            CopySideFiles(source.ConfigFolder, temporary);
            string release = Path.Combine(temporary, "release");
            long written = 0;
            for (int tp = 0; tp < layout.MaxTp; tp++)
            {
                for (int stage = 0; stage < layout.PipelineSize; stage++)
                {
                    written += WriteRank(source, layout, tp, stage, release, format: format);
                    progress?.Report(written);
                }
            }
            File.WriteAllText(Path.Combine(temporary, MmCheckpoint.Tracker), "release");
        });
    }

    /// <summary>
    /// Writes the rank folder of (<paramref name="tp"/>, <paramref name="stage"/>) of <paramref name="layout"/> under
    /// <paramref name="iterationFolder"/> (<c>mp_rank_XX[_YYY]/model_optim_rng.pt</c>, MindSpeed-MM's dict
    /// <c>{'model' | 'model0', 'model1', …: state dict, 'checkpoint_version': 3.0}</c>, or <c>model_optim_rng.safetensors</c>
    /// with the VPP chunks as key prefixes and the layout in its metadata): only the tensors of that
    /// stage's slots are read from <paramref name="source"/>, so a pipeline stage writes its own part. With
    /// <paramref name="sourceIsPart"/> the source already holds tensor-parallel rank <paramref name="tp"/>'s parts (a
    /// tensor-parallel model's own parameters, in Hugging Face layout): they are merged (q/k/v interleaved over this rank's
    /// query groups, gate/up concatenated) but not cut again. Returns the bytes.
    /// </summary>
    public static long WriteRank(IThinkerTensorSource source, ParallelLayout layout, int tp, int stage, string iterationFolder, bool sourceIsPart = false,
        MmFileFormat format = MmFileFormat.Safetensors)
    {
        var plan = new PipelinePlan(layout);
        var map = MmTensorMap.For(source.Config.Thinker, source.TiedLmHead);
        var tensors = new List<TensorToWrite>();
        for (int chunk = 0; chunk < layout.VirtualSize; chunk++)
        {
            int slot = chunk * layout.PipelineSize + stage;
            foreach (MmTensor t in map)
            {
                if (plan.LocalIndex(t, slot) is not int local) continue;
                int parts = plan.TpOf(t.Tower), part = tp % parts;
                if (sourceIsPart)
                {
                    MmTensor held = t with { Groups = t.Groups / parts };   // this rank's query groups / heads
                    var (heldType, heldShape) = PartShape(held, source, 1);
                    tensors.Add(new TensorToWrite(plan.ChunkPrefix(chunk) + t.LocalName(local), heldType, heldShape,
                        () => TensorOps.Merge(held, t.Sources.Select(source.Read).ToArray()).contiguous()));
                    continue;
                }
                var (dtype, shape) = PartShape(t, source, parts);
                tensors.Add(new TensorToWrite(plan.ChunkPrefix(chunk) + t.LocalName(local), dtype, shape, () =>
                {
                    Tensor[] sources = t.Sources.Select(source.Read).ToArray();
                    return TensorOps.SplitPart(TensorOps.Merge(t, sources), t.Split, part, parts).contiguous();
                }));
            }
        }
        string rankFolder = Path.Combine(iterationFolder, plan.Folder(tp, stage));
        Directory.CreateDirectory(rankFolder);
        if (format == MmFileFormat.PyTorch)
        {
            var state = new Dictionary<string, object?>(StringComparer.Ordinal);
            for (int chunk = 0; chunk < layout.VirtualSize; chunk++)
            {
                string prefix = plan.ChunkPrefix(chunk);
                state[layout.VirtualSize == 1 ? "model" : $"model{chunk}"] = tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal))
                    .ToDictionary(t => t.Name[prefix.Length..], t => (object?)(t with { Name = t.Name[prefix.Length..] }), StringComparer.Ordinal);
            }
            state["checkpoint_version"] = 3.0;
            return Core.PyTorch.PyTorchFileWriter.Write(Path.Combine(rankFolder, MmCheckpoint.PtFileName), state);
        }
        SafetensorsWriter.WriteFile(Path.Combine(rankFolder, MmCheckpoint.FileName), tensors, new Dictionary<string, string>
        {
            ["format"] = "omnitune-mm",
            ["parallel_layout"] = layout.ToJson(),
            ["tp_rank"] = tp.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["pp_stage"] = stage.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["tied_lm_head"] = source.TiedLmHead ? "true" : "false",
        });
        return tensors.Sum(t => Core.Tensors.TensorMemory.ByteCount(t.DType, t.Shape));
    }

    /// <summary>
    /// Copies the model's config (config.json, generation_config.json) of <paramref name="configFolder"/> and the tokenizer and
    /// processor files of <paramref name="processorFolder"/> (default: the same folder; a file missing there is taken from
    /// <paramref name="configFolder"/>) into <paramref name="target"/>, leaving files already there.
    /// </summary>
    public static void CopySideFiles(string configFolder, string target, string? processorFolder = null)
    {
        string[] modelFiles = ["config.json", "generation_config.json"];
        foreach (string name in SideFiles)
        {
            string file = Path.Combine(processorFolder is null || modelFiles.Contains(name) ? configFolder : processorFolder, name);
            if (!File.Exists(file)) file = Path.Combine(configFolder, name);
            if (File.Exists(file) && !File.Exists(Path.Combine(target, name))) File.Copy(file, Path.Combine(target, name));
        }
    }

    /// <summary>
    /// Writes <paramref name="source"/> as a Hugging Face folder. With <paramref name="originalHfDir"/> the folder is laid out
    /// like the original: its key names (thinker prefix or none), its shard files and index, each shard's metadata, its
    /// talker/token2wav tensors, and every other file of it (config, generation config, tokenizer, chat template,
    /// processor files…). Without it, thinker tensors get the <c>thinker.</c> prefix in shards of at most
    /// <paramref name="maxShardBytes"/> with an index, and the config and tokenizer files of the source are copied.
    /// </summary>
    public static void ToHf(IThinkerTensorSource source, string saveDir, string? originalHfDir, long maxShardBytes = 5L << 30, IProgress<long>? progress = null)
    {
        var config = source.Config.Thinker;
        HfTensorSource? original = originalHfDir is null ? null : new HfTensorSource(originalHfDir);
        try
        {
            if (original is not null && Qwen25OmniConfigLoader.ToJson(original.Config) != Qwen25OmniConfigLoader.ToJson(source.Config))
                throw new ArgumentException($"{originalHfDir}: its config.json differs from the checkpoint's; pass the Hugging Face folder the checkpoint came from");
            WithTemporaryFolder(saveDir, temporary =>
            {
                long written = 0;
                var tensors = ThinkerWeightLayout.For(config, source.TiedLmHead).Select(w =>
                {
                    var (dtype, _) = source.Info(w.Key);
                    return new TensorToWrite(original?.FullName(w.Key) ?? ThinkerWeightLayout.Prefix + w.Key, dtype, w.Shape, () =>
                    {
                        Tensor t = source.Read(w.Key);
                        written += Core.Tensors.TensorMemory.ByteCount(dtype, w.Shape);
                        progress?.Report(written);
                        return t;
                    });
                }).ToList();
                if (original is null)
                {
                    SafetensorsWriter.WriteSharded(temporary, tensors, maxShardBytes);
                    CopySideFiles(source.ConfigFolder, temporary);
                    return;
                }
                foreach (string key in original.OtherKeys)
                {
                    var info = original.InfoRaw(key);
                    tensors.Add(new TensorToWrite(key, info.DType, info.Shape, () => original.ReadRaw(key)));
                }
                SafetensorsCheckpoint stored = original.Stored;
                SafetensorsWriter.WriteLike(temporary, tensors, stored.FileNameOf, stored.MetadataOf, stored.Sharded);
                foreach (string file in Directory.GetFiles(originalHfDir!))
                {
                    string name = Path.GetFileName(file);
                    if (name.EndsWith(".safetensors", StringComparison.Ordinal) || name == SafetensorsCheckpoint.IndexFileName) continue;
                    File.Copy(file, Path.Combine(temporary, name));
                }
            });
        }
        finally
        {
            original?.Dispose();
        }
    }

    /// <summary>(dtype, shape) of one TP part of an mm tensor, from its sources' shapes.</summary>
    static (ScalarType DType, long[] Shape) PartShape(MmTensor t, IThinkerTensorSource source, int parts)
    {
        var infos = t.Sources.Select(source.Info).ToArray();
        return (infos[0].DType, TensorOps.PartShape(t, infos.Select(i => i.Shape).ToArray(), parts));
    }

    /// <summary>Runs <paramref name="write"/> into a sibling temporary folder and renames it to <paramref name="target"/>.</summary>
    static void WithTemporaryFolder(string target, Action<string> write)
    {
        string full = Path.GetFullPath(target);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{target} already exists and is not empty; choose a new folder");
        string temporary = $"{full.TrimEnd(Path.DirectorySeparatorChar)}.tmp-{Guid.NewGuid():N}";
        Directory.CreateDirectory(temporary);
        try
        {
            write(temporary);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(temporary, full);
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
    }
}
