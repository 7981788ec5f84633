namespace OmniTune.Training.Arguments;

/// <summary>The resolved, validated training configuration (flags over data.json and model.json); immutable.</summary>
public sealed record TrainingArguments
{
    /// <summary>model.json path.</summary>
    public required string ModelJson { get; init; }

    /// <summary>data.json path.</summary>
    public required string DataJson { get; init; }

    /// <summary>Samples per forward pass.</summary>
    public int MicroBatchSize { get; init; } = 1;

    /// <summary>Samples per optimizer step.</summary>
    public int GlobalBatchSize { get; init; } = 1;

    /// <summary>Cutoff of the data pipeline.</summary>
    public int SeqLength { get; init; }

    /// <summary>Peak learning rate.</summary>
    public double Lr { get; init; }

    /// <summary>constant, linear or cosine.</summary>
    public string LrDecayStyle { get; init; } = "linear";

    /// <summary>Warm-up as a fraction of the decay samples.</summary>
    public double? LrWarmupFraction { get; init; }

    /// <summary>Warm-up in iterations (when no fraction).</summary>
    public int LrWarmupIters { get; init; }

    /// <summary>Learning rate at the start of warm-up.</summary>
    public double LrWarmupInit { get; init; }

    /// <summary>Floor of the decay.</summary>
    public double MinLr { get; init; }

    /// <summary>Iterations over which the rate decays (train-iters when null).</summary>
    public int? LrDecayIters { get; init; }

    /// <summary>AdamW weight decay (not applied to biases and norm weights).</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Gradient-norm clip; 0 disables clipping (the norm is still logged).</summary>
    public double ClipGrad { get; init; } = 1.0;

    /// <summary>Adam β₁.</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>Adam β₂.</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>Adam ε.</summary>
    public double AdamEps { get; init; } = 1e-8;

    /// <summary>Optimizer steps to run (in total, counting resumed ones).</summary>
    public int TrainIters { get; init; }

    /// <summary>Seed of the data order and of torch.</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>bf16 compute with fp32 master weights (GPU path; CPU trains in fp32).</summary>
    public bool Bf16 { get; init; }

    /// <summary>Checkpoint or Hugging Face folder to start from.</summary>
    public string? Load { get; init; }

    /// <summary>Iteration of <see cref="Load"/> to load (latest when null).</summary>
    public int? LoadIteration { get; init; }

    /// <summary>Checkpoint root to write.</summary>
    public string? Save { get; init; }

    /// <summary>Replace an earlier run found in <see cref="Save"/> (LLaMA-Factory's --overwrite_output_dir) instead of refusing it.</summary>
    public bool OverwriteOutputDir { get; init; }

    /// <summary>Save every this many iterations (and at the end).</summary>
    public int? SaveInterval { get; init; }

    /// <summary>Log every this many iterations.</summary>
    public int LogInterval { get; init; } = 100;

    /// <summary>Log tokens per sample.</summary>
    public bool LogTps { get; init; }

    /// <summary>Skip optimizer (and schedule) state when loading.</summary>
    public bool NoLoadOptim { get; init; }

    /// <summary>Skip RNG state when loading.</summary>
    public bool NoLoadRng { get; init; }

    /// <summary>Do not store optimizer state.</summary>
    public bool NoSaveOptim { get; init; }

    /// <summary>Do not store RNG state.</summary>
    public bool NoSaveRng { get; init; }

    /// <summary>Background batch workers.</summary>
    public int NumWorkers { get; init; } = 2;

    /// <summary>MiB of processed media kept in memory for their next use (0: none).</summary>
    public int MediaCacheMb { get; init; } = 1024;

    /// <summary>Loss averaging.</summary>
    public LossMode LossMode { get; init; } = LossMode.Default;

    /// <summary>auto, cpu, cuda or cuda:N.</summary>
    public string Device { get; init; } = "auto";

    /// <summary>Abort after this many non-finite steps in a row.</summary>
    public int MaxNanSteps { get; init; } = 5;

    /// <summary>Shuffle the data every epoch.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>LoRA settings; null for full fine-tuning.</summary>
    public OmniTune.Training.Lora.LoraSettings? Lora { get; init; }

    /// <summary>Base weights under a LoRA checkpoint (default: data.json's model_name_or_path).</summary>
    public string? LoadBaseModel { get; init; }

    /// <summary>ZeRO-1: optimizer state sharded over the data-parallel ranks.</summary>
    public bool UseDistributedOptimizer { get; init; }

    /// <summary>Data parallel: gradient buckets all-reduced during backward (Megatron's --overlap-grad-reduce).</summary>
    public bool OverlapGradReduce { get; init; }

