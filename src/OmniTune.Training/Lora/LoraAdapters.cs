using System.Globalization;
using System.Text.Json;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Core.PyTorch;
using OmniTune.Core.Safetensors;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Lora;

/// <summary>
/// The down projection A of an adapter, shared by the projections of one fused MindSpeed layer (q, k and v; gate and
/// up): the first of them computes A(dropout(x)) and the others reuse it for the same input, so the fused layer's
/// single dropout mask and single A product are reproduced exactly.
/// </summary>
public sealed class SharedDown(Linear a)
{
    object? lastInput;
    Tensor? lastOutput;

    /// <summary>A.</summary>
    public Linear A { get; } = a;

    /// <summary>The down projection of <paramref name="x"/>, computed once per input tensor.</summary>
    public Tensor Of(Tensor x, Func<Tensor, Tensor> compute)
    {
        if (ReferenceEquals(x, lastInput) && lastOutput is { IsInvalid: false } cached) return cached;
        lastOutput = compute(x);
        lastInput = x;
        return lastOutput;
    }
}

/// <summary>
/// One adapter: y = base(x) + B(A(dropout(x))) · α/r, A Kaiming-uniform, B zeros. On a tensor-parallel layer the adapter
/// is cut as MindSpeed (Megatron's LoRA) cuts it: on a column-parallel layer B by rows (A whole), on a row-parallel layer
/// A by columns (B whole), and runs through the layer's own mappings; A is drawn whole and cut, so every layout starts
/// alike. Under MindSpeed's fused layers several adapters share one A (<see cref="SharedDown"/>); only the first of
/// them holds it as a parameter.
/// </summary>
public sealed class LoraLayer : nn.Module
{
    readonly Linear lora_B;
    readonly SharedDown down;
    readonly bool fused;
    readonly double scaling, dropout;
    readonly IParallelLinear? parallel;

    /// <summary>
    /// Creates an adapter for a linear layer of <paramref name="inFeatures"/> → <paramref name="outFeatures"/> (full sizes),
    /// cut like <paramref name="parallel"/> when the layer is tensor-parallel; with <paramref name="shared"/> it uses that
    /// A (drawn by the fused group's first adapter) instead of its own.
    /// </summary>
    public LoraLayer(long inFeatures, long outFeatures, LoraSettings settings, Device? device, ScalarType dtype, Generator? init = null, IParallelLinear? parallel = null,
        SharedDown? shared = null)
        : base("lora")
    {
        this.parallel = parallel;
        int parts = parallel?.Group.Size ?? 1, part = parallel?.Group.Rank ?? 0;
        bool cutsA = parallel is RowParallelLinear, cutsB = parallel is ColumnParallelLinear;
        OwnsA = shared is null;
        fused = shared is not null || settings.Flavour == LoraFlavour.MindSpeed;
        down = shared ?? new SharedDown(nn.Linear(cutsA ? inFeatures / parts : inFeatures, settings.Rank, hasBias: false, device: device, dtype: dtype));
        lora_B = nn.Linear(settings.Rank, cutsB ? outFeatures / parts : outFeatures, hasBias: false, device: device, dtype: dtype);
        using (no_grad())
        {
            lora_B.weight!.zero_();
            // PEFT's kaiming_uniform_(a = √5) on A is uniform(±1/√fan_in); drawn from the layer's own generator when given,
            // so that an adapter starts the same whichever pipeline stage or tensor-parallel rank builds it.
            if (init is not null && OwnsA)
            {
                using Tensor whole = empty(settings.Rank, inFeatures, dtype, device);
                whole.uniform_(-1 / Math.Sqrt(inFeatures), 1 / Math.Sqrt(inFeatures), generator: init);
                down.A.weight!.copy_(cutsA ? new TensorShard(1, part, parts).Of(whole) : whole);
            }
        }
        Shards = cutsA && OwnsA ? new() { ["lora_A.weight"] = new TensorShard(1, part, parts) }
            : cutsB ? new() { ["lora_B.weight"] = new TensorShard(0, part, parts) }
            : [];
        scaling = settings.Scaling;
        dropout = settings.Dropout;
        if (OwnsA) register_module("lora_A", down.A);
        register_module("lora_B", lora_B);
    }

