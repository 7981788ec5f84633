using System.Globalization;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// A MindSpeed-MM-layout checkpoint written by OmniTune: <c>latest_checkpointed_iteration.txt</c> ("release" or an
/// iteration), <c>release/</c> or <c>iter_XXXXXXX/</c> with <c>mp_rank_XX[_YYY]/model_optim_rng.safetensors</c> (MindSpeed
/// key names; VPP chunks prefixed <c>model{v}.</c>; the layout in each file's metadata), and config.json at the root.
/// Read as Hugging Face tensors: parts of each tensor are gathered across TP ranks, merged, and split back into q/k/v or
/// gate/up.
/// </summary>
public sealed class MmCheckpoint : IThinkerTensorSource
{
    /// <summary>Weights file inside each rank folder.</summary>
    public const string FileName = "model_optim_rng.safetensors";

    /// <summary>Tracker file.</summary>
    public const string Tracker = "latest_checkpointed_iteration.txt";

    readonly Dictionary<string, SafetensorsFile> files = new(StringComparer.Ordinal);
    readonly Dictionary<string, (MmTensor Tensor, int Index)> bySource;
    readonly Dictionary<string, long[]> sourceShapes;
    readonly PipelinePlan plan;
    readonly string folder;
    (string Name, Tensor Merged)? cached;

    /// <summary>
    /// Opens the checkpoint at <paramref name="root"/>: the folder its tracker names, or iteration
    /// <paramref name="iteration"/>. config.json comes from the iteration folder (a training checkpoint) or the root.
    /// </summary>
    public MmCheckpoint(string root, int? iteration = null)
    {
        string tracker = Path.Combine(root, Tracker);
        if (iteration is int chosen)
        {
            folder = Path.Combine(root, $"iter_{chosen:D7}");
            if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{root}: no checkpoint for iteration {chosen} ({folder})");
        }
        else
        {
            if (!File.Exists(tracker)) throw new FileNotFoundException($"{root}: not a MindSpeed-MM checkpoint ({Tracker} missing)", tracker);
            string text = File.ReadAllText(tracker).Trim();
            folder = text == "release" ? Path.Combine(root, "release")
                : int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int it) ? Path.Combine(root, $"iter_{it:D7}")
                : throw new InvalidDataException($"{tracker}: '{text}' is neither release nor an iteration");
        }
        string configFolder = File.Exists(Path.Combine(folder, "config.json")) ? folder : root;
        (Config, _) = Qwen25OmniConfigLoader.Load(configFolder);
        ConfigFolder = configFolder;
        string first = Directory.Exists(folder) ? Directory.GetDirectories(folder, "mp_rank_*").Order(StringComparer.Ordinal).FirstOrDefault() ?? "" : "";
        string firstFile = Path.Combine(first, FileName);
        if (!File.Exists(firstFile)) throw new FileNotFoundException($"{folder}: no mp_rank_*/{FileName}", firstFile);
        var probe = SafetensorsFile.Open(firstFile);
        files[first] = probe;
        if (!probe.Metadata.TryGetValue("parallel_layout", out string? layoutJson))
            throw new InvalidDataException($"{firstFile}: no parallel_layout metadata (not written by OmniTune's converter)");
        Layout = ParallelLayout.FromJson(layoutJson);
        TiedLmHead = probe.Metadata.TryGetValue("tied_lm_head", out string? tied) && tied == "true";
        plan = new PipelinePlan(Layout);
        var map = MmTensorMap.For(Config.Thinker, TiedLmHead);
        bySource = map.SelectMany(t => t.Sources.Select((s, i) => (s, t, i))).ToDictionary(x => x.s, x => (x.t, x.i), StringComparer.Ordinal);
        sourceShapes = Models.Qwen25Omni.Thinker.ThinkerWeightLayout.For(Config.Thinker, TiedLmHead).ToDictionary(w => w.Key, w => w.Shape, StringComparer.Ordinal);
    }

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
        string tracker = Path.Combine(root, Tracker);
        if (!File.Exists(tracker)) return false;
        string text = File.ReadAllText(tracker).Trim();
        string dir = text == "release" ? Path.Combine(root, "release") : Path.Combine(root, $"iter_{(int.TryParse(text, out int i) ? i : -1):D7}");
        return Directory.Exists(dir) && Directory.GetDirectories(dir, "mp_rank_*").Any(d => File.Exists(Path.Combine(d, FileName)));
    }

    SafetensorsFile File_(int tp, int stage)
    {
        string dir = Path.Combine(folder, plan.Folder(tp, stage));
        if (!files.TryGetValue(dir, out SafetensorsFile? file))
        {
            string path = Path.Combine(dir, FileName);
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing rank file for the layout {Layout.ToJson()}", path);
            file = SafetensorsFile.Open(path);
            files[dir] = file;
        }
        return file;
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
                SafetensorsFile file = File_(r, slot % Layout.PipelineSize);
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
        SafetensorsFile file = File_(part, slot % Layout.PipelineSize);
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
        foreach (SafetensorsFile f in files.Values) f.Dispose();
    }
}