    /// <summary>Elements per gradient bucket (Megatron's --ddp-bucket-size); null: max(40M, 1M × DP).</summary>
    public long? DdpBucketSize { get; init; }

    /// <summary>How long one collective may wait for its peers before the job ends (a dead or hung rank).</summary>
    public TimeSpan DistributedTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Check every N steps that the data-parallel replicas still hold identical parameters (null: at start only).</summary>
    public int? ReplicaCheckInterval { get; init; }

    /// <summary>TensorBoard event folder (none when null).</summary>
    public string? TensorboardDir { get; init; }

    /// <summary>Tensor-parallel size of the text decoder (--tensor-model-parallel-size); the encoders follow it.</summary>
    public int TensorSize { get; init; } = 1;

    /// <summary>--sequence-parallel: the decoder's norms and residuals on 1/TP of the sequence.</summary>
    public bool SequenceParallel { get; init; }

    /// <summary>Pipeline stages (--pipeline-model-parallel-size).</summary>
    public int PipelineSize { get; init; } = 1;

    /// <summary>--context-parallel-size: the text decoder's sequence split over this many ranks (load-balanced chunks).</summary>
    public int ContextSize { get; init; } = 1;

    /// <summary>
    /// --hetero-parallel: an encoder cut into fewer tensor-parallel parts than the decoder (model.json tp) has its own layout,
    /// data-parallel over more ranks — the decoder's tensor-parallel ranks of a micro-batch holding the same encoder part
    /// share its media items instead of each encoding all of them.
    /// </summary>
    public bool Hetero { get; init; }

    /// <summary>Virtual chunks per stage (--virtual-pipeline-model-parallel-size), when given.</summary>
    public int? VirtualPipelineSize { get; init; }

    /// <summary>Decoder layers per virtual stage (--num-layers-per-virtual-pipeline-stage), when given.</summary>
    public int? LayersPerVirtualStage { get; init; }

    /// <summary>Validate every N iterations (--eval-interval; Megatron's default 1000) when there is a validation set.</summary>
    public int EvalInterval { get; init; } = 1000;

    /// <summary>Global batches per validation (--eval-iters).</summary>
    public int EvalIters { get; init; } = 100;

    /// <summary>--peak-tflops: the accelerator's peak the MFU column is measured against (CUDA; CPU measures its GEMM rate).</summary>
    public double? PeakTflops { get; init; }

    /// <summary>--finetune: a training checkpoint given to --load contributes its weights only (Megatron's meaning).</summary>
    public bool Finetune { get; init; }

    /// <summary>--enable-dummy-optimizer (MindSpeed-MM's workaround for stages without trainable parameters; not needed here).</summary>
    public bool EnableDummyOptimizer { get; init; }

    /// <summary>Flags accepted without effect.</summary>
    public IReadOnlyList<string> IgnoredFlags { get; init; } = [];

    /// <summary>Micro-batches per optimizer step (data parallel size 1).</summary>
    public int GradientAccumulation => GlobalBatchSize / MicroBatchSize;

    /// <summary>Largest accepted --lr: anything above is a typo, not a learning rate.</summary>
    public const double MaxLearningRate = 1000;

    /// <summary>Smallest accepted --seq-length.</summary>
    public const int MinSeqLength = 2;

