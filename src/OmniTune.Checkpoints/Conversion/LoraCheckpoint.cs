using System.Text.Json;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using static TorchSharp.torch;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// LoRA adapters as saved on disk, read whole into one form: Hugging Face module path (<c>model.layers.0.self_attn.q_proj</c>)
/// → (A, B), full size. Reads PEFT's folder (<c>adapter_model.safetensors</c> with <c>base_model.model.&lt;module&gt;.lora_A.weight</c>
/// keys — or OmniTune's earlier <c>thinker.</c> prefix — and <c>adapter_config.json</c>) and an iteration folder of rank
/// folders (<c>mp_rank_TT[_PPP]</c>, the layout in its <c>parallel_layout.json</c>) holding either PEFT parts or
/// MindSpeed-MM's fused keys (<c>…linear_qkv.lora_A.default.weight</c> in <c>model_optim_rng.pt</c>): tensor-parallel
/// parts are joined, and a fused adapter becomes one per projection (A shared, B's rows split back into q/k/v or
/// gate/up), so every kind merges with the one merge (<see cref="LoraMerge"/>).
/// </summary>
public sealed class LoraCheckpoint : IDisposable
{
    /// <summary>Adapter config file (PEFT's name).</summary>
    public const string ConfigFile = "adapter_config.json";

    /// <summary>PEFT's weights file.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>PEFT's key prefix for a model wrapped by <c>get_peft_model</c>.</summary>
    public const string PeftPrefix = "base_model.model.";

    /// <summary>The layout file of an iteration folder written by OmniTune's trainer.</summary>
    public const string LayoutFile = "parallel_layout.json";

    readonly Dictionary<string, (Tensor A, Tensor B)> modules = new(StringComparer.Ordinal);

    LoraCheckpoint(string folder, int rank, double alpha)
    {
        Folder = folder;
        Rank = rank;
        Alpha = alpha;
    }

    /// <summary>The folder read.</summary>
    public string Folder { get; }

    /// <summary>r.</summary>
    public int Rank { get; }

    /// <summary>α.</summary>
    public double Alpha { get; }

    /// <summary>α / r.</summary>
    public double Scaling => Alpha / Rank;

    /// <summary>Adapters by Hugging Face module path (no thinker prefix).</summary>
    public IReadOnlyDictionary<string, (Tensor A, Tensor B)> Modules => modules;

    /// <summary>PEFT's key of a module's A or B.</summary>
    public static string PeftKey(string module, char matrix) => $"{PeftPrefix}{module}.lora_{matrix}.weight";

    /// <summary>MindSpeed-MM's key of the A or B of the adapter on weight <paramref name="mmWeightName"/> (a local name, chunk prefix included).</summary>
    public static string MindSpeedKey(string mmWeightName, char matrix) => $"{mmWeightName[..^".weight".Length]}.lora_{matrix}.default.weight";

    /// <summary>Whether <paramref name="folder"/> holds adapters: a PEFT folder, or rank folders with adapter configs.</summary>
    public static bool IsAdapterFolder(string folder) =>
        File.Exists(Path.Combine(folder, ConfigFile)) || (Directory.Exists(folder) && Directory.GetDirectories(folder, "mp_rank_*").Any(d => File.Exists(Path.Combine(d, ConfigFile))));