    /// <summary>Tensor-parallel parts the adapted layer is cut into (1 when it is whole).</summary>
    public int Parts => parallel?.Group.Size ?? 1;

    /// <summary>Whether this adapter holds its A (false for the second and third projections of a fused layer).</summary>
    public bool OwnsA { get; }

    /// <summary>The adapter's down projection (shared within a fused layer).</summary>
    public SharedDown Down => down;

    /// <summary>B.</summary>
    public Parameter B => lora_B.weight!;

    /// <summary>Adapter weights cut across the tensor-parallel group, by name in the adapter.</summary>
    public Dictionary<string, TensorShard> Shards { get; }

    /// <summary>The adapter's contribution for input x (what the adapted layer received).</summary>
    public Tensor Delta(Tensor x)
    {
        if (!fused)
        {
            Tensor input = dropout > 0 && training ? Dropout(x) : x;
            Tensor delta = parallel is null ? lora_B.forward(down.A.forward(input)) : parallel.Adapter(input, down.A.forward, lora_B.forward);
            return delta * scaling;
        }
        Tensor reduced = down.Of(x, input =>
        {
            Tensor dropped = dropout > 0 && training ? Dropout(input) : input;
            return parallel is null ? down.A.forward(dropped) : parallel.Adapter(dropped, down.A.forward, t => t);
        });
        return lora_B.forward(reduced) * scaling;
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
    public Tensor Merged(Tensor weight) => OmniTune.Checkpoints.Conversion.LoraMerge.Merged(weight, down.A.weight!, lora_B.weight!, scaling);
}

/// <summary>
/// LoRA applied from outside the model (like a parallel plan): forward hooks on the chosen linear layers of trainable
/// towers add the adapter output; only adapter weights train. Hugging Face target names give PEFT's adapters, saved as a
/// folder PEFT loads (<c>adapter_model.safetensors</c> with <c>base_model.model.…lora_A.weight</c> keys,
/// <c>adapter_config.json</c>); MindSpeed names give MindSpeed's fused adapters, saved in its rank files
/// (<see cref="SaveRank"/>). Both merge into the base weights and load back to continue training.
/// </summary>
public sealed class LoraAdapters : IDisposable
{
    /// <summary>Adapter weights file.</summary>
    public const string WeightsFile = LoraCheckpoint.WeightsFile;

    /// <summary>Adapter config file.</summary>
    public const string ConfigFile = LoraCheckpoint.ConfigFile;

    readonly Dictionary<string, LoraLayer> layers;
    readonly List<Action> hooks;
    readonly Qwen25OmniThinkerForConditionalGeneration model;

    LoraAdapters(LoraSettings settings, Dictionary<string, LoraLayer> layers, List<Action> hooks, Qwen25OmniThinkerForConditionalGeneration model)
    {
        Settings = settings;
        this.layers = layers;
        this.hooks = hooks;
        this.model = model;
    }

    /// <summary>The hyper-parameters.</summary>
    public LoraSettings Settings { get; }

    /// <summary>Adapted modules by Hugging Face path (e.g. model.layers.0.self_attn.q_proj).</summary>
    public IReadOnlyDictionary<string, LoraLayer> Layers => layers;