    /// <summary>Builds the configuration from flags; every inconsistency is an error naming the flag.</summary>
    public static TrainingArguments FromFlags(MegatronFlags f)
    {
        if (f.Int("expert-model-parallel-size") is int experts && experts != 1)
            throw new NotSupportedException($"--expert-model-parallel-size {experts}: the thinker has no experts; use 1");
        int context = f.Int("context-parallel-size") ?? 1;
        if (context < 1) throw new ArgumentException($"--context-parallel-size {context}: must be at least 1");
        if (f.Has("fp16")) throw new NotSupportedException("--fp16: fp16 training is not built; use --bf16 on GPUs (fp32 master weights) or the default fp32");
        int tensor = f.Int("tensor-model-parallel-size")!.Value;
        if (tensor < 1) throw new ArgumentException($"--tensor-model-parallel-size {tensor}: must be at least 1");
        if (f.Has("sequence-parallel") && tensor == 1) throw new ArgumentException("--sequence-parallel needs --tensor-model-parallel-size above 1 (it cuts the sequence across the tensor-parallel group)");
        int pipeline = f.Int("pipeline-model-parallel-size")!.Value;
        if (pipeline < 1) throw new ArgumentException($"--pipeline-model-parallel-size {pipeline}: must be at least 1");
        int? virtualSize = f.Int("virtual-pipeline-model-parallel-size"), layersPerVirtualStage = f.Int("num-layers-per-virtual-pipeline-stage");
        if (virtualSize is < 1) throw new ArgumentException($"--virtual-pipeline-model-parallel-size {virtualSize}: must be at least 1");
        if (layersPerVirtualStage is < 1) throw new ArgumentException($"--num-layers-per-virtual-pipeline-stage {layersPerVirtualStage}: must be at least 1");
        if ((virtualSize is not null || layersPerVirtualStage is not null) && pipeline == 1)
            throw new ArgumentException("a virtual pipeline needs --pipeline-model-parallel-size above 1");
        if (f.Has("calculate-per-sample-loss") && f.Has("calculate-per-token-loss"))
            throw new ArgumentException("--calculate-per-sample-loss and --calculate-per-token-loss exclude each other");
        int mbs = f.Int("micro-batch-size")!.Value;
        int gbs = f.Int("global-batch-size") ?? mbs;
        if (mbs < 1 || gbs < 1 || gbs % mbs != 0) throw new ArgumentException($"--global-batch-size {gbs} must be a positive multiple of --micro-batch-size {mbs}");
        string style = f.Text("lr-decay-style")!;
        if (style is not ("constant" or "linear" or "cosine")) throw new ArgumentException($"--lr-decay-style '{style}' is not supported (constant, linear, cosine)");
        var args = new TrainingArguments
        {
            ModelJson = f.Required("mm-model"),
            DataJson = f.Required("mm-data"),
            MicroBatchSize = mbs,
            GlobalBatchSize = gbs,
            SeqLength = f.Int("seq-length") ?? throw new ArgumentException("--seq-length is required"),
            Lr = f.Double("lr") ?? throw new ArgumentException("--lr is required"),
            LrDecayStyle = style,
            LrWarmupFraction = f.Double("lr-warmup-fraction"),
            LrWarmupIters = f.Int("lr-warmup-iters")!.Value,
            LrWarmupInit = f.Double("lr-warmup-init")!.Value,
            MinLr = f.Double("min-lr")!.Value,
            LrDecayIters = f.Int("lr-decay-iters"),
            WeightDecay = f.Double("weight-decay")!.Value,
            ClipGrad = f.Double("clip-grad")!.Value,
            AdamBeta1 = f.Double("adam-beta1")!.Value,
            AdamBeta2 = f.Double("adam-beta2")!.Value,
            AdamEps = f.Double("adam-eps")!.Value,
            TrainIters = f.Int("train-iters") ?? throw new ArgumentException("--train-iters is required"),
            Seed = f.Int("seed")!.Value,
            Bf16 = f.Has("bf16"),
            Load = f.Text("load"),
            LoadIteration = f.Int("ckpt-step"),
            Save = f.Text("save"),
            OverwriteOutputDir = f.Has("overwrite-output-dir"),
            SaveInterval = f.Int("save-interval"),
            LogInterval = f.Int("log-interval")!.Value,
            LogTps = f.Has("log-tps"),
            NoLoadOptim = f.Has("no-load-optim"),
            NoLoadRng = f.Has("no-load-rng"),
            NoSaveOptim = f.Has("no-save-optim"),
            NoSaveRng = f.Has("no-save-rng"),
            NumWorkers = f.Int("num-workers")!.Value,
            MediaCacheMb = f.Int("media-cache-mb")!.Value,
            LossMode = f.Has("calculate-per-token-loss") ? LossMode.PerToken : f.Has("calculate-per-sample-loss") ? LossMode.PerSample : LossMode.Default,
            Device = f.Text("device")!,
            MaxNanSteps = f.Int("max-nan-steps")!.Value,
            PipelineSize = pipeline,
            TensorSize = tensor,
            ContextSize = context,
            Hetero = f.Has("hetero-parallel"),
            SequenceParallel = f.Has("sequence-parallel"),
            VirtualPipelineSize = virtualSize,
            LayersPerVirtualStage = layersPerVirtualStage,
            EnableDummyOptimizer = f.Has("enable-dummy-optimizer"),
            Finetune = f.Has("finetune"),
            PeakTflops = f.Double("peak-tflops"),
            EvalInterval = f.Int("eval-interval") ?? 1000,
            EvalIters = f.Int("eval-iters")!.Value,
            Shuffle = !f.Has("no-shuffle"),
            IgnoredFlags = f.IgnoredGiven,
            LoadBaseModel = f.Text("load-base-model"),
            TensorboardDir = f.Text("tensorboard-dir"),
            UseDistributedOptimizer = f.Has("use-distributed-optimizer"),
            OverlapGradReduce = f.Has("overlap-grad-reduce"),
            DdpBucketSize = f.Int("ddp-bucket-size") is int bucket ? (bucket > 0 ? bucket : throw new ArgumentException("--ddp-bucket-size must be positive")) : null,
            DistributedTimeout = TimeSpan.FromMinutes(f.Double("distributed-timeout-minutes")!.Value),
            ReplicaCheckInterval = f.Int("check-weight-hash-across-dp-replicas-interval"),
            Lora = f.Given("lora-target-modules")
                ? new OmniTune.Training.Lora.LoraSettings(OmniTune.Training.Lora.LoraAdapters.ParseTargets(f.Text("lora-target-modules")!), f.Int("lora-r")!.Value, f.Double("lora-alpha")!.Value,
                    f.Double("lora-dropout")!.Value, f.Has("lora-save-full-weight"))
                : null,
        };
        if (args.Lora is { } lora)
        {
            foreach (string target in lora.TargetModules) _ = OmniTune.Training.Lora.LoraSettings.HuggingFaceNames(target);
            _ = lora.Flavour;   // refuses a mix of MindSpeed and Hugging Face names
            if (lora.Rank < 1) throw new ArgumentException("--lora-r must be at least 1");
        }
        if (args.Lr is < 0 or > MaxLearningRate) throw new ArgumentException($"--lr {args.Lr}: must be in [0, {MaxLearningRate}]");
        if (args.MinLr < 0 || args.MinLr > args.Lr) throw new ArgumentException($"--min-lr {args.MinLr} must be between 0 and --lr {args.Lr}");
        if (args.LrWarmupInit < 0 || args.LrWarmupInit > args.Lr) throw new ArgumentException($"--lr-warmup-init {args.LrWarmupInit} must be between 0 and --lr {args.Lr}");
        if (args.SeqLength < MinSeqLength) throw new ArgumentException($"--seq-length {args.SeqLength}: must be at least {MinSeqLength} (one prompt token and one answer token)");
        if (args.WeightDecay < 0) throw new ArgumentException($"--weight-decay {args.WeightDecay}: must be ≥ 0");
        if (args.AdamBeta1 is < 0 or >= 1 || args.AdamBeta2 is < 0 or >= 1) throw new ArgumentException($"--adam-beta1 {args.AdamBeta1} / --adam-beta2 {args.AdamBeta2}: each must be in [0, 1)");
        if (args.AdamEps <= 0) throw new ArgumentException($"--adam-eps {args.AdamEps}: must be positive");
        if (args.LrDecayIters is < 1) throw new ArgumentException($"--lr-decay-iters {args.LrDecayIters}: must be at least 1");
        if (args.LrWarmupIters < 0) throw new ArgumentException($"--lr-warmup-iters {args.LrWarmupIters}: must be ≥ 0");
        if (args.NumWorkers < 0) throw new ArgumentException($"--num-workers {args.NumWorkers}: must be ≥ 0");
        if (args.MediaCacheMb < 0) throw new ArgumentException($"--media-cache-mb {args.MediaCacheMb}: must be ≥ 0 (0 turns the cache off)");
        if (args.MaxNanSteps < 1) throw new ArgumentException($"--max-nan-steps {args.MaxNanSteps}: must be at least 1");
        if (args.LrWarmupFraction is double w && (w < 0 || w > 1)) throw new ArgumentException($"--lr-warmup-fraction {w} must be in [0, 1]");
        if (args.LrWarmupFraction is not null && f.Given("lr-warmup-iters")) throw new ArgumentException("--lr-warmup-fraction and --lr-warmup-iters exclude each other");
        if (args.TrainIters < 1) throw new ArgumentException("--train-iters must be at least 1");
        if (args.SaveInterval is < 1) throw new ArgumentException("--save-interval must be at least 1");
        if (args.DistributedTimeout <= TimeSpan.Zero) throw new ArgumentException("--distributed-timeout-minutes must be positive");
        if (args.ReplicaCheckInterval is < 1) throw new ArgumentException("--check-weight-hash-across-dp-replicas-interval must be at least 1");
        if (args.Lora is { SaveFullWeight: true } && (args.PipelineSize > 1 || args.TensorSize > 1))
            throw new NotSupportedException("--lora-save-full-weight with pipeline or tensor parallel is not built yet: save the adapters and merge them with convert mm-to-hf --hf-dir BASE");
        if (args.LogInterval < 1) throw new ArgumentException("--log-interval must be at least 1");
        if (args.PeakTflops is <= 0) throw new ArgumentException($"--peak-tflops {args.PeakTflops}: must be positive");
        if (args.EvalInterval < 1 || args.EvalIters < 1) throw new ArgumentException($"--eval-interval {args.EvalInterval} / --eval-iters {args.EvalIters}: each must be at least 1");
        if (args.SaveInterval is not null && args.Save is null) throw new ArgumentException("--save-interval needs --save");
        if (args.ClipGrad < 0) throw new ArgumentException("--clip-grad must be ≥ 0");
        return args;
    }
}
