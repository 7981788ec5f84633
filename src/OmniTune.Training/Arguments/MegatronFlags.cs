using System.Globalization;

namespace OmniTune.Training.Arguments;

/// <summary>
/// Megatron / MindSpeed-MM style flags (<c>--micro-batch-size 1 --bf16 …</c>): the flags OmniTune implements, the
/// performance-only flags it accepts and ignores (listed once), the parallel flags not built yet (rejected unless 1),
/// and an error with a suggestion for anything else.
/// </summary>
public sealed class MegatronFlags
{
    /// <summary>How a flag is taken.</summary>
    public enum FlagKind
    {
        /// <summary>Takes a value and is used.</summary>
        Value,

        /// <summary>A switch that is used.</summary>
        Switch,

        /// <summary>Takes a value; accepted, reported once, no effect here.</summary>
        IgnoredValue,

        /// <summary>A switch (an optional value is skipped); accepted, reported once, no effect here.</summary>
        IgnoredSwitch,
    }

    /// <summary>One flag: name without dashes, kind, default as text (null = unset) and what it does.</summary>
    public sealed record Flag(string Name, FlagKind Kind, string? Default, string Meaning);

    /// <summary>Every flag finetune takes, in the order <c>finetune --help</c> lists them.</summary>
    public static readonly IReadOnlyList<Flag> All =
    [
        new("mm-model", FlagKind.Value, null, "MindSpeed-MM model.json: towers, freezing, recompute, pipeline_num_layers, per-tower tp (required)"),
        new("mm-data", FlagKind.Value, null, "MindSpeed-MM data.json: datasets, processor, loader (required)"),
        new("micro-batch-size", FlagKind.Value, "1", "samples per micro-batch"),
        new("global-batch-size", FlagKind.Value, null, "samples per optimizer step = micro-batch size × micro-batches × data-parallel size (default: the micro-batch size)"),
        new("seq-length", FlagKind.Value, null, "cutoff length of a sample in tokens (required)"),
        new("train-iters", FlagKind.Value, null, "optimizer steps to run (required)"),
        new("lr", FlagKind.Value, null, "peak learning rate (required)"),
        new("lr-decay-style", FlagKind.Value, "linear", "constant, linear or cosine decay after warm-up"),
        new("lr-decay-iters", FlagKind.Value, null, "iterations the decay spans (default: --train-iters)"),
        new("lr-warmup-fraction", FlagKind.Value, null, "warm-up as a fraction of the decay (excludes --lr-warmup-iters)"),
        new("lr-warmup-iters", FlagKind.Value, "0", "warm-up iterations"),
        new("lr-warmup-init", FlagKind.Value, "0", "learning rate at the start of warm-up"),
        new("min-lr", FlagKind.Value, "0", "learning rate the decay ends at"),
        new("weight-decay", FlagKind.Value, "0.01", "AdamW decoupled weight decay (not on biases and norms)"),
        new("clip-grad", FlagKind.Value, "1.0", "clip the global gradient norm to this (0: no clipping)"),
        new("adam-beta1", FlagKind.Value, "0.9", "AdamW β1"),
        new("adam-beta2", FlagKind.Value, "0.999", "AdamW β2"),
        new("adam-eps", FlagKind.Value, "1e-8", "AdamW ε"),
        new("seed", FlagKind.Value, "1234", "seed of the sample order, initialisation and dropout"),
        new("calculate-per-sample-loss", FlagKind.Switch, null, "average each sample's token losses, then the samples"),
        new("calculate-per-token-loss", FlagKind.Switch, null, "average over every trained token of the global batch"),
        new("bf16", FlagKind.Switch, null, "bf16 model with fp32 master weights (CUDA; on CPU only with --device cpu, where bf16 matmul is ~150× slower)"),
        new("fp16", FlagKind.Switch, null, "refused: fp16 training is not built (use --bf16)"),
        new("load", FlagKind.Value, null, "start from: a Hugging Face folder, a MindSpeed-MM folder (any TP/PP/VPP layout) or a training checkpoint root (resumed)"),
        new("ckpt-step", FlagKind.Value, null, "iteration of the --load checkpoint root (default: the one its tracker names)"),
        new("finetune", FlagKind.Switch, null, "with --load of a training checkpoint: take its weights only (iteration, optimizer and RNG start afresh), as Megatron's --finetune"),
        new("load-base-model", FlagKind.Value, null, "base weights under a LoRA checkpoint (default: data.json's model_name_or_path)"),
        new("no-load-optim", FlagKind.Switch, null, "resume without the optimizer state (the schedule restarts)"),
        new("no-load-rng", FlagKind.Switch, null, "resume without the RNG state"),
        new("save", FlagKind.Value, null, "checkpoint root (metrics.jsonl and loss.png go there too)"),
        new("save-interval", FlagKind.Value, null, "save every N iterations (always at the end)"),
        new("no-save-optim", FlagKind.Switch, null, "save without the optimizer state"),
        new("no-save-rng", FlagKind.Switch, null, "save without the RNG state"),
        new("overwrite-output-dir", FlagKind.Switch, null, "let a new run replace what another run saved in --save"),
        new("log-interval", FlagKind.Value, "100", "print a step line every N iterations"),
        new("log-tps", FlagKind.Switch, null, "tokens per second and MFU in the step lines"),
        new("tensorboard-dir", FlagKind.Value, null, "write TensorBoard events there"),
        new("num-workers", FlagKind.Value, "2", "background workers that collate batches"),
        new("media-cache-mb", FlagKind.Value, "1024", "MiB of processed images, videos and audio kept in memory per process for their next use (the next epoch, another packed row); 0 turns it off"),
        new("no-shuffle", FlagKind.Switch, null, "keep the dataset order"),
        new("variable-seq-lengths", FlagKind.Switch, null, "accepted: every micro-batch is padded to its own longest sample anyway"),
        new("eval-interval", FlagKind.Value, null, "validate every N iterations and at the end, when data.json holds out a validation set (val_rate / val_dataset) [default: 1000]"),
        new("eval-iters", FlagKind.Value, "100", "global batches per validation (the same ones each time: the held-out set in order, wrapping)"),
        new("device", FlagKind.Value, "auto", "auto, cpu, cuda or cuda:N"),
        new("peak-tflops", FlagKind.Value, null, "peak TFLOP/s the MFU column divides by on CUDA (default: the GPU's bf16 data-sheet peak; on CPU the fp32 GEMM rate measured at start)"),
        new("max-nan-steps", FlagKind.Value, "5", "stop after this many non-finite steps in a row (each is skipped)"),
        new("tensor-model-parallel-size", FlagKind.Value, "1", "tensor-parallel size of the text decoder (the encoders follow unless model.json sets image_encoder.tp / audio_encoder.tp)"),
        new("sequence-parallel", FlagKind.Switch, null, "the decoder's norms and residuals on 1/TP of the sequence (needs TP above 1)"),
        new("pipeline-model-parallel-size", FlagKind.Value, "1", "pipeline stages (each tower's pipeline_num_layers in model.json)"),
        new("virtual-pipeline-model-parallel-size", FlagKind.Value, null, "virtual chunks per stage (interleaved 1F1B; nested pipeline_num_layers)"),
        new("num-layers-per-virtual-pipeline-stage", FlagKind.Value, null, "decoder layers per virtual chunk"),
        new("context-parallel-size", FlagKind.Value, "1", "context parallel: the text decoder's sequence over this many ranks (Megatron's load-balanced chunks, keys/values all-gathered)"),
        new("expert-model-parallel-size", FlagKind.Value, "1", "expert parallel: Qwen2.5-Omni has no experts, must be 1"),
        new("hetero-parallel", FlagKind.Switch, null, "an encoder at a model.json tp below the decoder's gets its own layout: data-parallel over more ranks, the decoder's tensor-parallel ranks of a micro-batch holding the same encoder part share its media items (encoders whole on the first stage with pipeline stages)"),
        new("use-distributed-optimizer", FlagKind.Switch, null, "ZeRO-1: AdamW state sharded over the data-parallel ranks"),
        new("overlap-grad-reduce", FlagKind.Switch, null, "data parallel: each gradient bucket's all-reduce (reduce-scatter under --use-distributed-optimizer) starts in backward as soon as its decoder layers are done"),
        new("ddp-bucket-size", FlagKind.Value, null, "elements per gradient bucket under --overlap-grad-reduce or --use-distributed-optimizer (default Megatron's max(40M, 1M × data-parallel size))"),
        new("enable-dummy-optimizer", FlagKind.Switch, null, "accepted: a stage without trainable parameters needs no dummy here"),
        new("distributed-timeout-minutes", FlagKind.Value, "10", "a collective waiting longer for its peers ends the job, naming the rank and group"),
        new("check-weight-hash-across-dp-replicas-interval", FlagKind.Value, null, "check every N steps that the data-parallel replicas hold identical weights"),
        new("lora-target-modules", FlagKind.Value, null, "LoRA on these MindSpeed module names: linear_qkv linear_proj linear_fc1 linear_fc2 (enables LoRA)"),
        new("lora-r", FlagKind.Value, "8", "LoRA rank"),
        new("lora-alpha", FlagKind.Value, "16", "LoRA scaling numerator (α/r)"),
        new("lora-dropout", FlagKind.Value, "0", "dropout on the adapters' input"),
        new("lora-save-full-weight", FlagKind.Switch, null, "also save the weights with the adapters merged in"),
        new("mm-tool", FlagKind.IgnoredValue, null, "MindSpeed-MM tool config"),
        new("recompute-granularity", FlagKind.IgnoredValue, null, "recompute is set per tower in model.json"),
        new("recompute-method", FlagKind.IgnoredValue, null, "recompute is set per tower in model.json"),
        new("recompute-num-layers", FlagKind.IgnoredValue, null, "recompute is set per tower in model.json"),
        new("vocab-size", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("num-layers", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("hidden-size", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("num-attention-heads", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("num-query-groups", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("max-position-embeddings", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("make-vocab-size-divisible-by", FlagKind.IgnoredValue, null, "model sizes come from config.json"),
        new("position-embedding-type", FlagKind.IgnoredValue, null, "TMRoPE is the model's"),
        new("normalization", FlagKind.IgnoredValue, null, "RMSNorm is the model's"),
        new("tokenizer-type", FlagKind.IgnoredValue, null, "the tokenizer comes from the model folder"),
        new("attention-softmax-in-fp32", FlagKind.IgnoredValue, null, "kernel choice"),
        new("context-parallel-algo", FlagKind.IgnoredValue, null, "one algorithm here: keys and values all-gathered (see README)"),
        new("distributed-backend", FlagKind.IgnoredValue, null, "MPI between processes, NCCL for CUDA gradients"),
        new("ckpt-format", FlagKind.IgnoredValue, null, "checkpoints are safetensors in MindSpeed's layout"),
        new("transformer-impl", FlagKind.IgnoredSwitch, null, "kernel choice"),
        .. new[]
        {
            "use-mcore-models", "use-flash-attn", "use-fused-rmsnorm", "swiglu", "use-fused-swiglu", "no-masked-softmax-fusion",
            "no-gradient-accumulation-fusion", "use-fused-rotary-pos-emb", "use-distributed-optimizer-overlap",
            "overlap-param-gather", "bf16-use-fp32-params", "use-cpu-initialization", "no-bias-swiglu-fusion", "no-bias-dropout-fusion",
            "no-rope-fusion", "disable-bias-linear", "add-qkv-bias", "group-query-attention", "untie-embeddings-and-output-weights",
            "use-rotary-position-embeddings", "no-load-ckpt-args", "log-throughput", "log-params-norm", "use-ascend-mc2",
            "reuse-fp32-param", "use-fused-ring-attention-update", "use-dist-ckpt",
        }.Select(name => new Flag(name, FlagKind.IgnoredSwitch, null, "performance or platform switch with no effect here")),
    ];

    static readonly Dictionary<string, Flag> ByName = All.ToDictionary(f => f.Name, StringComparer.Ordinal);

    /// <summary>The flag list <c>finetune --help</c> prints: every flag with its default and meaning, then the accepted and ignored ones.</summary>
    public static string Help()
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine("Megatron / MindSpeed-MM flags (--name value or --name=value; '_' may stand for '-'):");
        foreach (Flag f in All.Where(f => f.Kind is FlagKind.Value or FlagKind.Switch))
        {
            string head = f.Kind == FlagKind.Value ? $"--{f.Name} <value>" : $"--{f.Name}";
            text.AppendLine($"  {head,-58} {f.Meaning}{(f.Default is null ? "" : $" [default: {f.Default}]")}");
        }
        text.AppendLine("Accepted and ignored (reported once when given):");
        foreach (var group in All.Where(f => f.Kind is FlagKind.IgnoredValue or FlagKind.IgnoredSwitch).GroupBy(f => f.Meaning))
            text.AppendLine($"  {string.Join(", ", group.Select(f => "--" + f.Name))}: {group.Key}");
        return text.ToString();
    }

    readonly Dictionary<string, string> values = new(StringComparer.Ordinal);
    readonly HashSet<string> switches = new(StringComparer.Ordinal);

    /// <summary>Flags given that have no effect, in the order given.</summary>
    public List<string> IgnoredGiven { get; } = [];

    /// <summary>Parses the arguments; an unknown flag is an error with the closest known flag suggested.</summary>
    public static MegatronFlags Parse(IReadOnlyList<string> args)
    {
        var flags = new MegatronFlags();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{arg}' (flags start with --)");
            string name = arg[2..].Replace('_', '-');
            string? inline = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }
            Flag? flag = ByName.GetValueOrDefault(name);
            if (flag is { Kind: FlagKind.IgnoredValue or FlagKind.IgnoredSwitch } && name != "mm-tool") flags.IgnoredGiven.Add("--" + name);
            if (flag?.Kind == FlagKind.Switch)
            {
                flags.switches.Add(name);
            }
            else if (flag?.Kind is FlagKind.Value or FlagKind.IgnoredValue)
            {
                string value = inline ?? (i + 1 < args.Count ? args[++i] : throw new ArgumentException($"--{name} needs a value"));
                // Megatron lists (e.g. --lora-target-modules a b c) take every following non-flag token.
                while (inline is null && name == "lora-target-modules" && i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    value += "," + args[++i];
                flags.values[name] = value;
            }
            else if (flag?.Kind == FlagKind.IgnoredSwitch)
            {
                if (inline is null && i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)) i++;   // an ignored flag's value
            }
            else
            {
                throw new ArgumentException($"unknown flag --{name}{Suggest(name)}");
            }
        }
        return flags;
    }

    static string Suggest(string name)
    {
        var known = All.Select(f => f.Name);
        var best = known.Select(k => (k, d: Distance(k, name))).OrderBy(p => p.d).First();
        return best.d <= Math.Max(2, name.Length / 4) ? $" (did you mean --{best.k}?)" : "";
    }

    static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        }
        return d[a.Length, b.Length];
    }

    /// <summary>Whether a switch was given.</summary>
    public bool Has(string name) => switches.Contains(name);

    /// <summary>A flag's text value (given or default), or null.</summary>
    public string? Text(string name) => values.TryGetValue(name, out string? v) ? v : ByName.GetValueOrDefault(name)?.Default;

    /// <summary>Whether a valued flag was given explicitly.</summary>
    public bool Given(string name) => values.ContainsKey(name);

    /// <summary>A required text value.</summary>
    public string Required(string name) => Text(name) ?? throw new ArgumentException($"--{name} is required");

    /// <summary>An integer value (null when unset).</summary>
    public int? Int(string name) => Text(name) is { } v
        ? int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) ? x : throw new ArgumentException($"--{name} '{v}' is not an integer")
        : null;

    /// <summary>A number value (null when unset).</summary>
    public double? Double(string name) => Text(name) is { } v
        ? double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && double.IsFinite(x) ? x : throw new ArgumentException($"--{name} '{v}' is not a finite number")
        : null;
}