    /// <summary>
    /// Attaches adapters to every target linear of the towers <paramref name="trainableTower"/> accepts (the ones this
    /// process builds). Each adapter's A is drawn from a generator seeded by <paramref name="seed"/> and the layer's
    /// name (the fused layer's, for MindSpeed names), so every layout starts from the same adapters.
    /// <paramref name="allowNone"/>: a pipeline stage may hold none.
    /// </summary>
    public static LoraAdapters Attach(Qwen25OmniThinkerForConditionalGeneration model, LoraSettings settings, Func<string, bool> trainableTower,
        long seed = 0, bool allowNone = false)
    {
        var names = settings.TargetModules.SelectMany(LoraSettings.HuggingFaceNames).ToHashSet(StringComparer.Ordinal);
        var fusedOf = settings.Flavour == LoraFlavour.MindSpeed
            ? MmTensorMap.For(model.Config, model.TiedLmHead).SelectMany(t => t.Sources.Select(src => (src, t.Name))).ToDictionary(x => x.src, x => x.Name, StringComparer.Ordinal)
            : null;
        var shared = new Dictionary<string, SharedDown>(StringComparer.Ordinal);
        var layers = new Dictionary<string, LoraLayer>(StringComparer.Ordinal);
        var hooks = new List<Action>();
        Parameter first = model.HuggingFaceParameters().First().Parameter;
        foreach (var (path, module) in model.named_modules())
        {
            if (module is not (Linear or IParallelLinear) || !names.Contains(path.Split('.')[^1]) || path.StartsWith("visual.merger.", StringComparison.Ordinal)) continue;
            if (!model.Parts.Builds(path + ".weight")) continue;   // another pipeline stage's layer
            if (!trainableTower(Optimization.TrainableParameters.TowerOf(path + ".weight"))) continue;
            string group = fusedOf?.GetValueOrDefault(path + ".weight") ?? path;   // MindSpeed: the fused layer the projection belongs to
            using var init = new Generator((ulong)unchecked(seed * 1_000_003 + StableHash(group)));
            var parallel = module as IParallelLinear;
            var (inFeatures, outFeatures) = module is Linear linear ? (linear.in_features, linear.out_features) : (parallel!.InFeatures, parallel.OutFeatures);
            var adapter = new LoraLayer(inFeatures, outFeatures, settings, first.device, first.dtype, init, parallel, shared.GetValueOrDefault(group));
            if (fusedOf is not null) shared.TryAdd(group, adapter.Down);
            layers[path] = adapter;
            var remover = ((nn.Module<Tensor, Tensor>)module).register_forward_hook((_, input, output) => output + adapter.Delta(input));
            hooks.Add(remover.remove);
        }
        if (layers.Count == 0 && !allowNone)
            throw new ArgumentException($"--lora-target-modules {string.Join(",", settings.TargetModules)} matched no linear layer of a trainable tower");
        return new LoraAdapters(settings, layers, hooks, model);
    }

    /// <summary>Adapter weights cut across a tensor-parallel group, by PEFT-style key.</summary>
    public IEnumerable<(string Key, TensorShard Shard)> Shards() =>
        layers.SelectMany(l => l.Value.Shards.Select(s => ($"{l.Key}.{s.Key}", s.Value)));

    /// <summary>
    /// Adapter parameters by module key (<c>model.layers.0.self_attn.q_proj.lora_A.weight</c>); a fused layer's shared A
    /// once, under its first projection.
    /// </summary>
    public IEnumerable<(string Key, Parameter Parameter)> Parameters() =>
        layers.SelectMany(l => l.Value.named_parameters().Select(p => ($"{l.Key}.{p.name}", p.parameter)));

    /// <summary>Puts the adapters in training or evaluation mode (dropout).</summary>
    public void Train(bool on)
    {
        foreach (LoraLayer layer in layers.Values) layer.train(on);
    }

    /// <summary>adapter_config.json: PEFT's fields, target_modules as the Hugging Face module names PEFT matches.</summary>
    void WriteConfig(string folder)
    {
        var config = new Dictionary<string, object?>
        {
            ["peft_type"] = "LORA",
            ["r"] = Settings.Rank,
            ["lora_alpha"] = Settings.Alpha,
            ["lora_dropout"] = Settings.Dropout,
            ["target_modules"] = Settings.Flavour == LoraFlavour.Peft ? Settings.TargetModules : layers.Keys.Select(k => k.Split('.')[^1]).Distinct().Order(StringComparer.Ordinal).ToList(),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["task_type"] = null,
            ["base_model_name_or_path"] = null,
            ["omnitune_lora_target_modules"] = Settings.TargetModules,
            ["omnitune_flavour"] = Settings.Flavour == LoraFlavour.MindSpeed ? "mindspeed" : "peft",
        };
        File.WriteAllText(Path.Combine(folder, ConfigFile), JsonSerializer.Serialize(config));
    }

