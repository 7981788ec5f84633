using System.Globalization;

namespace OmniTune.Training.Arguments;

/// <summary>
/// Megatron / MindSpeed-MM style flags (<c>--micro-batch-size 1 --bf16 …</c>): the flags OmniTune implements, the
/// performance-only flags it accepts and ignores (listed once), the parallel flags not built yet (rejected unless 1),
/// and an error with a suggestion for anything else.
/// </summary>
public sealed class MegatronFlags
{
    /// <summary>Flags with a value, by name (without dashes), with their defaults as text (null = unset).</summary>
    static readonly Dictionary<string, string?> Valued = new(StringComparer.Ordinal)
    {
        ["mm-model"] = null,
        ["mm-data"] = null,
        ["mm-tool"] = null,
        ["micro-batch-size"] = "1",
        ["global-batch-size"] = null,
        ["seq-length"] = null,
        ["lr"] = null,
        ["lr-decay-style"] = "linear",
        ["lr-warmup-fraction"] = null,
        ["lr-warmup-iters"] = "0",
        ["lr-warmup-init"] = "0",
        ["min-lr"] = "0",
        ["weight-decay"] = "0.01",
        ["clip-grad"] = "1.0",
        ["adam-beta1"] = "0.9",
        ["adam-beta2"] = "0.999",
        ["adam-eps"] = "1e-8",
        ["train-iters"] = null,
        ["seed"] = "1234",
        ["load"] = null,
        ["save"] = null,
        ["save-interval"] = null,
        ["log-interval"] = "100",
        ["num-workers"] = "2",
        ["ckpt-step"] = null,
        ["load-base-model"] = null,
        ["tensor-model-parallel-size"] = "1",
        ["pipeline-model-parallel-size"] = "1",
        ["context-parallel-size"] = "1",
        ["virtual-pipeline-model-parallel-size"] = null,
        ["num-layers-per-virtual-pipeline-stage"] = null,
        ["expert-model-parallel-size"] = "1",
        ["device"] = "auto",
        ["max-nan-steps"] = "5",
        ["tensorboard-dir"] = null,
        ["lr-decay-iters"] = null,
        ["vocab-size"] = null,
        ["lora-r"] = "8",
        ["lora-alpha"] = "16",
        ["lora-dropout"] = "0",
        ["lora-target-modules"] = null,
        ["recompute-num-layers"] = null,
        ["recompute-granularity"] = null,
        ["recompute-method"] = null,
        ["eval-interval"] = null,
        ["eval-iters"] = null,
        ["distributed-backend"] = null,
        ["distributed-timeout-minutes"] = "10",
        ["check-weight-hash-across-dp-replicas-interval"] = null,
        ["make-vocab-size-divisible-by"] = null,
        ["tokenizer-type"] = null,
        ["normalization"] = null,
        ["ckpt-format"] = null,
        ["max-position-embeddings"] = null,
        ["num-layers"] = null,
        ["hidden-size"] = null,
        ["num-attention-heads"] = null,
        ["context-parallel-algo"] = null,
        ["attention-softmax-in-fp32"] = null,
        ["position-embedding-type"] = null,
        ["num-query-groups"] = null,
    };

    /// <summary>Switches OmniTune implements.</summary>
    static readonly HashSet<string> Switches = new(StringComparer.Ordinal)
    {
        "bf16", "fp16", "log-tps", "no-load-optim", "no-load-rng", "no-save-optim", "no-save-rng", "variable-seq-lengths",
        "calculate-per-sample-loss", "calculate-per-token-loss", "use-distributed-optimizer", "hetero-parallel", "enable-dummy-optimizer",
        "sequence-parallel", "finetune", "no-shuffle", "lora-save-full-weight", "overwrite-output-dir",
    };

    /// <summary>Performance or platform flags with no effect here; accepted and reported once.</summary>
    static readonly HashSet<string> Ignored = new(StringComparer.Ordinal)
    {
        "use-mcore-models", "use-flash-attn", "use-fused-rmsnorm", "swiglu", "use-fused-swiglu", "no-masked-softmax-fusion",
        "no-gradient-accumulation-fusion", "use-fused-rotary-pos-emb", "use-distributed-optimizer-overlap", "overlap-grad-reduce",
        "overlap-param-gather", "bf16-use-fp32-params", "use-cpu-initialization", "no-bias-swiglu-fusion", "no-bias-dropout-fusion",
        "no-rope-fusion", "disable-bias-linear", "add-qkv-bias", "group-query-attention", "untie-embeddings-and-output-weights",
        "use-rotary-position-embeddings", "no-load-ckpt-args", "log-throughput", "log-params-norm", "use-ascend-mc2",
        "reuse-fp32-param", "use-fused-ring-attention-update", "transformer-impl", "use-dist-ckpt",
        "distributed-backend", "make-vocab-size-divisible-by", "tokenizer-type", "normalization",
        "ckpt-format", "max-position-embeddings", "num-layers", "hidden-size", "num-attention-heads", "context-parallel-algo",
        "attention-softmax-in-fp32", "position-embedding-type", "num-query-groups", "vocab-size", "eval-interval", "eval-iters",
        "mm-tool", "recompute-granularity", "recompute-method", "recompute-num-layers",
    };

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
            bool valued = Valued.ContainsKey(name);
            if (Ignored.Contains(name) && name != "mm-tool") flags.IgnoredGiven.Add("--" + name);
            if (Switches.Contains(name))
            {
                flags.switches.Add(name);
            }
            else if (valued)
            {
                string value = inline ?? (i + 1 < args.Count ? args[++i] : throw new ArgumentException($"--{name} needs a value"));
                // Megatron lists (e.g. --lora-target-modules a b c) take every following non-flag token.
                while (inline is null && name == "lora-target-modules" && i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    value += "," + args[++i];
                flags.values[name] = value;
            }
            else if (Ignored.Contains(name))
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
        var known = Valued.Keys.Concat(Switches).Concat(Ignored);
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
    public string? Text(string name) => values.TryGetValue(name, out string? v) ? v : Valued.GetValueOrDefault(name);

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