    /// <summary>Reads the adapters of <paramref name="folder"/> for a thinker of <paramref name="config"/>.</summary>
    public static LoraCheckpoint Read(string folder, Qwen25OmniThinkerConfig config, bool tiedLmHead)
    {
        string[] rankFolders = Directory.Exists(folder) ? Directory.GetDirectories(folder, "mp_rank_*").Where(d => File.Exists(Path.Combine(d, ConfigFile))).Order(StringComparer.Ordinal).ToArray() : [];
        string configPath = File.Exists(Path.Combine(folder, ConfigFile)) ? Path.Combine(folder, ConfigFile)
            : rankFolders.Length > 0 ? Path.Combine(rankFolders[0], ConfigFile)
            : throw new FileNotFoundException($"{folder}: no LoRA adapters ({ConfigFile} with {WeightsFile}, or mp_rank_* folders holding them)");
        int r;
        double alpha;
        using (var document = JsonDocument.Parse(File.ReadAllText(configPath)))
        {
            r = document.RootElement.GetProperty("r").GetInt32();
            alpha = document.RootElement.GetProperty("lora_alpha").GetDouble();
        }
        var checkpoint = new LoraCheckpoint(folder, r, alpha);
        try
        {
            if (rankFolders.Length == 0 || File.Exists(Path.Combine(folder, WeightsFile))) checkpoint.ReadPeft(Path.Combine(folder, WeightsFile), null);
            else checkpoint.ReadRanks(folder, rankFolders, config, tiedLmHead);
            if (checkpoint.modules.Count == 0) throw new InvalidDataException($"{folder}: the adapter files hold no lora_A / lora_B tensors");
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>PEFT keys of one file; with <paramref name="parts"/>, this file's tensor-parallel parts are collected instead.</summary>
    void ReadPeft(string path, Dictionary<string, List<(int Tp, char Matrix, Tensor Part)>>? parts, int tp = 0)
    {
        using var file = SafetensorsFile.Open(path);
        foreach (string key in file.Tensors.Keys)
        {
            string name = key.StartsWith(PeftPrefix, StringComparison.Ordinal) ? key[PeftPrefix.Length..]
                : key.StartsWith(Models.Qwen25Omni.Thinker.ThinkerWeightLayout.Prefix, StringComparison.Ordinal) ? key[Models.Qwen25Omni.Thinker.ThinkerWeightLayout.Prefix.Length..]
                : throw new InvalidDataException($"{path}: '{key}' is no adapter key (expected {PeftPrefix}<module>.lora_A.weight)");
            char matrix = name.EndsWith(".lora_A.weight", StringComparison.Ordinal) ? 'A'
                : name.EndsWith(".lora_B.weight", StringComparison.Ordinal) ? 'B'
                : throw new InvalidDataException($"{path}: '{key}' is neither a lora_A nor a lora_B weight");
            string module = name[..^".lora_A.weight".Length];
            Tensor value = file.Read(key);
            if (parts is not null)
            {
                if (!parts.TryGetValue(module, out var list)) parts[module] = list = [];
                list.Add((tp, matrix, value));
                continue;
            }
            var (a, b) = modules.GetValueOrDefault(module);
            modules[module] = matrix == 'A' ? (value, b) : (a, value);
        }
        if (parts is null)
        {
            string? half = modules.Where(m => m.Value.A is null || m.Value.B is null).Select(m => m.Key).FirstOrDefault();
            if (half is not null) throw new InvalidDataException($"{path}: adapter {half} has only one of lora_A / lora_B");
        }
    }

    void ReadRanks(string folder, string[] rankFolders, Qwen25OmniThinkerConfig config, bool tiedLmHead)
    {
        string layoutPath = Path.Combine(folder, LayoutFile);
        if (!File.Exists(layoutPath))
            throw new FileNotFoundException($"{folder}: adapters in rank folders need the run's layout ({LayoutFile}, written by OmniTune's trainer); a MindSpeed-MM LoRA save has none — not read yet", layoutPath);
        var layout = ParallelLayout.FromJson(File.ReadAllText(layoutPath));
        var plan = new PipelinePlan(layout);
        var map = MmTensorMap.For(config, tiedLmHead);
        var shapes = Models.Qwen25Omni.Thinker.ThinkerWeightLayout.For(config, tiedLmHead).ToDictionary(w => w.Key, w => w.Shape, StringComparer.Ordinal);
        var byWeight = map.SelectMany(t => t.Sources.Select((s, i) => (s, t, i))).ToDictionary(x => x.s, x => (x.t, x.i), StringComparer.Ordinal);
        var peftParts = new Dictionary<string, List<(int Tp, char Matrix, Tensor Part)>>(StringComparer.Ordinal);
        var fusedParts = new Dictionary<string, (MmTensor T, List<(int Tp, char Matrix, Tensor Part)> Parts)>(StringComparer.Ordinal);
        for (int tp = 0; tp < layout.MaxTp; tp++)
        {
            for (int stage = 0; stage < layout.PipelineSize; stage++)
            {
                string rank = Path.Combine(folder, plan.Folder(tp, stage));
                if (File.Exists(Path.Combine(rank, WeightsFile)))
                {
                    ReadPeft(Path.Combine(rank, WeightsFile), peftParts, tp);
                    continue;
                }
                string? path = MmRankFile.Find(rank);
                if (path is null) continue;   // a stage without adapters (frozen towers only)
                using var file = MmRankFile.Open(path);
                var names = file.Names.ToHashSet(StringComparer.Ordinal);
                for (int chunk = 0; chunk < layout.VirtualSize; chunk++)
                {
                    int slot = chunk * layout.PipelineSize + stage;
                    foreach (MmTensor t in map.Where(t => t.Name.EndsWith(".weight", StringComparison.Ordinal)))
                    {
                        if (plan.LocalIndex(t, slot) is not int local) continue;
                        string weight = plan.ChunkPrefix(chunk) + t.LocalName(local);
                        string keyA = MindSpeedKey(weight, 'A'), keyB = MindSpeedKey(weight, 'B');
                        if (!names.Contains(keyA) || tp >= plan.TpOf(t.Tower)) continue;
                        if (!fusedParts.TryGetValue(t.Name, out var entry)) fusedParts[t.Name] = entry = (t, []);
                        if (entry.Parts.Any(p => p.Tp == tp)) continue;   // a tower repeated over chunks holds the same adapters
                        entry.Parts.Add((tp, 'A', file.Read(keyA)));
                        entry.Parts.Add((tp, 'B', file.Read(keyB)));
                    }
                }
            }
        }
        foreach (var (module, parts) in peftParts)
        {
            MmTensor t = byWeight.TryGetValue(module + ".weight", out var found) ? found.t : throw new InvalidDataException($"{folder}: adapter on {module}, which is no linear weight of the thinker");
            bool cutsA = t.Split == SplitKind.Column, cutsB = t.Split is SplitKind.Row or SplitKind.Glu;
            int count = plan.TpOf(t.Tower);
            Tensor Join(char matrix, bool cut, int dim)
            {
                var pieces = parts.Where(p => p.Matrix == matrix && p.Tp < count).OrderBy(p => p.Tp).Select(p => p.Part).ToList();
                if (pieces.Count == 0) throw new InvalidDataException($"{folder}: adapter {module} has no lora_{matrix}");
                return cut && pieces.Count > 1 ? cat(pieces, dim) : pieces[0].alias();
            }
            modules[module] = (Join('A', cutsA, 1), Join('B', cutsB, 0));
            foreach (var p in parts) p.Part.Dispose();
        }
        foreach (var (_, (t, parts)) in fusedParts)
        {
            var aParts = parts.Where(p => p.Matrix == 'A').OrderBy(p => p.Tp).Select(p => p.Part).ToList();
            var bParts = parts.Where(p => p.Matrix == 'B').OrderBy(p => p.Tp).Select(p => p.Part).ToList();
            Tensor a = t.Split == SplitKind.Column ? TensorOps.MergeParts(aParts, SplitKind.Column).contiguous() : aParts[0].clone();
            Tensor b = t.Split is SplitKind.Row or SplitKind.Glu ? TensorOps.MergeParts(bParts, t.Split).contiguous() : bParts[0].clone();
            long[][] sourceShapes = t.Sources.Select(s => shapes[s]).ToArray();
            for (int i = 0; i < t.Sources.Length; i++)
                modules[t.Sources[i][..^".weight".Length]] = (i == 0 ? a : a.clone(), TensorOps.Unmerge(t, b, i, sourceShapes).contiguous());
            b.Dispose();
            foreach (var p in parts) p.Part.Dispose();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (a, b) in modules.Values)
        {
            a?.Dispose();
            b?.Dispose();
        }
        modules.Clear();
    }
}
