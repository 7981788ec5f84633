using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Core.Native;
using OmniTune.Core.Tensors;
using OmniTune.Data.Datasets;
using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Distributed;
using OmniTune.Distributed.Context;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Logging;
using OmniTune.Training.Lora;
using OmniTune.Training.Optimization;
using OmniTune.Training.Parallel;
using OmniTune.Training.Pipeline;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Distributed.Pipeline;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Training.Loop;

/// <summary>What a run did.</summary>
/// <param name="Iteration">Last completed iteration.</param>
/// <param name="StepLosses">Loss of every iteration run in this process.</param>
/// <param name="LastCheckpoint">Folder of the last checkpoint written, if any.</param>
/// <param name="ModelFolder">Hugging Face folder of the final weights (the last checkpoint's model), if saved.</param>
/// <param name="LogsHere">Whether this process is the one that logs (rank 0; always in a single process).</param>
public sealed record TrainingResult(int Iteration, IReadOnlyList<double> StepLosses, string? LastCheckpoint, string? ModelFolder, bool LogsHere = true);

/// <summary>
/// Single-process fine-tuning of the Qwen2.5-Omni thinker with MindSpeed-MM's configuration files. Build order:
/// device and seed → data.json → starting weights (HF folder or checkpoint) → processor and dataset → model → freezing
/// (model.json) → AdamW → resumed state → loader → loop (accumulate, clip, step, log, save).
/// </summary>
public sealed class Trainer
{
    readonly TrainingArguments args;
    readonly TextWriter log;
    readonly IProgress<(int Iteration, int Total)>? progress;

    Trainer(TrainingArguments args, TextWriter log, IProgress<(int Iteration, int Total)>? progress)
    {
        this.args = args;
        this.log = log;
        this.progress = progress;
    }

    /// <summary>Runs training; <paramref name="progress"/> hears of every completed iteration.</summary>
    public static TrainingResult Run(TrainingArguments args, TextWriter log, IProgress<(int Iteration, int Total)>? progress = null) =>
        new Trainer(args, log, progress).Run();

    TrainingResult Run()
    {
        using IProcessGroup world = ProcessGroups.World(args.DistributedTimeout);
        // Intra-op threads: OMP_NUM_THREADS when set, else the cores shared among the ranks of this machine. Set explicitly
        // (also for one process) so that torch and MKL agree: a GEMM reduced by another number of threads differs in its last bits.
        set_num_threads(int.TryParse(Environment.GetEnvironmentVariable("OMP_NUM_THREADS"), out int threads) && threads > 0
            ? threads : Math.Max(1, Environment.ProcessorCount / world.Size));
        if (world.Size > 1)
        {
            if (world.Rank != 0) return new Trainer(args, TextWriter.Null, null).RunOn(world) with { LogsHere = false };
        }
        return RunOn(world);
    }

    IProcessGroup? gradientGroup;
    IProcessGroup pipelineGroup = null!, worldGroup = null!, contextGroup = null!, dataContextGroup = null!;
    TimedProcessGroup tensorGroup = null!;
    ThinkerParallelism parallelism = null!;
    (IProcessGroup Vision, IProcessGroup Audio) encoderGroups;
    IReadOnlyList<EncodedSample> validationSamples = [];
    EncoderShares? encoderShares;
    PackingMode packing;
    Parameter? fusedHead;
    GradientBuckets? overlap;   // the run's, for its report (disposed by Run)
    MediaCache? media;   // the run's, for its report (disposed by Run)
    BatchCollator validationCollator = null!;
    PipelineSetup pipeline = null!;
    OptimizerStep optimizerStep = null!;
    GradientSynchronizer replicas = null!;
    List<(string Name, Parameter Parameter)> replicaParameters = [];
    PipelineStepRunner runner = null!;
    TrainingCheckpointWriter checkpoints = null!;

