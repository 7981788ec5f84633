using System.Globalization;
using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// A MindSpeed-MM-layout checkpoint: <c>latest_checkpointed_iteration.txt</c> ("release" or an iteration), <c>release/</c>
/// or <c>iter_XXXXXXX/</c> with <c>mp_rank_XX[_YYY]/model_optim_rng.pt</c> as MindSpeed-MM and Megatron write it (a
/// converted release or a training checkpoint with args, optimizer and RNG state), or OmniTune's
/// <c>model_optim_rng.safetensors</c> (the layout in each file's metadata); MindSpeed key names, VPP chunks as
/// <c>model{v}</c>. The layout of a <c>.pt</c> checkpoint, which records none, is read from its rank folders and tensors
/// (<see cref="MmLayoutInference"/>). config.json comes from the iteration folder, the root, or the Hugging Face folder
/// the caller names (a Megatron training checkpoint has none). Read as Hugging Face tensors: parts of each tensor are
/// gathered across TP ranks, merged, and split back into q/k/v or gate/up.
/// </summary>
public sealed class MmCheckpoint : IThinkerTensorSource
{
    /// <summary>OmniTune's safetensors rank file name (<c>convert --format safetensors</c>, training checkpoints).</summary>
    public const string FileName = "model_optim_rng.safetensors";

    /// <summary>MindSpeed-MM's rank file name.</summary>
    public const string PtFileName = "model_optim_rng.pt";

    /// <summary>Tracker file.</summary>
    public const string Tracker = "latest_checkpointed_iteration.txt";

    readonly Dictionary<string, MmRankFile> files = new(StringComparer.Ordinal);
    readonly Dictionary<string, (MmTensor Tensor, int Index)> bySource;
    readonly Dictionary<string, long[]> sourceShapes;
    readonly PipelinePlan plan;
    readonly string folder;
    (string Name, Tensor Merged)? cached;

    /// <summary>
    /// Opens the checkpoint at <paramref name="root"/>: the folder its tracker names, or iteration
    /// <paramref name="iteration"/>. config.json comes from the iteration folder, the root, or
    /// <paramref name="configFallback"/> (the Hugging Face folder the checkpoint came from).
    /// </summary>
    public MmCheckpoint(string root, int? iteration = null, string? configFallback = null)
    {
        folder = IterationFolder(root, iteration);
        Iteration = Path.GetFileName(folder) == "release" ? null : int.Parse(Path.GetFileName(folder)[5..], CultureInfo.InvariantCulture);
        string? configFolder = new[] { folder, root, configFallback }.FirstOrDefault(f => f is not null && File.Exists(Path.Combine(f, "config.json")));
        if (configFolder is null)
        {
            throw new FileNotFoundException($"{root}: no config.json in {folder} or the root" + (configFallback is null
                ? " (a MindSpeed-MM training checkpoint has none): pass the Hugging Face folder it came from (--hf-dir, or model_name_or_path in data.json)"
                : $" nor in {configFallback}"));
        }
        (Config, _) = Qwen25OmniConfigLoader.Load(configFolder);
        ConfigFolder = configFolder;
        string[] rankFolders = Directory.GetDirectories(folder, "mp_rank_*").Where(d => MmRankFile.Find(d) is not null).Order(StringComparer.Ordinal).ToArray();
        if (rankFolders.Length == 0) throw new FileNotFoundException($"{folder}: no mp_rank_*/{PtFileName} (or {FileName}) rank files");
        MmRankFile probe = Open(rankFolders[0]);
        if (probe.Metadata.TryGetValue("parallel_layout", out string? layoutJson))
        {
            Layout = ParallelLayout.FromJson(layoutJson);
            TiedLmHead = probe.Metadata.TryGetValue("tied_lm_head", out string? tied) && tied == "true";
        }
        else
        {
            (Layout, TiedLmHead) = MmLayoutInference.Infer(Config.Thinker, rankFolders.ToDictionary(d => Path.GetFileName(d)!, Open, StringComparer.Ordinal), folder);
        }
        Format = probe.Format;
        plan = new PipelinePlan(Layout);
        var map = MmTensorMap.For(Config.Thinker, TiedLmHead);
        bySource = map.SelectMany(t => t.Sources.Select((s, i) => (s, t, i))).ToDictionary(x => x.s, x => (x.t, x.i), StringComparer.Ordinal);
        sourceShapes = Models.Qwen25Omni.Thinker.ThinkerWeightLayout.For(Config.Thinker, TiedLmHead).ToDictionary(w => w.Key, w => w.Shape, StringComparer.Ordinal);
    }

