using System.Globalization;
using System.Text.Json;
using OmniTune.Core.Safetensors;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Lora;

/// <summary>
/// One adapter: y = base(x) + B(A(dropout(x))) · α/r, A Kaiming-uniform, B zeros. On a tensor-parallel layer the adapter
/// is cut as MindSpeed (Megatron's LoRA) cuts it: on a column-parallel layer B by rows (A whole), on a row-parallel layer
/// A by columns (B whole), and runs through the layer's own mappings; A is drawn whole and cut, so every layout starts alike.
/// </summary>
public sealed class LoraLayer : nn.Module
{
    readonly Linear lora_A, lora_B;
    readonly double scaling, dropout;
    readonly IParallelLinear? parallel;

    /// <summary>
    /// Creates an adapter for a linear layer of <paramref name="inFeatures"/> → <paramref name="outFeatures"/> (full sizes),
    /// cut like <paramref name="parallel"/> when the layer is tensor-parallel.
    /// </summary>
    public LoraLayer(long inFeatures, long outFeatures, LoraSettings settings, Device? device, ScalarType dtype, Generator? init = null, IParallelLinear? parallel = null)
        : base("lora")
    {
        this.parallel = parallel;
        int parts = parallel?.Group.Size ?? 1, part = parallel?.Group.Rank ?? 0;
        bool cutsA = parallel is RowParallelLinear, cutsB = parallel is ColumnParallelLinear;
        lora_A = nn.Linear(cutsA ? inFeatures / parts : inFeatures, settings.Rank, hasBias: false, device: device, dtype: dtype);
        lora_B = nn.Linear(settings.Rank, cutsB ? outFeatures / parts : outFeatures, hasBias: false, device: device, dtype: dtype);
        using (no_grad())
        {
            lora_B.weight!.zero_();
            // PEFT's kaiming_uniform_(a = √5) on A is uniform(±1/√fan_in); drawn from the layer's own generator when given,
            // so that an adapter starts the same whichever pipeline stage or tensor-parallel rank builds it.
            if (init is not null)
            {
                using Tensor whole = empty(settings.Rank, inFeatures, dtype, device);
                whole.uniform_(-1 / Math.Sqrt(inFeatures), 1 / Math.Sqrt(inFeatures), generator: init);
                lora_A.weight!.copy_(cutsA ? new TensorShard(1, part, parts).Of(whole) : whole);
            }
        }
        Shards = cutsA ? new() { ["lora_A.weight"] = new TensorShard(1, part, parts) }
            : cutsB ? new() { ["lora_B.weight"] = new TensorShard(0, part, parts) }
            : [];
        scaling = settings.Scaling;
        dropout = settings.Dropout;
        RegisterComponents();
    }

    /// <summary>Adapter weights cut across the tensor-parallel group, by name in the adapter.</summary>
    public Dictionary<string, TensorShard> Shards { get; }

    /// <summary>The adapter's contribution for input x (what the adapted layer received).</summary>
    public Tensor Delta(Tensor x)
    {
        Tensor input = dropout > 0 && training ? Dropout(x) : x;
        Tensor delta = parallel is null ? lora_B.forward(lora_A.forward(input)) : parallel.Adapter(input, lora_A.forward, lora_B.forward);
        return delta * scaling;
    }

    /// <summary>
    /// Inverted dropout. On CPU torch's default generator (replayed by recompute); on an accelerator the device's
    /// <see cref="OmniTune.Models.Common.ReplayedRandomness"/> generator, which recompute replays as well.
    /// </summary>
    Tensor Dropout(Tensor x)
    {
        if (OmniTune.Models.Common.ReplayedRandomness.For(x.device) is not { } generator) return nn.functional.dropout(x, dropout, training: true);
        Tensor keep = rand(x.shape, ScalarType.Float32, x.device, generator: generator).ge(dropout);
        return x * keep.to(x.dtype) / (1 - dropout);
    }

    /// <summary><paramref name="weight"/> with this adapter merged in (the one merge, <see cref="OmniTune.Checkpoints.Conversion.LoraMerge"/>).</summary>
    public Tensor Merged(Tensor weight) => OmniTune.Checkpoints.Conversion.LoraMerge.Merged(weight, lora_A.weight!, lora_B.weight!, scaling);
}

/// <summary>
/// LoRA applied from outside the model (like a parallel plan): forward hooks on the chosen linear layers of trainable
/// towers add the adapter output; only adapter weights train. Adapters save in PEFT's layout
/// (<c>adapter_model.safetensors</c> with <c>…lora_A.weight</c> keys, <c>adapter_config.json</c>), merge into the base
/// weights, and load back to continue training.
/// </summary>
public sealed class LoraAdapters : IDisposable
{
    /// <summary>Adapter weights file.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>Adapter config file.</summary>
    public const string ConfigFile = "adapter_config.json";