    TrainingResult RunOn(IProcessGroup world)
    {
        worldGroup = world;
        var dims = new ParallelDims(world.Size, tp: args.TensorSize, cp: args.ContextSize, pp: args.PipelineSize);
        using var parallel = TowerGroups.Build(world, "model", dims);
        var dp = parallel.Dp;
        pipelineGroup = parallel.Pp;
        contextGroup = parallel.Cp;
        dataContextGroup = parallel.DpCp;
        if (contextGroup.Size > 1)
        {
            log.WriteLine($"context parallel over {contextGroup.Size} ranks (group '{contextGroup.Name}'): each holds 2 of the decoder's {2 * contextGroup.Size} " +
                          "load-balanced sequence chunks, keys and values all-gathered; each encodes its share of the media items");
        }
        using var timedTensor = new TimedProcessGroup(parallel.Tp);
        tensorGroup = timedTensor;
        if (tensorGroup.Size > 1)
            log.WriteLine($"tensor parallel over {tensorGroup.Size} ranks (group '{tensorGroup.Name}'){(args.SequenceParallel ? ", sequence parallel in the text decoder" : "")}");
        if (args.GlobalBatchSize % (args.MicroBatchSize * dp.Size) != 0)
            throw new ArgumentException($"--global-batch-size {args.GlobalBatchSize} is not a multiple of --micro-batch-size {args.MicroBatchSize} × data-parallel size {dp.Size}");
        if (dp.Size > 1) log.WriteLine($"data parallel over {dp.Size} ranks (group '{dp.Name}'), {args.GlobalBatchSize / (args.MicroBatchSize * dp.Size)} micro-batches per rank and step");
        Device device = DeviceSelection.Resolve(args.Device);
        if (device.type == DeviceType.CUDA && tensorGroup.Size > 1)
            throw new NotSupportedException("--tensor-model-parallel-size above 1 is built for CPU tensors so far (its collectives run over MPI on host memory); on CUDA devices use data and pipeline parallel");
        if (device.type == DeviceType.CUDA && contextGroup.Size > 1)
            throw new NotSupportedException("--context-parallel-size above 1 is built for CPU tensors so far (its collectives run over MPI on host memory); on CUDA devices use data and pipeline parallel");
        using IProcessGroup? nccl = DeviceGradientGroup(dp, ref device);
        gradientGroup = nccl ?? dp;
        // bf16 compute with fp32 masters on GPUs; on CPU only when asked for explicitly (--device cpu): bf16 matmul is ~150x slower there.
        bool bf16 = args.Bf16 && (device.type == DeviceType.CUDA || args.Device == "cpu");
        if (args.Bf16 && !bf16) log.WriteLine("note: --bf16 ignored on CPU (bf16 matmul is ~150x slower here; pass --device cpu to force it); training in fp32");
        ScalarType dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        if (args.IgnoredFlags.Count > 0) log.WriteLine($"note: flags without effect here, ignored: {string.Join(" ", args.IgnoredFlags.Distinct())}");
        random.manual_seed(args.Seed);

        var (data, dataReport) = DataJsonLoader.Load(args.DataJson);
        if (dataReport.Describe() is { } unknownData) log.WriteLine(unknownData);
        var start = ResolveStart(data);
        if (args.Save is not null && world.Rank == 0)
        {
            bool resumesHere = start.IterationFolder is not null && Path.GetFullPath(Path.GetDirectoryName(start.IterationFolder)!) == Path.GetFullPath(args.Save);
            if (CheckpointStore.PrepareSaveFolder(args.Save, resumesHere ? start.State!.Iteration : null, args.OverwriteOutputDir) is { } note) log.WriteLine(note);
        }
        var (config, configReport) = Qwen25OmniConfigLoader.Load(start.ModelFolder);
        if (configReport.Describe() is { } unknownConfig) log.WriteLine(unknownConfig);
        var modelJson = ModelJsonConfig.Load(args.ModelJson, config.Thinker);
        pipeline = PipelineLayout.Plan(args, modelJson, config.Thinker);
        // Encoders at their own tensor-parallel size (model.json image_encoder.tp / audio_encoder.tp) have their own layout over
        // the same world — TP groups inside the decoder's, a data-parallel group of their own; under --hetero-parallel the
        // ranks of that group which read the same micro-batch share its media items.
        using TowerGroups? vision = EncoderLayout("vision", pipeline.VisionTensorSize, dims);
        using TowerGroups? audio = EncoderLayout("audio", pipeline.AudioTensorSize, dims);
        encoderGroups = (vision?.Tp ?? tensorGroup, audio?.Tp ?? tensorGroup);
        if (tensorGroup.Size > 1 && (vision ?? audio) is not null && !args.Hetero)
            log.WriteLine($"encoders: vision at tensor-parallel size {pipeline.VisionTensorSize}, audio at {pipeline.AudioTensorSize} (each computed on every rank of the decoder's group that holds the same parts)");
        encoderShares = args.Hetero ? HeteroShares(dp, vision, audio) : null;
        var plan = pipeline.Plan;
        var parts = PipelineLayout.PartsOf(plan, pipelineGroup.Rank);
        if (plan.Stages > 1)
        {
            log.WriteLine($"pipeline parallel over {plan.Stages} stages{(plan.Chunks > 1 ? $" × {plan.Chunks} virtual chunks" : "")} (group '{pipelineGroup.Name}'), " +
                          $"{(plan.Chunks > 1 ? "interleaved 1F1B" : "1F1B")} schedule:");
            foreach (StageSlot slot in plan.Slots) log.WriteLine($"  {slot}");
        }

        string processorFolder = data.DatasetParam.PreprocessParameters.ModelNameOrPath ?? start.ModelFolder;
        checkpoints = new TrainingCheckpointWriter(args, world, dp, pipelineGroup, tensorGroup, pipeline, config, start.ModelFolder, processorFolder, log, contextGroup);
        var processor = DataJsonLoader.Processor(data, processorFolder);
        // Packing cuts samples at --seq-length − 1, as LLaMA-Factory and MindSpeed-MM do (a pack always keeps one pad).
        packing = data.Packing;
        var build = new DatasetBuildOptions(packing == PackingMode.None ? args.SeqLength : args.SeqLength - 1);
        var dataset = SupervisedDatasetBuilder.Build(data, processor, build, log);
        log.WriteLine($"dataset: {dataset.Samples.Count} samples ({dataset.Invalid.Count} rejected){(dataset.FromCache ? ", from cache" : "")}");
        var (trainSamples, heldOut) = ValidationSet.Build(data, dataset, c => SupervisedDatasetBuilder.Build(c, processor, build, TextWriter.Null), args.Seed, log);
        if (packing != PackingMode.None)
        {
            int chunk = data.DatasetParam.BasicParameters.PreprocessingBatchSize, before = trainSamples.Count;
            trainSamples = SequencePacking.Pack(trainSamples, build.SeqLength, chunk);
            heldOut = SequencePacking.Pack(heldOut, build.SeqLength, chunk);
            log.WriteLine($"{(packing == PackingMode.Neat ? "neat packing (each sample attends to itself, its positions its own)" : "packing (each row one sequence)")}: " +
                          $"{before} training samples in {trainSamples.Count} row{(trainSamples.Count == 1 ? "" : "s")} of at most {build.SeqLength} tokens " +
                          $"({(trainSamples.Count == 0 ? 0 : trainSamples.Average(r => r.InputIds.Length) / build.SeqLength):P0} full on average; bin-packed per preprocessing_batch_size {chunk}); " +
                          "--global-batch-size and --micro-batch-size count rows");
        }
        validationSamples = heldOut;
        if (trainSamples.Count < args.GlobalBatchSize)
            throw new ArgumentException($"the dataset has {trainSamples.Count} usable training {(packing == PackingMode.None ? "samples" : "rows after packing")}, fewer than one global batch of {args.GlobalBatchSize}");
        if (validationSamples.Count is > 0 and var held && held < args.GlobalBatchSize)
            throw new ArgumentException($"the validation set has {held} samples, fewer than one global batch of {args.GlobalBatchSize} (validation runs whole global batches)");

        var model = LoadModel(start, device, dtype, parts);
        using (model)
        {
            var trainable = TrainableParameters.Apply(model, modelJson);
            using LoraAdapters? adapters = args.Lora is null ? null : LoraAdapters.Attach(model, args.Lora, tower => trainable.Any(p => TrainableParameters.TowerOf(p.Name) == tower), args.Seed, allowNone: pipelineGroup.Size > 1);
            if (adapters is not null)
            {
                parallelism.AddShards(adapters.Shards().Select(s => ("lora:" + s.Key, s.Shard)));
                foreach (var (_, p) in trainable) p.requires_grad = false;
                trainable = adapters.Parameters().Select(p => ("lora:" + p.Key, p.Parameter)).ToList();
                if (start.AdapterFolder is not null)
                    adapters.Load(start.AdapterFolder);   // any saved form and layout: each adapter takes its part
                log.WriteLine($"{adapters}{(start.AdapterFolder is null ? "" : $", adapters loaded from {start.AdapterFolder}")}");
            }
            // The LM head and the loss fused (LinearCrossEntropy) while the head is the model's own linear layer with no adapter on it.
            fusedHead = tensorGroup.Size == 1 && adapters?.Layers.ContainsKey(ThinkerWeightLayout.LmHeadModule) != true ? model.HeadWeight : null;
            model.Visual.Recompute = modelJson.VisionRecompute;
            model.AudioTower.Recompute = modelJson.AudioRecompute;
            model.TextModel.Recompute = modelJson.TextRecompute;
            if (SumOver(world, (long)trainable.Count) == 0) throw new ArgumentException($"{args.ModelJson}: every tower is frozen; there is nothing to train");
            if (trainable.Count == 0)
            {
                Console.Out.WriteLine($"[rank {world.Rank}] pipeline stage {pipelineGroup.Rank} holds no trainable parameters: it runs forward and backward and steps nothing " +
                    (args.EnableDummyOptimizer ? "(--enable-dummy-optimizer changes nothing here: OmniTune needs no dummy parameter for such a stage)" : "(no --enable-dummy-optimizer needed)"));
            }
            log.WriteLine($"trainable: {trainable.Sum(p => p.Parameter.numel()):N0} parameters in {trainable.Count} tensors " +
                          $"({string.Join(", ", trainable.Select(p => TrainableParameters.TowerOf(p.Name)).Distinct())})");
            log.WriteLine($"configuration: {JsonSerializer.Serialize(ResolvedConfig(modelJson))}");
            log.WriteLine($"memory allocator: {CachingAllocator.Describe()}");

            using MasterWeights? masters = bf16 && !args.UseDistributedOptimizer ? MasterWeights.Create(trainable) : null;
            // Before the distributed optimizer, whose shards follow the buckets.
            using GradientBuckets? buckets = Buckets(gradientGroup ?? dp, trainable, args.UseDistributedOptimizer, model.TiedLmHead);
            if (overlap is not null) model.TextModel.Progress = overlap.Watch(GradientBuckets.Tower.Decoder);
            using DistributedAdamW? distributed = args.UseDistributedOptimizer
                ? new DistributedAdamW(trainable, dp, args.AdamBeta1, args.AdamBeta2, args.AdamEps, args.WeightDecay, parallelism.CountsInNorm, gradientGroup, buckets,
                    parallelism.IsSequencePartial)
                : null;
            if (distributed is not null)
                log.WriteLine($"distributed optimizer: {distributed.ShardSize:N0} parameters of optimizer state per rank (ZeRO-1 over '{dp.Name}'" +
                              $", sharded by the {distributed.SegmentCount} segments of its gradient buckets)");
            var modelTrainable = trainable;   // the model's own parameters (gradients arrive here; replicas compare them)
            if (masters is not null)
            {
                trainable = masters.Masters;
                log.WriteLine("mixed precision: bf16 model, fp32 master weights and optimizer state");
            }
            // A stage without trainable parameters steps nothing; under the distributed optimizer this AdamW steps nothing
            // either — and must not hold moments for every parameter (TorchSharp makes them when it is built: twice the
            // model's size, which ZeRO-1 exists to save).
            using var placeholder = new Parameter(empty(0), requires_grad: true);
            var stepped = distributed is null ? trainable : [];
            var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>
            {
                new(stepped.Count == 0 ? [placeholder] : stepped.Where(p => TrainableParameters.Decays(p.Name, p.Parameter)).Select(p => p.Parameter), lr: args.Lr, weight_decay: args.WeightDecay),
                new(stepped.Where(p => !TrainableParameters.Decays(p.Name, p.Parameter)).Select(p => p.Parameter), lr: args.Lr, weight_decay: 0.0),
            };
            using var optimizer = new Optimization.AdamW(groups, args.Lr, args.AdamBeta1, args.AdamBeta2, args.AdamEps, args.WeightDecay);
            long masterValues = masters?.Masters.Sum(p => p.Parameter.numel()) ?? 0;
            log.WriteLine($"optimizer state on rank {world.Rank}: {optimizer.StateValues + (distributed?.StateValues ?? 0) + masterValues:N0} values " +
                          (distributed is { KeepsMasters: true } ? "(its fp32 master slice and moments)" : distributed is not null ? "(the moments of its slice; the fp32 model is its own master)" : masters is not null ? "(fp32 master weights and moments)" : "(moments)"));

            TrainerState state = start.State ?? new TrainerState();
            int scheduleOffset = 0;
            if (start.State is not null)
            {
                string folder = start.IterationFolder!;
                string prefix = checkpoints.OptimizerStatePrefix(folder);   // "" or this stage's rank folder
                string Name(string file) => prefix + file;
                if (!args.NoLoadOptim && distributed is not null)
                {
                    if (!File.Exists(Path.Combine(folder, Name(DistributedAdamW.FileName))))
                        throw new FileNotFoundException($"{Path.Combine(folder, Name(DistributedAdamW.FileName))}: no distributed optimizer state in the checkpoint (it was saved without --use-distributed-optimizer; pass --no-load-optim)");
                    CheckpointStore.LoadFile(folder, state, Name(DistributedAdamW.FileName), distributed.Load);
                }
                else if (!args.NoLoadOptim)
                {
                    if (!File.Exists(Path.Combine(folder, Name(CheckpointStore.OptimizerFile))))
                        throw new FileNotFoundException($"{Path.Combine(folder, Name(CheckpointStore.OptimizerFile))}: no optimizer state in the checkpoint (pass --no-load-optim to start the optimizer afresh, or --use-distributed-optimizer if it was saved with it)");
                    if (trainable.Count > 0) CheckpointStore.LoadFile(folder, state, Name(CheckpointStore.OptimizerFile), file => optimizer.load_state_dict(file));
                }
                else
                {
                    scheduleOffset = state.Iteration;   // Megatron: without optimizer state the schedule restarts
                }
                if (masters is not null)
                {
                    if (File.Exists(Path.Combine(folder, Name(MasterWeights.FileName)))) CheckpointStore.LoadFile(folder, state, Name(MasterWeights.FileName), masters.Load);
                    else log.WriteLine($"note: {Path.Combine(folder, Name(MasterWeights.FileName))} missing; master weights start from the bf16 model");
                }
                if (!args.NoLoadRng && state.RngState is not null) RestoreRng(Path.Combine(folder, CheckpointStore.StateFile), state.RngState);
                log.WriteLine($"resuming after iteration {state.Iteration} ({state.ConsumedSamples} samples) from {folder}");
            }
            if (state.Iteration >= args.TrainIters) log.WriteLine($"nothing to do: the checkpoint is at iteration {state.Iteration}, --train-iters is {args.TrainIters}");

            // Sequence parallel cuts the padded sequence into equal parts, context parallel into 2·CP chunks (and sequence
            // parallel each rank's share again): pad to a multiple of those as well as of 8.
            int padMultiple = Lcm(Lcm(8, 2 * contextGroup.Size), args.SequenceParallel ? tensorGroup.Size * contextGroup.Size : 1);
            using var mediaCache = media = args.MediaCacheMb > 0 ? new MediaCache((long)args.MediaCacheMb << 20) : null;
            var collator = new BatchCollator(processor.Settings, RopeIndexSettings.From(config.Thinker), config.Thinker.PadTokenId, padMultiple, packing, mediaCache);
            int batch = state.LoaderBatch;
            if (start.State is not null && state.DataParallelSize != dp.Size)
            {
                long samplesInEpoch = (long)state.LoaderBatch * args.MicroBatchSize * state.DataParallelSize;
                if (samplesInEpoch % (args.MicroBatchSize * dp.Size) != 0)
                    throw new ArgumentException($"the checkpoint stopped {samplesInEpoch} samples into an epoch, which is not a whole number of micro-batches at data-parallel size {dp.Size}");
                batch = (int)(samplesInEpoch / (args.MicroBatchSize * dp.Size));
                log.WriteLine($"resuming a data-parallel-{state.DataParallelSize} run at data-parallel size {dp.Size}");
            }
            validationCollator = collator;
            using var loader = new SupervisedDataLoader(trainSamples, collator, args.MicroBatchSize, args.Seed, args.Shuffle, args.NumWorkers,
                dp.Rank, dp.Size, new LoaderPosition(state.LoaderEpoch, batch), args.GlobalBatchSize);
            replicas = new GradientSynchronizer(dp, args.LossMode);
            optimizerStep = distributed is not null
                ? new ShardedAdamWStep(distributed, buckets!, args.LossMode, pipelineGroup, parallelism, contextGroup)
                : new AdamWStep(optimizer, modelTrainable, masters, new GradientSynchronizer(gradientGroup ?? dp, args.LossMode), pipelineGroup, parallelism, buckets);
            replicaParameters = modelTrainable;
            replicas.CheckReplicasAgree(modelTrainable);
            // Whole encoders are shared: by heterogeneous parallel over the decoder's TP ranks, else by context parallel over its group.
            bool Trains(string prefix) => modelTrainable.Any(p => (p.Name.StartsWith("lora:", StringComparison.Ordinal) ? p.Name[5..] : p.Name).StartsWith(prefix, StringComparison.Ordinal));
            encoderShares = encoderShares is not null ? encoderShares with { VisionTrains = Trains("visual."), AudioTrains = Trains("audio_tower.") }
                : contextGroup.Size > 1 ? new EncoderShares(contextGroup, contextGroup, SumGradient: true, Trains("visual."), Trains("audio_tower.")) : null;
            runner = new PipelineStepRunner(model, plan, pipelineGroup, device, args.SequenceParallel ? tensorGroup : null, contextGroup.Size > 1 ? contextGroup : null,
                encoderShares);
            if (overlap is not null)
            {
                // An encoder shared by heterogeneous parallel has its gradients summed over the sharing ranks after backward:
                // its buckets wait for that. Context parallel's sharing is summed by the buckets' own group.
                if (encoderShares?.Vision is null || encoderShares.SumGradient) model.Visual.Progress = overlap.Watch(GradientBuckets.Tower.Vision);
                if (encoderShares?.Audio is null || encoderShares.SumGradient) model.AudioTower.Progress = overlap.Watch(GradientBuckets.Tower.Audio);
                runner.BeforeForward = overlap.Forwarding;
                runner.BeforeBackward = overlap.Backwarding;
            }
            return Loop(model, trainable, optimizer, loader, state, scheduleOffset, processorFolder, modelJson, device, adapters, masters, dp, distributed);
        }
    }