    /// <summary>
    /// The folder a checkpoint root's tracker names (<c>release</c> or <c>iter_XXXXXXX</c>), or that of
    /// <paramref name="iteration"/>; errors say what was expected.
    /// </summary>
    public static string IterationFolder(string root, int? iteration = null)
    {
        if (iteration is int chosen)
        {
            string chosenFolder = IterationFolderName(root, chosen);
            return Directory.Exists(chosenFolder) ? chosenFolder : throw new DirectoryNotFoundException($"{root}: no checkpoint for iteration {chosen} ({chosenFolder})");
        }
        string tracker = Path.Combine(root, Tracker);
        if (!File.Exists(tracker))
        {
            throw new FileNotFoundException($"{root}: not a MindSpeed-MM checkpoint: expected {Tracker} naming \"release\" or an iteration, next to release/ or " +
                                            "iter_XXXXXXX/ folders of mp_rank_* rank folders", tracker);
        }
        string text = File.ReadAllText(tracker).Trim();
        string found = text == "release" ? Path.Combine(root, "release")
            : int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int it) ? IterationFolderName(root, it)
            : throw new InvalidDataException($"{tracker}: '{text}' is neither \"release\" nor an iteration number");
        return Directory.Exists(found) ? found : throw new DirectoryNotFoundException($"{tracker} names '{text}' but {found} does not exist");
    }

    /// <summary>Megatron's folder of iteration <paramref name="iteration"/>: <c>root/iter_XXXXXXX</c>.</summary>
    public static string IterationFolderName(string root, int iteration) => Path.Combine(root, $"iter_{iteration:D7}");

    /// <summary>The iteration of a training checkpoint; null for a release.</summary>
    public int? Iteration { get; }

    /// <summary>Format of the rank files.</summary>
    public MmFileFormat Format { get; }

    /// <summary>The iteration folder read.</summary>
    public string Folder => folder;

    /// <summary>The layout the checkpoint was written with.</summary>
    public ParallelLayout Layout { get; }

    /// <inheritdoc/>
    public Qwen25OmniConfig Config { get; }

    /// <inheritdoc/>
    public string ConfigFolder { get; }

    /// <inheritdoc/>
    public bool TiedLmHead { get; }

    /// <summary>Whether <paramref name="root"/> looks like a checkpoint this class reads.</summary>
    public static bool IsMmCheckpoint(string root)
    {
        try
        {
            string dir = IterationFolder(root);
            return Directory.GetDirectories(dir, "mp_rank_*").Any(d => MmRankFile.Find(d) is not null);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            return false;
        }
    }

    /// <summary>Whether a rank folder holds a rank file (either format).</summary>
    public static bool HasRankFile(string rankFolder) => MmRankFile.Find(rankFolder) is not null;

    MmRankFile Open(string rankFolder)
    {
        if (!files.TryGetValue(rankFolder, out MmRankFile? file))
        {
            string path = MmRankFile.Find(rankFolder) ?? throw new FileNotFoundException($"{rankFolder}: missing rank file ({PtFileName} or {FileName})");
            file = MmRankFile.Open(path);
            files[rankFolder] = file;
        }
        return file;
    }

    MmRankFile File_(int tp, int stage)
    {
        string dir = Path.Combine(folder, plan.Folder(tp, stage));
        if (!Directory.Exists(dir)) throw new FileNotFoundException($"{dir}: missing rank folder for the layout {Layout.ToJson()}");
        return Open(dir);
    }

    /// <inheritdoc/>
    public (ScalarType DType, long[] Shape) Info(string key)
    {
        var (t, _) = Lookup(key);
        int slot = plan.HomeSlot(t);
        var info = File_(0, slot % Layout.PipelineSize).Info(plan.ChunkPrefix(slot / Layout.PipelineSize) + t.LocalName(plan.LocalIndex(t, slot)!.Value));
        return (info.DType, sourceShapes[key]);
    }

    (MmTensor Tensor, int Index) Lookup(string key) =>
        bySource.TryGetValue(key, out var found) ? found : throw new KeyNotFoundException($"{ConfigFolder}: {key} is not a thinker tensor");

    /// <inheritdoc/>
    public Tensor Read(string key)
    {
        var (t, index) = Lookup(key);
        if (cached is not { } c || c.Name != t.Name)
        {
            cached?.Merged.Dispose();
            int slot = plan.HomeSlot(t);
            string name = plan.ChunkPrefix(slot / Layout.PipelineSize) + t.LocalName(plan.LocalIndex(t, slot)!.Value);
            int parts = plan.TpOf(t.Tower);
            long[] expected = TensorOps.PartShape(t, t.Sources.Select(s => sourceShapes[s]).ToArray(), parts);
            var pieces = Enumerable.Range(0, parts).Select(r =>
            {
                MmRankFile file = File_(r, slot % Layout.PipelineSize);
                long[] stored = file.Info(name).Shape;
                if (!stored.SequenceEqual(expected))
                    throw new InvalidDataException($"{file.Path}: tensor '{name}' has shape [{string.Join(", ", stored)}], expected [{string.Join(", ", expected)}] " +
                                                   $"(tensor-parallel part {r} of {parts} for the config in {ConfigFolder})");
                return file.Read(name);
            }).ToList();
            Tensor merged = TensorOps.MergeParts(pieces, t.Split).contiguous();
            foreach (Tensor p in pieces) p.Dispose();
            cached = (t.Name, merged.DetachFromDisposeScope());
        }
        long[][] shapes = t.Sources.Select(s => sourceShapes[s]).ToArray();
        return TensorOps.Unmerge(t, cached.Value.Merged, index, shapes).contiguous();
    }

    /// <summary>
    /// A tensor-parallel part: when the checkpoint's tower is cut into <paramref name="parts"/> along the same dimension, only
    /// rank <paramref name="part"/>'s file is read and its tensor split back into q/k/v or gate/up over that rank's query
    /// groups (no part of another rank is read, nothing is merged); otherwise the whole tensor is assembled and cut.
    /// </summary>
    public Tensor ReadPart(string key, int dim, int part, int parts)
    {
        var (t, index) = Lookup(key);
        int stored = plan.TpOf(t.Tower);
        int cutDim = t.Split == SplitKind.Column ? 1 : 0;
        if (stored != parts || parts == 1 || t.Split == SplitKind.Replicated || dim != cutDim)
        {
            using Tensor whole = Read(key);
            long size = whole.shape[dim] / parts;
            return whole.narrow(dim, part * size, size).contiguous();
        }
        int slot = plan.HomeSlot(t);
        string name = plan.ChunkPrefix(slot / Layout.PipelineSize) + t.LocalName(plan.LocalIndex(t, slot)!.Value);
        long[][] local = t.Sources.Select(s =>
        {
            long[] shape = (long[])sourceShapes[s].Clone();
            shape[dim] /= parts;
            return shape;
        }).ToArray();
        MmTensor held = t with { Groups = t.Groups / parts };   // this rank's query groups / heads
        MmRankFile file = File_(part, slot % Layout.PipelineSize);
        long[] expected = TensorOps.PartShape(held, local, 1);
        long[] found = file.Info(name).Shape;
        if (!found.SequenceEqual(expected))
            throw new InvalidDataException($"{file.Path}: tensor '{name}' has shape [{string.Join(", ", found)}], expected [{string.Join(", ", expected)}] " +
                                           $"(tensor-parallel part {part} of {parts} for the config in {ConfigFolder})");
        using Tensor merged = file.Read(name);
        return TensorOps.Unmerge(held, merged, index, local).contiguous();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        cached?.Merged.Dispose();
        foreach (MmRankFile f in files.Values) f.Dispose();
    }
}