    /// <summary>
    /// Writes PEFT's folder into <paramref name="folder"/>: adapter_model.safetensors (<c>base_model.model.&lt;module&gt;.lora_A.weight</c>,
    /// this process's parts) and adapter_config.json — what <c>PeftModel.from_pretrained</c> loads onto the Hugging Face thinker.
    /// </summary>
    public void Save(string folder)
    {
        if (Settings.Flavour != LoraFlavour.Peft) throw new InvalidOperationException("MindSpeed-named adapters save in MindSpeed's rank files (SaveRank)");
        Directory.CreateDirectory(folder);
        SafetensorsWriter.WriteFile(Path.Combine(folder, WeightsFile),
            Parameters().Select(p => TensorToWrite.Of(LoraCheckpoint.PeftPrefix + p.Key, p.Parameter.detach())).ToList(),
            new Dictionary<string, string> { ["format"] = "pt" });
        WriteConfig(folder);
    }

    /// <summary>
    /// Writes this rank's adapters into its rank folder of a MindSpeed-layout checkpoint: with MindSpeed names
    /// <c>model_optim_rng.pt</c> holding <c>{'model' | 'model0', …: {…linear_qkv.lora_A.default.weight, …}, 'checkpoint_version': 3.0,
    /// 'iteration': N}</c> — one A per fused layer, its B the projections' B fused as the weight is (q/k/v interleaved
    /// per query group, gate then up), local layer numbers, this rank's tensor-parallel parts — as MindSpeed-MM saves
    /// LoRA; with Hugging Face names PEFT's files. adapter_config.json beside either.
    /// </summary>
    public void SaveRank(string rankFolder, ParallelLayout layout, int stage, int iteration)
    {
        Directory.CreateDirectory(rankFolder);
        if (Settings.Flavour == LoraFlavour.Peft)
        {
            Save(rankFolder);
            return;
        }
        var plan = new PipelinePlan(layout);
        var map = MmTensorMap.For(model.Config, model.TiedLmHead);
        var state = new Dictionary<string, object?>(StringComparer.Ordinal);
        for (int chunk = 0; chunk < layout.VirtualSize; chunk++)
        {
            int slot = chunk * layout.PipelineSize + stage;
            var tensors = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (MmTensor t in map)
            {
                string[] members = t.Sources.Select(src => src[..^".weight".Length]).ToArray();
                if (!t.Name.EndsWith(".weight", StringComparison.Ordinal) || !layers.ContainsKey(members[0]) || plan.LocalIndex(t, slot) is not int local) continue;
                string weight = plan.ChunkPrefix(chunk) + t.LocalName(local), name = weight[plan.ChunkPrefix(chunk).Length..];
                LoraLayer owner = layers[members[0]];
                MmTensor held = t with { Groups = t.Groups / owner.Parts };   // this rank's query groups
                Tensor a = owner.Down.A.weight!.detach(), b = TensorOps.Merge(held, members.Select(m => layers[m].B.detach()).ToArray()).contiguous();
                tensors[LoraCheckpoint.MindSpeedKey(name, 'A')] = TensorToWrite.Of(LoraCheckpoint.MindSpeedKey(name, 'A'), a);
                tensors[LoraCheckpoint.MindSpeedKey(name, 'B')] = TensorToWrite.Of(LoraCheckpoint.MindSpeedKey(name, 'B'), b);
            }
            state[layout.VirtualSize == 1 ? "model" : $"model{chunk}"] = tensors;
        }
        state["checkpoint_version"] = 3.0;
        state["iteration"] = iteration;
        PyTorchFileWriter.Write(Path.Combine(rankFolder, MmCheckpoint.PtFileName), state);
        WriteConfig(rankFolder);
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

    /// <summary>The model's weights (this process's parts) with every adapter merged in, as a tensor source for the converter's writers.</summary>
    public IThinkerTensorSource MergedSource(Models.Qwen25Omni.Config.Qwen25OmniConfig config, string configFolder) =>
        new MergedWeights(new ModelTensorSource(model, config, configFolder), this);

    sealed class MergedWeights(ModelTensorSource weights, LoraAdapters adapters) : IThinkerTensorSource
    {
        public Models.Qwen25Omni.Config.Qwen25OmniConfig Config => weights.Config;

        public string ConfigFolder => weights.ConfigFolder;

        public bool TiedLmHead => weights.TiedLmHead;

        public (ScalarType DType, long[] Shape) Info(string key) => weights.Info(key);

        public Tensor Read(string key)
        {
            string module = key.EndsWith(".weight", StringComparison.Ordinal) ? key[..^".weight".Length] : "";
            if (!adapters.layers.TryGetValue(module, out LoraLayer? adapter)) return weights.Read(key);
            using Tensor weight = weights.Read(key);
            return adapter.Merged(weight);
        }

        public void Dispose() => weights.Dispose();
    }

    /// <summary>Reads adapter_config.json's settings (OmniTune's own target names when it wrote the file).</summary>
    public static LoraSettings ReadSettings(string folder)
    {
        string path = File.Exists(Path.Combine(folder, ConfigFile)) ? Path.Combine(folder, ConfigFile)
            : Directory.GetDirectories(folder, "mp_rank_*").Select(d => Path.Combine(d, ConfigFile)).Order(StringComparer.Ordinal).FirstOrDefault(File.Exists)
              ?? throw new FileNotFoundException($"{folder}: no LoRA adapter config ({ConfigFile})", Path.Combine(folder, ConfigFile));
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = document.RootElement;
        JsonElement targets = root.TryGetProperty("omnitune_lora_target_modules", out JsonElement own) ? own : root.GetProperty("target_modules");
        return new LoraSettings(targets.EnumerateArray().Select(e => e.GetString()!).ToList(),
            root.GetProperty("r").GetInt32(), root.GetProperty("lora_alpha").GetDouble(), root.GetProperty("lora_dropout").GetDouble());
    }

    /// <summary>
    /// Copies saved adapters in (<see cref="LoraCheckpoint"/>: any of the saved forms, any layout): each adapter of this
    /// process takes its part of the saved one; every adapter must be there with its shape, and a saved adapter on a
    /// layer this process builds without one is an error.
    /// </summary>
    public void Load(string folder)
    {
        using var saved = LoraCheckpoint.Read(folder, model.Config, model.TiedLmHead);
        var missing = layers.Keys.Where(k => !saved.Modules.ContainsKey(k)).ToList();
        var unexpected = saved.Modules.Keys.Where(k => !layers.ContainsKey(k) && model.Parts.Builds(k + ".weight")).ToList();
        if (missing.Count + unexpected.Count > 0)
            throw new InvalidDataException($"{folder}: adapters do not match: {missing.Count} missing (e.g. {missing.FirstOrDefault()}), {unexpected.Count} unexpected (e.g. {unexpected.FirstOrDefault()})");
        using (no_grad())
        {
            foreach (var (path, layer) in layers)
            {
                var (a, b) = saved.Modules[path];
                foreach (var (name, parameter) in layer.named_parameters())
                {
                    Tensor whole = name == "lora_A.weight" ? a : b;
                    using Tensor part = layer.Shards.TryGetValue(name, out TensorShard? shard) ? shard.Of(whole) : whole.alias();
                    if (!part.shape.SequenceEqual(parameter.shape))
                        throw new InvalidDataException($"{folder}: {path}.{name} has shape [{string.Join(", ", part.shape)}], the adapter [{string.Join(", ", parameter.shape)}]");
                    parameter.copy_(part);
                }
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