    /// <summary>The peak resident memory of this process (Linux's VmHWM) and, under MPI, the largest over the ranks.</summary>
    void ReportPeakMemory()
    {
        long mine = ProcessMemory.Peak();
        using Tensor largest = tensor(new[] { mine });
        worldGroup.AllReduce(largest, ReduceOp.Max);
        if (mine > 0)
            log.WriteLine($"peak resident memory: {mine / (double)(1L << 30):F2} GiB{(worldGroup.Size > 1 ? $" on this rank, {largest.item<long>() / (double)(1L << 30):F2} GiB on the largest" : "")}");
    }

    /// <summary>Restores torch's CPU generator; a state of the wrong size or encoding is an error naming the file.</summary>
    static void RestoreRng(string stateFile, string encoded)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(encoded);
        }
        catch (FormatException)
        {
            throw new InvalidDataException($"{stateFile}: rng_state is not base64; the checkpoint is damaged (pass --no-load-rng to start the generator afresh)");
        }
        using Tensor current = random.get_rng_state();
        if (bytes.Length != current.numel())
            throw new InvalidDataException($"{stateFile}: rng_state has {bytes.Length} bytes, torch's CPU generator needs {current.numel()}; the checkpoint is damaged (pass --no-load-rng to start the generator afresh)");
        using Tensor state = tensor(bytes, ScalarType.Byte);
        random.set_rng_state(state);
    }

    /// <summary>
    /// Where a run starts: the folder with config.json (and tokenizer files), the weights (a Hugging Face folder or any
    /// MindSpeed-layout checkpoint, read straight into the model), and when resuming, the iteration and its state.
    /// </summary>
    sealed record Start(string ModelFolder, string? IterationFolder, TrainerState? State, string? AdapterFolder = null, Func<IThinkerTensorSource>? Weights = null);

    Start ResolveStart(DataJsonConfig data)
    {
        if (args.Load is string load)
        {
            var located = CheckpointLocator.Locate(load, args.LoadIteration, data.DatasetParam.PreprocessParameters.ModelNameOrPath);
            switch (located.Kind)
            {
                case CheckpointKind.Training:
                    {
                        string folder = located.IterationFolder!;
                        bool stages = CheckpointStore.IsStageCheckpoint(folder);
                        if (located.AdapterFolder is not null && args.Lora is not null)
                        {
                            string baseModel = args.LoadBaseModel ?? data.DatasetParam.PreprocessParameters.ModelNameOrPath
                                ?? throw new ArgumentException($"{located.AdapterFolder} holds LoRA adapters: pass --load-base-model with the base weights");
                            return new Start(baseModel, folder, CheckpointStore.ReadState(folder), located.AdapterFolder);
                        }
                        if (located.OpenWeights is null)
                            throw new ArgumentException($"{located.AdapterFolder} holds only LoRA adapters: pass the run's --lora-* flags (and --load-base-model) to continue it");
                        if (args.Finetune)
                        {
                            log.WriteLine($"--finetune: {folder} gives the weights; iteration, optimizer and RNG start afresh");
                            return new Start(located.ConfigFolder, null, null, Weights: stages ? located.OpenWeights : null);
                        }
                        if (args.Lora is not null)
                        {
                            log.WriteLine($"note: {folder} has no adapters; LoRA starts afresh on its weights");
                            return new Start(located.ConfigFolder, null, null, Weights: stages ? located.OpenWeights : null);
                        }
                        return new Start(located.ConfigFolder, folder, CheckpointStore.ReadState(folder), Weights: stages ? located.OpenWeights : null);
                    }
                case CheckpointKind.MindSpeed:
                    // Any TP/PP/VPP layout (e.g. convert hf-to-mm output, or a MindSpeed-MM training save): read straight into the model.
                    if (Path.GetFileName(located.IterationFolder) != "release")
                    {
                        log.WriteLine($"note: {located.IterationFolder} is a MindSpeed-MM (Megatron) training checkpoint: its model weights are loaded; its optimizer " +
                                      "state (Megatron's fp32 master copies and Adam moments by parameter index) and RNG state are not mapped onto OmniTune's, so " +
                                      "AdamW moments start at zero and the iteration count at 0, as with --finetune");
                    }
                    return new Start(located.ConfigFolder, null, null, Weights: located.OpenWeights);
                case CheckpointKind.HuggingFace:
                    return new Start(load, null, null);
                default:
                    throw new ArgumentException($"--load {load} holds LoRA adapters alone: pass the base model with --load-base-model and the run's --lora-* flags, " +
                                                "or --load a training checkpoint");
            }
        }
        string base_ = data.DatasetParam.PreprocessParameters.ModelNameOrPath
            ?? throw new ArgumentException("no starting weights: pass --load or set preprocess_parameters.model_name_or_path in data.json");
        if (!File.Exists(Path.Combine(base_, "config.json"))) throw new DirectoryNotFoundException($"{base_}: no config.json (model_name_or_path of {args.DataJson})");
        return new Start(base_, null, null);
    }

    Qwen25OmniThinkerForConditionalGeneration LoadModel(Start start, Device device, ScalarType dtype, ThinkerParts parts)
    {
        if (tensorGroup.Size > 1) return LoadParts(start, device, dtype, parts);
        parallelism = ThinkerParallelism.None(tensorGroup);
        if (start.Weights is null)
        {
            var (model, _, report) = ThinkerCheckpointLoader.Load(start.ModelFolder, device, dtype, parts);
            log.WriteLine($"model: {report.Describe()} from {start.ModelFolder} on {device}");
            return model;
        }
        using IThinkerTensorSource source = start.Weights();
        NoteLayout(source);
        var loaded = ThinkerSourceLoader.Load(source, device, dtype, parts);
        log.WriteLine($"model: {loaded.HuggingFaceParameters().Count()} tensors of this stage read from the MindSpeed-layout checkpoint {source.ConfigFolder} on {device}");
        return loaded;
    }

    /// <summary>
    /// Tensor parallel: the thinker is built, cut by the towers' plans (the encoders at the decoder's size unless model.json
    /// gives their own, MindSpeed-MM's vit_tp_size / audio_tp_size), and each rank reads only its parts of the cut tensors —
    /// from a checkpoint stored at these TP sizes, only its own rank files.
    /// </summary>
    Qwen25OmniThinkerForConditionalGeneration LoadParts(Start start, Device device, ScalarType dtype, ThinkerParts parts)
    {
        using IThinkerTensorSource source = start.Weights?.Invoke() ?? new HfTensorSource(start.ModelFolder);
        NoteLayout(source);
        var model = new Qwen25OmniThinkerForConditionalGeneration(source.Config.Thinker, source.TiedLmHead, device, dtype, parts);
        try
        {
            parallelism = ThinkerParallelism.Apply(model, tensorGroup, encoderGroups.Vision, encoderGroups.Audio, args.SequenceParallel);
            ThinkerSourceLoader.LoadInto(model, source, key => parallelism.Shards.TryGetValue(key, out var s) ? (s.Dim, s.Part, s.Parts) : null);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        log.WriteLine($"model: {model.HuggingFaceParameters().Count()} tensors of this rank ({parallelism.Shards.Count} of them tensor-parallel parts) read from {source.ConfigFolder} on {device}");
        return model;
    }

    /// <summary>
    /// A MindSpeed-layout checkpoint written for other TP sizes or pipeline cuts than this run's (the flags and model.json's
    /// tp / pipeline_num_layers) loads resharded; each difference is named with both values, in the conversion options' names.
    /// </summary>
    void NoteLayout(IThinkerTensorSource source)
    {
        if (source is not MmCheckpoint mm) return;
        var differences = mm.Layout.Differences(pipeline.Layout, "in the checkpoint", $"in this run (the flags and {args.ModelJson})");
        if (differences.Count == 0) return;
        log.WriteLine($"note: {source.ConfigFolder} was written for another layout — {string.Join("; ", differences)}: the weights are resharded as they load " +
                      "(convert reshard writes a copy in this run's layout)");
    }

    JsonObject ResolvedConfig(ModelJsonConfig modelJson)
    {
        var node = JsonSerializer.SerializeToNode(args)!.AsObject();
        node["model_json"] = modelJson.Raw.DeepClone();
        node["gradient_accumulation"] = args.GradientAccumulation;
        return node;
    }

    TrainingResult Loop(Qwen25OmniThinkerForConditionalGeneration model, List<(string Name, Parameter Parameter)> trainable, OptimizerHelper optimizer,
        SupervisedDataLoader loader, TrainerState state, int scheduleOffset, string processorFolder, ModelJsonConfig modelJson, Device device,
        LoraAdapters? adapters, MasterWeights? masters, IProcessGroup dp, DistributedAdamW? distributed)
    {
        var schedule = LearningRateSchedule.For(args);
        int iteration = state.Iteration, skipped = state.SkippedIterations, nanStreak = 0, lastSaved = state.Iteration, lastValidated = state.Iteration;
        long consumed = state.ConsumedSamples;
        CheckpointContents Contents(int at) => new(model, optimizer, adapters, masters, distributed, () => StateAt(loader, at, consumed, skipped, modelJson, dp));
        int microBatches = args.GlobalBatchSize / (args.MicroBatchSize * dp.Size);
        double peakGflops = PeakGflops(device);   // per rank; MFU divides by every rank's
        bool visionTrains = !modelJson.FreezeVisionEncoder || adapters is not null, audioTrains = !modelJson.FreezeAudioEncoder || adapters is not null;
        bool logs = worldGroup.Rank == 0;   // one rank writes the files (and prints)
        string? metrics = args.Save is null || !logs ? null : Path.Combine(args.Save, CheckpointStore.MetricsFile);
        using var training = new TrainingLog(log, metrics, args.LogTps, logs ? args.TensorboardDir : null);
        var stepLosses = new List<double>();
        string? lastCheckpoint = null;
        double intervalLoss = 0, intervalMs = 0, intervalTokens = 0, intervalPadded = 0, intervalFlops = 0, lastNorm = 0, lastLr = 0;
        int intervalSteps = 0, intervalMicro = 0, intervalIterations = 0;
        double waitMs = 0, syncMs = 0, runMs = 0;   // data parallel: waiting for the slowest rank, communication, whole steps
        model.train();
        adapters?.Train(true);
        while (iteration < args.TrainIters)
        {
            var clock = Stopwatch.StartNew();
            iteration++;
            var batches = Enumerable.Range(0, microBatches).Select(_ => loader.Next()).ToList();
            double stepLoss = 0;
            long stepTokens = args.LossMode == LossMode.PerToken ? SumOver(dp, batches.Sum(b => StepLoss.CountedTokens(b.Labels))) : 0;
            optimizerStep.ZeroGradients();
            using (var scope = NewDisposeScope())
            {
                stepLoss = runner.Run(batches, (hidden, batch) => MicroBatchLoss(model, hidden, batch, microBatches, stepTokens));
            }
            foreach (TrainingBatch batch in batches)
            {
                intervalTokens += batch.RealTokens;
                intervalFlops += MicroBatchFlops(model.Config, batch, visionTrains, audioTrains);
                intervalPadded += batch.Inputs.InputIds.shape[1];
                intervalMicro++;
                batch.Dispose();
            }
            var sync = Stopwatch.StartNew();
            if (dp.Size > 1) dp.Barrier();   // separates load imbalance from communication in the report below
            waitMs += sync.Elapsed.TotalMilliseconds;
            stepLoss = SumOver(pipelineGroup, stepLoss);   // the loss is known on the last stage
            stepLoss = SumOver(contextGroup, stepLoss);    // each context-parallel rank holds its tokens' share
            if (distributed is null) SumContextGradients();   // the distributed optimizer sums its shards over the context-parallel ranks
            SumSharedEncoderGradients();
            stepLoss = args.LossMode == LossMode.PerToken ? SumOver(dp, stepLoss) : SumOver(dp, stepLoss) / dp.Size;
            double lr = schedule.ForIteration(iteration - scheduleOffset, args.GlobalBatchSize);
            double norm = optimizerStep.Step(lr, args.ClipGrad, double.IsFinite(stepLoss));
            consumed += args.GlobalBatchSize;
            if (!double.IsFinite(stepLoss) || !double.IsFinite(norm))
            {
                skipped++;
                nanStreak++;
                optimizerStep.Skip();
                log.WriteLine($"warning: iteration {iteration} has a non-finite {(double.IsFinite(stepLoss) ? "gradient norm" : "loss")}; the step is skipped ({nanStreak} in a row)");
                if (nanStreak >= args.MaxNanSteps)
                    throw new InvalidOperationException($"{nanStreak} non-finite steps in a row (--max-nan-steps {args.MaxNanSteps}); stopping. Lower --lr or check the data around iteration {iteration}.");
            }
            else
            {
                nanStreak = 0;   // the step clipped, updated (and gathered, when sharded)
                stepLosses.Add(stepLoss);
                intervalLoss += stepLoss;
                intervalSteps++;
            }
            if (args.ReplicaCheckInterval is int check && iteration % check == 0 && dp.Size > 1)
            {
                replicas.CheckReplicasAgree(replicaParameters, iteration);
                log.WriteLine($"replica check after iteration {iteration}: parameters identical on {dp.Size} ranks");
            }
            lastNorm = norm;
            lastLr = lr;
            intervalMs += clock.Elapsed.TotalMilliseconds;
            runMs += clock.Elapsed.TotalMilliseconds;
            intervalIterations++;
            progress?.Report((iteration, args.TrainIters));
            bool logNow = iteration % args.LogInterval == 0 || iteration == args.TrainIters;
            if (logNow)
            {
                intervalTokens = SumOver(dp, intervalTokens);
                intervalFlops = SumOver(dp, intervalFlops);   // every stage and TP rank of a replica reads the same micro-batches: count them once
                int steps = Math.Max(1, intervalSteps);
                double seconds = intervalMs / 1000;
                training.Step(new StepRecord(iteration, args.TrainIters, consumed, intervalMs / intervalIterations,
                    lastLr, args.GlobalBatchSize, intervalPadded / Math.Max(1, intervalMicro) / args.MicroBatchSize, intervalLoss / steps, lastNorm, skipped,
                    intervalTokens / seconds, intervalFlops / seconds / 1e9 / (peakGflops * worldGroup.Size), ProcessMemory.Rss() / (double)(1L << 30)));
                (intervalLoss, intervalMs, intervalTokens, intervalPadded, intervalFlops, intervalSteps, intervalMicro, intervalIterations) = (0, 0, 0, 0, 0, 0, 0, 0);
            }
            if (validationSamples.Count > 0 && iteration % args.EvalInterval == 0)
            {
                training.Validation(iteration, Validate(model, adapters, dp, device));
                lastValidated = iteration;
            }
            if (args.Save is not null && args.SaveInterval is int every && iteration % every == 0)
            {
                lastCheckpoint = checkpoints.Save(iteration, Contents(iteration));
                lastSaved = iteration;
            }
        }
        if (validationSamples.Count > 0 && lastValidated != iteration) training.Validation(iteration, Validate(model, adapters, dp, device));
        int stepsRun = iteration - state.Iteration;
        syncMs = optimizerStep.CommunicationMilliseconds;
        if (dp.Size > 1 && stepsRun > 0)
            log.WriteLine($"data-parallel communication: {syncMs / stepsRun:F1} ms per step, {100 * syncMs / runMs:F1} % of step time " +
                (distributed is null ? (overlap is not null ? "(the gradient all-reduce's exposed part: waiting for it after backward)" : "(gradient all-reduce)")
                    : overlap is not null ? "(distributed optimizer step: waiting for the overlapped reduce-scatters, sharded AdamW, all-gather)" : "(distributed optimizer step: reduce-scatter, sharded AdamW, all-gather)") +
                $"; waiting for the slowest rank: {waitMs / stepsRun:F1} ms per step, {100 * waitMs / runMs:F1} %");
        if (overlap is not null && stepsRun > 0)
            log.WriteLine($"overlapped gradient reduction: {overlap.Started.Early} of {overlap.Started.All} bucket {overlap.Collective}s started during backward; " +
                          $"waiting for them after backward: {overlap.ExposedMilliseconds / stepsRun:F1} ms per step, {100 * overlap.ExposedMilliseconds / runMs:F1} % of step time");
        if (pipelineGroup.Size > 1 && stepsRun > 0) ReportPipeline(stepsRun);
        if (media?.Counts is { } counts && counts.Hits + counts.Misses > 0)
            log.WriteLine($"media cache: {counts.Hits} of {counts.Hits + counts.Misses} media loads{(worldGroup.Size > 1 ? " of this rank" : "")} found processed in memory (--media-cache-mb {args.MediaCacheMb})");
        ReportPeakMemory();
        if (tensorGroup.Size > 1 && stepsRun > 0)
            log.WriteLine($"tensor-parallel communication: {tensorGroup.Milliseconds / stepsRun:F1} ms per step, {100 * tensorGroup.Milliseconds / runMs:F1} % of step time " +
                          $"({tensorGroup.Calls / stepsRun} collectives per step in forward, backward and the loss)");
        if (args.Save is not null && lastSaved != iteration)
            lastCheckpoint = checkpoints.Save(iteration, Contents(iteration));
        if (args.Save is not null && stepLosses.Count > 0 && logs)
        {
            string plot = Path.Combine(args.Save, CheckpointStore.PlotFile);
            TrainingLog.SavePlot(plot, metrics!, state.Iteration + 1, stepLosses);
            log.WriteLine($"loss curve: {plot}");
        }
        string? modelFolder = lastCheckpoint is null || pipeline.RankFolders ? null : Path.Combine(lastCheckpoint, CheckpointStore.ModelFolder);
        if (adapters is not null && !adapters.Settings.SaveFullWeight) modelFolder = null;   // adapters only: not a standalone model
        return new TrainingResult(iteration, stepLosses, lastCheckpoint, modelFolder);
    }

    /// <summary>
    /// A micro-batch's loss from the decoder's final hidden states: the LM head and cross-entropy in chunks of positions
    /// (each recomputed in backward; one fused function when the head is plain, <see cref="fusedHead"/>), except under
    /// sequence parallel, where the hidden states are cut along the sequence and the column-parallel head gathers them whole.
    /// </summary>
    /// Under context parallel the hidden states are this rank's chunks and the loss its share (labels shifted before the split).
    (Tensor Backward, double Logged) MicroBatchLoss(Qwen25OmniThinkerForConditionalGeneration model, Tensor hidden, TrainingBatch batch, int microBatches, long stepTokens)
    {
        using var scope = NewDisposeScope();
        Tensor labels = batch.Labels.to(hidden.device);
        Tensor? segments = batch.Segments?.to(hidden.device);
        var context = contextGroup.Size > 1 ? new ContextSplit(contextGroup, labels.shape[1]) : null;
        var (backward, logged) = args.SequenceParallel
            ? StepLoss.ForMicroBatch(model.Head(hidden), labels, args.LossMode, microBatches, stepTokens, tensorGroup, context, segments)
            : StepLoss.ForMicroBatch(hidden, model.Head, model.Config.Text.VocabSize / tensorGroup.Size, labels, args.LossMode, microBatches, stepTokens, tensorGroup,
                context: context, segments: segments, headWeight: fusedHead);
        return (backward.MoveToOuterDisposeScope(), logged);
    }

    /// <summary>
    /// The gradient buckets (<see cref="GradientBuckets"/>): under the distributed optimizer (<paramref name="sharded"/>)
    /// always — its shards follow them and they are reduce-scattered by bucket, so no flat copy of every gradient is made —
    /// and with --overlap-grad-reduce, where the data-parallel all-reduce (or reduce-scatter) of each bucket starts during
    /// the last micro-batch's backward once the decoder's, vision encoder's or audio encoder's layers it holds are done:
    /// for data parallel with tensor parallel, pipeline stages and heterogeneous parallel (the shared encoders' buckets
    /// start after backward, once their gradients are summed over the sharing ranks). Under
    /// context parallel the overlapped buckets are all-reduced over the data- and context-parallel ranks together
    /// (Megatron's group), which sums what context parallel summed apart, averaged over the data-parallel ranks only; the
    /// distributed optimizer's buckets are reduce-scattered over the data-parallel ranks, and it sums its shards over the
    /// context-parallel ones (and sequence parallel's partial ones over the tensor-parallel ranks). An untied token
    /// embedding is reduced by the rows the step's tokens touched. Sets <see cref="overlap"/> when overlapping.
    /// </summary>
    GradientBuckets? Buckets(IProcessGroup gradients, IReadOnlyList<(string Name, Parameter Parameter)> parameters, bool sharded, bool tiedHead)
    {
        // Context parallel: CPU only, so 'gradients' is the MPI data-parallel group. The distributed optimizer shards over it
        // alone and sums its shards over the context-parallel ranks.
        IProcessGroup group = args.OverlapGradReduce && contextGroup.Size > 1 && !sharded ? dataContextGroup : gradients;
        bool overlapping = args.OverlapGradReduce && group.Size > 1;
        if (args.OverlapGradReduce && !overlapping)
            log.WriteLine($"note: --overlap-grad-reduce has no effect here (there is one data-parallel rank): gradients are {(sharded ? "reduce-scattered" : "all-reduced")} after backward");
        if (!overlapping && !sharded) return null;
        var buckets = new GradientBuckets(group, args.LossMode, parameters, args.DdpBucketSize ?? GradientBuckets.DefaultBucketSize(gradients.Size),
            rowSparse: tiedHead ? null : ThinkerWeightLayout.TextPrefix + "embed_tokens.weight", scatter: sharded, averageOver: gradients.Size);
        if (overlapping)
        {
            overlap = buckets;
            log.WriteLine($"overlapped gradient reduction over '{group.Name}': {buckets.Describe()}, each {buckets.Collective} started once backward has passed its layers");
        }
        else log.WriteLine($"gradient buckets over '{group.Name}': {buckets.Describe()}, each {buckets.Collective} after backward");
        return buckets;
    }

    /// <summary>
    /// An encoder's own layout when it is cut into fewer tensor-parallel parts than the decoder (<paramref name="size"/>
    /// dividing it): TP <paramref name="size"/> × DP over the same world and stages; with --hetero-parallel also the group of
    /// its data-parallel ranks that read one decoder micro-batch. Null when the encoder is cut like the decoder.
    /// </summary>
    TowerGroups? EncoderLayout(string tower, int size, ParallelDims decoder) =>
        size == decoder.Tp ? null
            : TowerGroups.Build(worldGroup, tower, new ParallelDims(decoder.World, tp: size, pp: decoder.Pp), args.Hetero ? decoder : null);

    /// <summary>
    /// --hetero-parallel: an encoder cut into fewer tensor-parallel parts than the decoder (model.json tp below
    /// --tensor-model-parallel-size, 1 for whole) is data-parallel over more ranks than the decoder: the decoder's
    /// tensor-parallel ranks of one micro-batch holding the same encoder part each encode a share of its media items.
    /// MindSpeed-MM's rule is checked: the decoder's DP × micro-batch size must be divisible by the encoder's DP.
    /// With pipeline stages a shared encoder must sit whole on one stage.
    /// </summary>
    EncoderShares? HeteroShares(IProcessGroup dp, TowerGroups? vision, TowerGroups? audio)
    {
        IProcessGroup? Share(string tower, TowerGroups? groups, bool split)
        {
            if (groups is null) return null;   // cut like the decoder: nothing to share
            if (split)
            {
                throw new NotSupportedException($"--hetero-parallel: {tower}'s layers are spread over pipeline stages by its pipeline_num_layers in {args.ModelJson}; " +
                                                "an encoder shared by heterogeneous parallel must sit whole on one stage (give all its layers to one stage)");
            }
            int encoderDp = groups.Dims.Dp / contextGroup.Size;   // context-parallel ranks encode alike
            long batch = (long)dp.Size * args.MicroBatchSize;
            if (batch % encoderDp != 0)
            {
                throw new ArgumentException($"--hetero-parallel: the decoder's data-parallel size × micro-batch size ({dp.Size} × {args.MicroBatchSize} = {batch}) is not divisible by " +
                                            $"the {tower}'s data-parallel size {encoderDp} ({groups.Dims.World} ranks / its tp {groups.Dims.Tp}" +
                                            $"{(groups.Dims.Pp > 1 ? $" / {groups.Dims.Pp} stages" : "")}{(contextGroup.Size > 1 ? $" / cp {contextGroup.Size}" : "")}) — MindSpeed-MM's rule; raise --micro-batch-size");
            }
            return groups.Share;
        }
        var slots = pipeline.Plan.Slots;
        var shares = new EncoderShares(
            Share("image_encoder", vision, slots.Count(s => s.Vision.Count > 0 || s.PatchEmbed || s.Merger) > 1),
            Share("audio_encoder", audio, slots.Count(s => s.Audio.Count > 0 || s.AudioFront || s.AudioBack) > 1));
        string Describe(TowerGroups? groups) => groups is null ? $"cut like the decoder (tp {tensorGroup.Size})"
            : $"tp {groups.Dims.Tp}, data-parallel over {groups.Dims.Dp / contextGroup.Size} ranks (its media items shared by {groups.Share!.Size} ranks per micro-batch, group '{groups.Share.Name}')";
        log.WriteLine($"heterogeneous parallel: vision encoder {Describe(vision)}, audio encoder {Describe(audio)}");
        return shares;
    }

    /// <summary>
    /// Heterogeneous parallel: a shared encoder's parameter gradients come, on each rank, from its own media items only:
    /// summed over the sharing group (a rank that encoded nothing adds zeros) before the step.
    /// </summary>
    void SumSharedEncoderGradients()
    {
        if (encoderShares is null || encoderShares.SumGradient) return;   // context parallel's sum covers every parameter
        foreach (var (name, parameter) in replicaParameters)
        {
            string key = name.StartsWith("lora:", StringComparison.Ordinal) ? name["lora:".Length..] : name;
            IProcessGroup? group = key.StartsWith("visual.", StringComparison.Ordinal) ? encoderShares.Vision
                : key.StartsWith("audio_tower.", StringComparison.Ordinal) ? encoderShares.Audio : null;
            if (group is null) continue;
            if (parameter.grad is null) parameter.grad = zeros_like(parameter).DetachFromDisposeScope();
            group.AllReduce(parameter.grad);
        }
    }

    /// <summary>
    /// Context parallel: every rank of the group holds the same parameters and back-propagated only its tokens' share of
    /// the loss, so the gradients are summed over the group (before the data-parallel average, the tensor-parallel
    /// partial sums and the clipping norm).
    /// </summary>
    void SumContextGradients()
    {
        if (contextGroup.Size == 1 || overlap is not null) return;   // the overlapped reduction sums over data- and context-parallel ranks at once
        foreach (var (_, parameter) in replicaParameters)
        {
            // A rank whose share of the media items was empty has no gradient for the encoder: it adds zeros (every rank joins).
            if (parameter.grad is null) parameter.grad = zeros_like(parameter).DetachFromDisposeScope();
            contextGroup.AllReduce(parameter.grad);
        }
    }

    /// <summary>
    /// Mean loss over --eval-iters global batches of the validation set — the same batches every time (the set in order,
    /// wrapping), so successive values compare — forward only, across every stage and data-parallel rank, in the run's
    /// loss mode. Dropout is off meanwhile; no random state is consumed, so a resumed run validates alike.
    /// </summary>
    double Validate(Qwen25OmniThinkerForConditionalGeneration model, LoraAdapters? adapters, IProcessGroup dp, Device device)
    {
        model.eval();
        adapters?.Train(false);
        try
        {
            int microBatches = args.GlobalBatchSize / (args.MicroBatchSize * dp.Size);
            using var loader = new SupervisedDataLoader(validationSamples, validationCollator, args.MicroBatchSize, args.Seed, shuffle: false, workers: 0,
                dp.Rank, dp.Size, new LoaderPosition(0, 0), args.GlobalBatchSize);
            double total = 0;
            for (int i = 0; i < args.EvalIters; i++)
            {
                var batches = Enumerable.Range(0, microBatches).Select(_ => loader.Next()).ToList();
                long tokens = args.LossMode == LossMode.PerToken ? SumOver(dp, batches.Sum(b => StepLoss.CountedTokens(b.Labels))) : 0;
                double value;
                using (var scope = NewDisposeScope())
                    value = runner.Evaluate(batches, (hidden, batch) => MicroBatchLoss(model, hidden, batch, microBatches, tokens).Logged);
                foreach (TrainingBatch batch in batches) batch.Dispose();
                value = SumOver(pipelineGroup, value);
                value = SumOver(contextGroup, value);
                total += args.LossMode == LossMode.PerToken ? SumOver(dp, value) : SumOver(dp, value) / dp.Size;
            }
            return total / args.EvalIters;
        }
        finally
        {
            model.train();
            adapters?.Train(true);
        }
    }

    TrainerState StateAt(SupervisedDataLoader loader, int iteration, long consumed, int skipped, ModelJsonConfig modelJson, IProcessGroup dp) => new()
    {
        Iteration = iteration,
        ConsumedSamples = consumed,
        LoaderEpoch = loader.Position.Epoch,
        LoaderBatch = loader.Position.Batch,
        RngState = args.NoSaveRng ? null : Convert.ToBase64String(random.get_rng_state().bytes.ToArray()),
        SkippedIterations = skipped,
        DataParallelSize = dp.Size,
        Config = ResolvedConfig(modelJson),
    };

    /// <summary>
    /// Per stage, the time spent computing and the share spent waiting for a neighbour (the pipeline bubble plus
    /// communication), gathered over the pipeline group and printed by rank 0.
    /// </summary>
    void ReportPipeline(int steps)
    {
        using Tensor mine = tensor(new[] { runner.BusyMilliseconds, runner.WaitMilliseconds });
        using Tensor all = pipelineGroup.AllGather(mine.reshape(1, 2));
        double[] values = all.data<double>().ToArray();
        log.WriteLine($"pipeline report over {steps} steps ({pipeline.Plan.Stages} stages{(pipeline.Plan.Chunks > 1 ? $" × {pipeline.Plan.Chunks} chunks" : "")}):");
        for (int stage = 0; stage < pipelineGroup.Size; stage++)
        {
            double busy = values[2 * stage], wait = values[2 * stage + 1];
            log.WriteLine($"  stage {stage}: busy {busy / steps:F1} ms per step, idle {wait / steps:F1} ms per step ({100 * wait / Math.Max(1e-9, busy + wait):F1} % bubble and transfers)");
        }
    }

    static int Lcm(int a, int b) => a / (int)System.Numerics.BigInteger.GreatestCommonDivisor(a, b) * b;

    /// <summary>Sum of a scalar over the group.</summary>
    static double SumOver(IProcessGroup group, double value) => GradientSynchronizer.SumOver(group, value);

    static long SumOver(IProcessGroup dp, long value) => (long)SumOver(dp, (double)value);

    /// <summary>
    /// On CUDA with several ranks: each rank takes the GPU of its local rank, and gradients are all-reduced over NCCL — or,
    /// with the distributed optimizer, reduce-scattered and its shards all-gathered over it (the CPU group keeps the scalar
    /// reductions). Null on CPU or with one rank. Written for GPU machines; never run here.
    /// </summary>
    IProcessGroup? DeviceGradientGroup(IProcessGroup dp, ref Device device)
    {
        if (device.type != DeviceType.CUDA || dp.Size == 1) return null;
        int localRank = int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK"), out int r) ? r : 0;
        if (device.index < 0) device = new Device(DeviceType.CUDA, localRank);
        var group = NcclProcessGroup.Create(dp, $"{dp.Name}.nccl", device.index);
        log.WriteLine($"gradients all-reduced over NCCL (group '{group.Name}'), each rank on cuda:<local rank>");
        return group;
    }

    /// <summary>
    /// The rate one rank's MFU is measured against (GFLOP/s): on CPU the fp32 GEMM rate measured now at the bench's size
    /// (with this rank's threads); on CUDA --peak-tflops, else the data-sheet bf16 peak of the GPU nvidia-smi names (NaN
    /// when unknown: MFU then reads NaN).
    /// </summary>
    double PeakGflops(Device device)
    {
        if (device.type != DeviceType.CUDA) return GemmRate.Reference();
        if (args.PeakTflops is double given) return given * 1000;
        try
        {
            var start = new ProcessStartInfo("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader", "-i", Math.Max(0, (int)device.index).ToString(System.Globalization.CultureInfo.InvariantCulture)])
            {
                RedirectStandardOutput = true,
            };
            using var process = Process.Start(start)!;
            string name = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit();
            if (GemmRate.PeakOf(name) is double peak) return peak * 1000;
            log.WriteLine($"note: no known peak for '{name}'; pass --peak-tflops for the MFU column");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            log.WriteLine("note: nvidia-smi not found; pass --peak-tflops for the MFU column");
        }
        return double.NaN;
    }

    /// <summary>
    /// Model FLOPs of one micro-batch (<see cref="ThinkerFlops"/>): each row's real tokens — each packed sample's, under neat
    /// packing, whose attention stays inside each sample (the mask numbers them) — each image, video and audio.
    /// </summary>
    static double MicroBatchFlops(Qwen25OmniThinkerConfig c, TrainingBatch batch, bool visionTrains, bool audioTrains)
    {
        using var scope = NewDisposeScope();
        ThinkerInputs inputs = batch.Inputs;
        long width = inputs.InputIds.shape[1];
        long[] rows = inputs.AttentionMask is { } mask
            ? mask.to(ScalarType.Int64).data<long>().ToArray().Chunk((int)width)
                .SelectMany(row => row.Where(v => v != 0).GroupBy(v => v).Select(g => (long)g.Count())).ToArray()
            : Enumerable.Repeat(width, (int)inputs.InputIds.shape[0]).ToArray();
        int[] audio = inputs.FeatureAttentionMask is { } features ? features.sum(1).to(ScalarType.Int64).data<long>().Select(v => (int)v).ToArray() : [];
        return ThinkerFlops.MicroBatch(c, rows, inputs.ImageGrids.Concat(inputs.VideoGrids), audio, visionTrains, audioTrains);
    }
}