    readonly Dictionary<string, LoraLayer> layers;
    readonly List<Action> hooks;

    LoraAdapters(LoraSettings settings, Dictionary<string, LoraLayer> layers, List<Action> hooks)
    {
        Settings = settings;
        this.layers = layers;
        this.hooks = hooks;
    }

    /// <summary>The hyper-parameters.</summary>
    public LoraSettings Settings { get; }

    /// <summary>Adapted modules by Hugging Face path (e.g. model.layers.0.self_attn.q_proj).</summary>
    public IReadOnlyDictionary<string, LoraLayer> Layers => layers;

    /// <summary>
    /// Attaches adapters to every target linear of the towers <paramref name="trainableTower"/> accepts (the ones this
    /// process builds). Each adapter's A is drawn from a generator seeded by <paramref name="seed"/> and the layer's
    /// name, so every layout starts from the same adapters. <paramref name="allowNone"/>: a pipeline stage may hold none.
    /// </summary>
    public static LoraAdapters Attach(Qwen25OmniThinkerForConditionalGeneration model, LoraSettings settings, Func<string, bool> trainableTower,
        long seed = 0, bool allowNone = false)
    {
        var names = settings.TargetModules.SelectMany(LoraSettings.HuggingFaceNames).ToHashSet(StringComparer.Ordinal);
        var layers = new Dictionary<string, LoraLayer>(StringComparer.Ordinal);
        var hooks = new List<Action>();
        Parameter first = model.HuggingFaceParameters().First().Parameter;
        foreach (var (path, module) in model.named_modules())
        {
            if (module is not (Linear or IParallelLinear) || !names.Contains(path.Split('.')[^1]) || path.StartsWith("visual.merger.", StringComparison.Ordinal)) continue;
            if (!model.Parts.Builds(path + ".weight")) continue;   // another pipeline stage's layer
            if (!trainableTower(Optimization.TrainableParameters.TowerOf(path + ".weight"))) continue;
            using var init = new Generator((ulong)unchecked(seed * 1_000_003 + StableHash(path)));
            var parallel = module as IParallelLinear;
            var (inFeatures, outFeatures) = module is Linear linear ? (linear.in_features, linear.out_features) : (parallel!.InFeatures, parallel.OutFeatures);
            var adapter = new LoraLayer(inFeatures, outFeatures, settings, first.device, first.dtype, init, parallel);
            layers[path] = adapter;
            var remover = ((nn.Module<Tensor, Tensor>)module).register_forward_hook((_, input, output) => output + adapter.Delta(input));
            hooks.Add(remover.remove);
        }
        if (layers.Count == 0 && !allowNone)
            throw new ArgumentException($"--lora-target-modules {string.Join(",", settings.TargetModules)} matched no linear layer of a trainable tower");
        return new LoraAdapters(settings, layers, hooks);
    }

    /// <summary>Adapter weights cut across a tensor-parallel group, by PEFT-style key.</summary>
    public IEnumerable<(string Key, TensorShard Shard)> Shards() =>
        layers.SelectMany(l => l.Value.Shards.Select(s => ($"{l.Key}.{s.Key}", s.Value)));

    /// <summary>Adapter parameters by PEFT-style key (<c>model.layers.0.self_attn.q_proj.lora_A.weight</c>).</summary>
    public IEnumerable<(string Key, Parameter Parameter)> Parameters() =>
        layers.SelectMany(l => l.Value.named_parameters().Select(p => ($"{l.Key}.{p.name}", p.parameter)));

    /// <summary>Puts the adapters in training or evaluation mode (dropout).</summary>
    public void Train(bool on)
    {
        foreach (LoraLayer layer in layers.Values) layer.train(on);
    }

    /// <summary>Writes adapter_model.safetensors and adapter_config.json into <paramref name="folder"/>.</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        SafetensorsWriter.WriteFile(Path.Combine(folder, WeightsFile),
            Parameters().Select(p => TensorToWrite.Of(ThinkerWeightLayout.Prefix + p.Key, p.Parameter.detach())).ToList(),
            new Dictionary<string, string> { ["format"] = "pt" });
        var config = new Dictionary<string, object>
        {
            ["peft_type"] = "LORA",
            ["r"] = Settings.Rank,
            ["lora_alpha"] = Settings.Alpha,
            ["lora_dropout"] = Settings.Dropout,
            ["target_modules"] = Settings.TargetModules,
            ["bias"] = "none",
            ["task_type"] = "CAUSAL_LM",
        };
        File.WriteAllText(Path.Combine(folder, ConfigFile), JsonSerializer.Serialize(config));
    }

    /// <summary>Writes the base weights with every adapter merged in as model.safetensors (the model itself is not changed).</summary>
    public void SaveMerged(Qwen25OmniThinkerForConditionalGeneration model, string folder)
    {
        var tensors = model.HuggingFaceParameters().Select(p =>
        {
            string module = p.Key.EndsWith(".weight", StringComparison.Ordinal) ? p.Key[..^".weight".Length] : "";
            return layers.TryGetValue(module, out LoraLayer? adapter)
                ? new TensorToWrite(ThinkerWeightLayout.Prefix + p.Key, p.Parameter.dtype, p.Parameter.shape, () =>
                {
                    return adapter.Merged(p.Parameter);
                })
                : TensorToWrite.Of(ThinkerWeightLayout.Prefix + p.Key, p.Parameter.detach());
        }).ToList();
        SafetensorsWriter.WriteFile(Path.Combine(folder, SafetensorsCheckpoint.SingleFileName), tensors, new Dictionary<string, string> { ["format"] = "pt", ["lora"] = "merged" });
    }

    /// <summary>Reads adapter_config.json's settings.</summary>
    public static LoraSettings ReadSettings(string folder)
    {
        string path = Path.Combine(folder, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no LoRA adapter config", path);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = document.RootElement;
        return new LoraSettings(root.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!).ToList(),
            root.GetProperty("r").GetInt32(), root.GetProperty("lora_alpha").GetDouble(), root.GetProperty("lora_dropout").GetDouble());
    }

    /// <summary>Copies saved adapter weights in; every adapter must be present with its shape.</summary>
    public void Load(string folder)
    {
        string path = Path.Combine(folder, WeightsFile);
        using var checkpoint = SafetensorsCheckpoint.Open(path);
        var expected = Parameters().ToDictionary(p => ThinkerWeightLayout.Prefix + p.Key, p => p.Parameter);
        var missing = expected.Keys.Where(k => !checkpoint.Contains(k)).ToList();
        var unexpected = checkpoint.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count + unexpected.Count > 0)
            throw new InvalidDataException($"{path}: adapters do not match: {missing.Count} missing (e.g. {missing.FirstOrDefault()}), {unexpected.Count} unexpected (e.g. {unexpected.FirstOrDefault()})");
        using (no_grad())
        {
            foreach (var (key, parameter) in expected)
            {
                using Tensor stored = checkpoint.Read(key);
                if (!stored.shape.SequenceEqual(parameter.shape))
                    throw new InvalidDataException($"{path}: {key} has shape [{string.Join(", ", stored.shape)}], the adapter [{string.Join(", ", parameter.shape)}]");
                parameter.copy_(stored);
            }
        }
    }

    /// <summary>Adds B·A·α/r into the base weights and removes the hooks: the model then computes the same without adapters.</summary>
    public void MergeInto(Qwen25OmniThinkerForConditionalGeneration model)
    {
        var weights = model.named_modules().Where(m => layers.ContainsKey(m.name))
            .ToDictionary(m => m.name, m => m.module is IParallelLinear parallel ? parallel.Weight : ((Linear)m.module).weight!);
        using (no_grad())
        {
            foreach (var (path, adapter) in layers)
            {
                using Tensor merged = adapter.Merged(weights[path]);   // a tensor-parallel layer merges its own part
                weights[path].copy_(merged);
            }
        }
        DetachHooks();
    }

    void DetachHooks()
    {
        foreach (Action remove in hooks) remove();
        hooks.Clear();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        DetachHooks();
        foreach (LoraLayer layer in layers.Values) layer.Dispose();
    }

    /// <summary>FNV-1a of a module path: the same in every process (string.GetHashCode is randomised per process).</summary>
    static long StableHash(string text)
    {
        ulong hash = 14695981039346656037;
        foreach (char c in text) hash = (hash ^ c) * 1099511628211;
        return (long)(hash >> 1);
    }

    /// <summary>Parses --lora-target-modules (space- or comma-separated).</summary>
    public static List<string> ParseTargets(string text) =>
        text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    /// <summary>Formats settings for a log line.</summary>
    public override string ToString() =>
        $"LoRA r={Settings.Rank} alpha={Settings.Alpha.ToString(CultureInfo.InvariantCulture)} on {layers.Count} linear layers ({string.Join(",", Settings.TargetModules)})";
}
