using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using OmniTune.Training.Arguments;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Logging;
using OmniTune.Training.Loop;
using OmniTune.Training.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

public sealed class TrainingTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public TrainingTests(TrainingFixture fixture) => this.fixture = fixture;

    static Dictionary<string, byte[]> Weights(string modelFolder) => CheckpointBytes.Read(modelFolder);

    [Fact]
    public void The_schedule_follows_megatrons_sample_based_formulas()
    {
        var cosine = new LearningRateSchedule(1e-5, 0, 0, "cosine", WarmupSamples: 192_000, DecaySamples: 1_920_000);
        Assert.Equal(0, cosine.ForIteration(1, 192));                              // iteration 1 trains with lr 0
        Assert.Equal(1e-5 * 500 / 1000, cosine.ForIteration(501, 192), 15);
        Assert.Equal(1e-5, cosine.ForIteration(1001, 192), 15);
        double mid = 192_000 + (1_920_000 - 192_000) / 2.0;
        Assert.Equal(0.5e-5, cosine.At((long)mid), 12);
        Assert.Equal(0, cosine.At(2_000_000));
        var linear = new LearningRateSchedule(1.0, 0.1, 0, "linear", 0, 100);
        Assert.Equal(1.0, linear.At(0));
        Assert.Equal(0.1 + 0.9 * 0.75, linear.At(25), 12);
        Assert.Equal(0.1, linear.At(150));
        Assert.Equal(3.0, new LearningRateSchedule(3.0, 0, 0, "constant", 0, 10).At(99));
        var fromArgs = LearningRateSchedule.For(fixture.Args("--lr-warmup-fraction", "0.1", "--lr-decay-style", "cosine", "--train-iters", "10000", "--global-batch-size", "1"));
        Assert.Equal((1000L, 10000L), (fromArgs.WarmupSamples, fromArgs.DecaySamples));
    }

    [Fact]
    public void Flags_are_validated_with_clear_messages()
    {
        Assert.Contains("did you mean --micro-batch-size", Assert.Throws<ArgumentException>(() => MegatronFlags.Parse(["--micro-batch-sise", "1"])).Message);
        Assert.Contains("the thinker has no experts", Assert.Throws<NotSupportedException>(() => fixture.Args("--expert-model-parallel-size", "2")).Message);
        Assert.Contains("must be at least 1", Assert.Throws<ArgumentException>(() => fixture.Args("--context-parallel-size", "0")).Message);
        Assert.Equal(2, fixture.Args("--context-parallel-size", "2").ContextSize);
        Assert.Contains("mixes MindSpeed-MM names", Assert.Throws<ArgumentException>(() => fixture.Args("--lora-target-modules", "linear_qkv", "q_proj")).Message);
        Assert.Contains("--sequence-parallel needs --tensor-model-parallel-size", Assert.Throws<ArgumentException>(() => fixture.Args("--sequence-parallel")).Message);
        Assert.Equal(["linear_qkv", "linear_proj"], fixture.Args("--lora-target-modules", "linear_qkv", "linear_proj").Lora!.TargetModules);
        Assert.Contains("unknown module 'linear_xyz'", Assert.Throws<ArgumentException>(() => fixture.Args("--lora-target-modules", "linear_xyz")).Message);
        Assert.Contains("multiple of --micro-batch-size", Assert.Throws<ArgumentException>(() => fixture.Args("--micro-batch-size", "3", "--global-batch-size", "4")).Message);
        Assert.Equal(TimeSpan.FromMinutes(2.5), fixture.Args("--distributed-timeout-minutes", "2.5").DistributedTimeout);
        Assert.Equal(TimeSpan.FromMinutes(10), fixture.Args().DistributedTimeout);   // Megatron's default
        Assert.Contains("must be positive", Assert.Throws<ArgumentException>(() => fixture.Args("--distributed-timeout-minutes", "0")).Message);
        Assert.Equal(50, fixture.Args("--check-weight-hash-across-dp-replicas-interval", "50").ReplicaCheckInterval);
        var args = fixture.Args("--use-flash-attn", "--no-masked-softmax-fusion", "--distributed-backend", "nccl", "--calculate-per-token-loss");
        Assert.Equal(["--use-flash-attn", "--no-masked-softmax-fusion", "--distributed-backend"], args.IgnoredFlags);
        Assert.Equal(LossMode.PerToken, args.LossMode);
    }

    [Theory]
    [InlineData("--lr nan", "--lr 'nan' is not a finite number")]
    [InlineData("--lr inf", "--lr 'inf' is not a finite number")]
    [InlineData("--lr 1e300", "--lr 1E+300: must be in [0, 1000]")]
    [InlineData("--lr -1", "--lr -1: must be in [0, 1000]")]
    [InlineData("--seq-length 0", "--seq-length 0: must be at least 2")]
    [InlineData("--seq-length -5", "--seq-length -5: must be at least 2")]
    [InlineData("--adam-beta2 1", "--adam-beta2 1: each must be in [0, 1)")]
    [InlineData("--adam-eps 0", "--adam-eps 0: must be positive")]
    [InlineData("--weight-decay -0.1", "--weight-decay -0.1: must be ≥ 0")]
    [InlineData("--num-workers -1", "--num-workers -1: must be ≥ 0")]
    public void Out_of_range_numbers_are_refused_naming_the_flag_and_its_range(string flags, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => fixture.Args(flags.Split(' ')));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Accumulating_four_micro_batches_of_one_equals_one_micro_batch_of_four_with_per_token_loss()
    {
        var oneByFour = Trainer.Run(fixture.Args("--micro-batch-size", "4", "--global-batch-size", "4", "--calculate-per-token-loss", "--no-shuffle", "--train-iters", "3"), TextWriter.Null);
        var fourByOne = Trainer.Run(fixture.Args("--micro-batch-size", "1", "--global-batch-size", "4", "--calculate-per-token-loss", "--no-shuffle", "--train-iters", "3"), TextWriter.Null);
        Assert.Equal(3, fourByOne.StepLosses.Count);
        for (int i = 0; i < 3; i++) Assert.Equal(oneByFour.StepLosses[i], fourByOne.StepLosses[i], 4);
    }

    [Fact]
    public void Resuming_from_a_checkpoint_reproduces_the_straight_run_bit_for_bit()
    {
        using var dir = new TempFolder();
        string straight = Path.Combine(dir.Path, "straight"), first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var whole = Trainer.Run(fixture.Args("--train-iters", "6", "--micro-batch-size", "1", "--global-batch-size", "2", "--save", straight), TextWriter.Null);
        var head = Trainer.Run(fixture.Args("--train-iters", "3", "--micro-batch-size", "1", "--global-batch-size", "2", "--save", first), TextWriter.Null);
        var log = new StringWriter();
        var tail = Trainer.Run(fixture.Args("--train-iters", "6", "--micro-batch-size", "1", "--global-batch-size", "2", "--load", first, "--save", second), log);
        Assert.Contains("resuming after iteration 3", log.ToString());
        Assert.Equal(whole.StepLosses, head.StepLosses.Concat(tail.StepLosses));
        var a = Weights(whole.ModelFolder!);
        var b = Weights(tail.ModelFolder!);
        CheckpointBytes.AssertIdentical(a, b, "after resume: ");
        Assert.Equal("6", File.ReadAllText(Path.Combine(second, CheckpointStore.Tracker)));
        Assert.True(File.Exists(Path.Combine(second, "metrics.jsonl")));
        Assert.True(File.Exists(Path.Combine(second, "loss.png")));
    }

    [Fact]
    public void Finetune_takes_only_the_weights_of_a_training_checkpoint_as_megatron_does()
    {
        using var dir = new TempFolder();
        string first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var head = Trainer.Run(fixture.Args("--train-iters", "3", "--global-batch-size", "2", "--save", first), TextWriter.Null);
        var log = new StringWriter();
        var fresh = Trainer.Run(fixture.Args("--train-iters", "2", "--global-batch-size", "2", "--load", first, "--finetune", "--save", second), log);
        Assert.DoesNotContain("resuming", log.ToString());
        Assert.Contains("--finetune:", log.ToString());
        Assert.Equal(2, fresh.Iteration);   // counted from 0 again, not from the checkpoint's 3
        Assert.Equal(2, fresh.StepLosses.Count);
        Assert.True(fresh.StepLosses[0] < head.StepLosses[0], "the run starts from the trained weights");
        Assert.Contains("--fp16: fp16 training is not built", Assert.Throws<NotSupportedException>(() => fixture.Args("--fp16")).Message);
    }

    [Fact]
    public void A_held_out_share_is_validated_every_eval_interval_and_at_the_end_without_changing_training()
    {
        using var dir = new TempFolder();
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(fixture.DataJson))!;
        node["dataset_param"]!["basic_parameters"]!["val_rate"] = 0.25;   // 2 of the 8 samples
        string dataJson = Path.Combine(dir.Path, "data-val.json");
        File.WriteAllText(dataJson, node.ToJsonString());
        string save = Path.Combine(dir.Path, "run");
        var log = new StringWriter();
        var run = Trainer.Run(fixture.Args("--mm-data", dataJson, "--train-iters", "5", "--global-batch-size", "2", "--eval-interval", "2", "--eval-iters", "1", "--save", save), log);
        string text = log.ToString();
        Assert.Contains("validation: 2 of 8 samples held out (val_rate 0.25)", text);
        var values = System.Text.RegularExpressions.Regex.Matches(text, @"validation loss at iteration (\d+) \| lm loss value: ([0-9.E+-]+) \| lm loss PPL: ([0-9.E+-]+)")
            .Select(m => (Iteration: int.Parse(m.Groups[1].Value), Loss: double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture))).ToList();
        Assert.Equal([2, 4, 5], values.Select(v => v.Iteration));
        Assert.All(values, v => Assert.True(double.IsFinite(v.Loss) && v.Loss > 0));
        Assert.True(values[0].Loss != values[2].Loss, "the same held-out batches after more training give another loss");
        string metrics = Path.Combine(save, CheckpointStore.MetricsFile);
        Assert.Equal(values.Select(v => (v.Iteration, Math.Round(v.Loss, 5))), TrainingLog.ReadLosses(metrics, ValidationRecord.KindName).Select(v => (v.Iteration, Math.Round(v.Loss, 5))));
        Assert.Equal(5, TrainingLog.ReadLosses(metrics).Count);   // step records only
        // Validation consumes no randomness and touches no weight: the training losses are those of a run that validates only at the end.
        var quiet = Trainer.Run(fixture.Args("--mm-data", dataJson, "--train-iters", "5", "--global-batch-size", "2", "--eval-iters", "1"), TextWriter.Null);
        Assert.Equal(run.StepLosses, quiet.StepLosses);
        Assert.Contains("val_rate and val_dataset exclude each other", Assert.Throws<ArgumentException>(() =>
        {
            node["dataset_param"]!["basic_parameters"]!["val_dataset"] = "other.json";
            File.WriteAllText(dataJson, node.ToJsonString());
            Trainer.Run(fixture.Args("--mm-data", dataJson), TextWriter.Null);
        }).Message);
    }

    [Fact]
    public void The_chunked_lm_head_and_loss_give_the_losses_and_gradients_of_the_whole_logits()
    {
        var config = OmniTune.Models.Qwen25Omni.Tiny.TinyQwen25Omni.Config(OmniTune.Models.Qwen25Omni.Tiny.TinyTokenizerBuilder.Build()).Thinker;
        using var model = new OmniTune.Models.Qwen25Omni.Thinker.Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var generator = new Generator(11);
        using var hidden = randn([2, 37, config.Text.HiddenSize], generator: generator);
        using var labels = randint(0, config.Text.VocabSize, [2, 37], generator: generator);
        labels[0, TensorIndex.Slice(0, 9)] = tensor(-100L);   // a prompt
        labels[1, TensorIndex.Slice(30, 37)] = tensor(-100L);  // padding
        Parameter head = model.named_parameters().First(p => p.name == "lm_head.weight").parameter;
        using (no_grad()) head.copy_(randn(head.shape, generator: generator) * 0.05);   // seeded, not the global generator's next draw
        (float Loss, Tensor HiddenGrad, Tensor HeadGrad) Run(Func<Tensor, (Tensor, Tensor)> losses)
        {
            head.grad = null;
            Tensor x = hidden.detach().clone().requires_grad_(true);
            var (l, mask) = losses(x);
            Tensor total = (l * mask).sum();
            total.backward();
            return (total.item<float>(), x.grad!.clone(), head.grad!.clone());
        }
        var whole = Run(x => StepLoss.TokenLosses(model.Head(x), labels));
        long before = OmniTune.Models.Common.ActivationCheckpoint.Recomputations;
        var chunked = Run(x => StepLoss.TokenLosses(x, model.Head, config.Text.VocabSize, labels, positions: 5));
        Assert.Equal(8, OmniTune.Models.Common.ActivationCheckpoint.Recomputations - before);   // ⌈36 / 5⌉ chunks, each recomputed in backward
        Assert.Equal(whole.Loss, chunked.Loss, Math.Abs(whole.Loss) * 1e-6);
        Assert.True(whole.HiddenGrad.allclose(chunked.HiddenGrad, rtol: 1e-5, atol: 1e-7));
        Assert.True(whole.HeadGrad.allclose(chunked.HeadGrad, rtol: 1e-5, atol: 1e-7));
        // One chunk covering the sequence is the plain path.
        long still = OmniTune.Models.Common.ActivationCheckpoint.Recomputations;
        Assert.Equal(whole.Loss, Run(x => StepLoss.TokenLosses(x, model.Head, config.Text.VocabSize, labels)).Loss);
        Assert.Equal(still, OmniTune.Models.Common.ActivationCheckpoint.Recomputations);
    }

    [Fact]
    public void The_fused_lm_head_and_loss_give_the_losses_and_gradients_of_the_whole_logits_and_accumulate_into_the_head_gradient()
    {
        var config = OmniTune.Models.Qwen25Omni.Tiny.TinyQwen25Omni.Config(OmniTune.Models.Qwen25Omni.Tiny.TinyTokenizerBuilder.Build()).Thinker;
        using var model = new OmniTune.Models.Qwen25Omni.Thinker.Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var generator = new Generator(12);
        using var hidden = randn([2, 37, config.Text.HiddenSize], generator: generator);
        using var labels = randint(0, config.Text.VocabSize, [2, 37], generator: generator);
        labels[0, TensorIndex.Slice(0, 9)] = tensor(-100L);
        labels[1, TensorIndex.Slice(30, 37)] = tensor(-100L);
        Parameter head = model.HeadWeight!;
        Assert.Equal(model.named_parameters().First(p => p.name == "lm_head.weight").parameter.Handle, head.Handle);
        using (no_grad()) head.copy_(randn(head.shape, generator: generator) * 0.05);   // seeded, not the global generator's next draw
        using var earlier = randn(head.shape, generator: generator);   // a gradient from an earlier micro-batch
        (Tensor Losses, Tensor HiddenGrad, Tensor? HeadGrad) Run(Func<Tensor, (Tensor, Tensor)> losses, Tensor? start)
        {
            head.grad = start?.clone();
            Tensor x = hidden.detach().clone().requires_grad_(true);
            var (l, mask) = losses(x);
            // Per-token weights (as the loss modes apply them) reach the fused backward as its incoming gradient.
            (l * mask * arange(1, 37, ScalarType.Float32)).sum().backward();
            return (l.detach().clone(), x.grad!.clone(), head.grad?.clone());
        }
        var whole = Run(x => StepLoss.TokenLosses(model.Head(x), labels), earlier);
        long before = OmniTune.Models.Common.ActivationCheckpoint.Recomputations;
        var fused = Run(x => StepLoss.TokenLosses(x, model.Head, config.Text.VocabSize, labels, positions: 5, headWeight: head), earlier);
        Assert.Equal(before, OmniTune.Models.Common.ActivationCheckpoint.Recomputations);   // one function, no checkpointed chunks
        // Float32 rounding: every element within 1e-5 of the tensor's largest.
        static void Close(Tensor expected, Tensor actual, string what)
        {
            double fraction = (expected - actual).abs().max().item<float>() / (1e-5 * expected.abs().max().item<float>());
            Margins.Record(nameof(TrainingTests), 0, what, fraction);
            Assert.True(fraction <= 1, $"{what} differs beyond float32 rounding ({fraction:G3} of the tolerance)");
        }
        Close(whole.Losses, fused.Losses, "losses");
        Close(whole.HiddenGrad, fused.HiddenGrad, "hidden gradient");
        Close(whole.HeadGrad!, fused.HeadGrad!, "head gradient");   // earlier + this micro-batch's
        Assert.False(fused.HeadGrad!.allclose(earlier, rtol: 1e-3, atol: 1e-3));
        // A fresh gradient (none before) and a frozen head (no gradient written, the hidden states' still right).
        var wholeFresh = Run(x => StepLoss.TokenLosses(model.Head(x), labels), null);
        var fusedFresh = Run(x => StepLoss.TokenLosses(x, model.Head, config.Text.VocabSize, labels, positions: 7, headWeight: head), null);
        Close(wholeFresh.HeadGrad!, fusedFresh.HeadGrad!, "fresh head gradient");
        head.requires_grad = false;
        var frozen = Run(x => StepLoss.TokenLosses(x, model.Head, config.Text.VocabSize, labels, positions: 7, headWeight: head), null);
        head.requires_grad = true;
        Assert.Null(frozen.HeadGrad);
        Close(whole.HiddenGrad, frozen.HiddenGrad, "hidden gradient with a frozen head");
    }

    [Fact]
    public void Frozen_towers_are_not_updated_and_trainable_ones_are()
    {
        using var dir = new TempFolder();
        var before = Weights(fixture.Model);
        // Four steps of two samples cover the whole epoch, so the image sample (and the projector) take part.
        var result = Trainer.Run(fixture.Args("--train-iters", "4", "--global-batch-size", "2", "--weight-decay", "0", "--save", dir.Path), TextWriter.Null);
        var after = Weights(result.ModelFolder!);
        foreach (var (key, value) in before)
        {
            bool frozen = key.StartsWith("thinker.visual.blocks.", StringComparison.Ordinal) || key.StartsWith("thinker.visual.patch_embed.", StringComparison.Ordinal)
                          || key.StartsWith("thinker.audio_tower.", StringComparison.Ordinal);
            if (frozen) Assert.True(value.AsSpan().SequenceEqual(after[key]), $"frozen {key} changed");
        }
        Assert.False(before["thinker.visual.merger.mlp.2.weight"].AsSpan().SequenceEqual(after["thinker.visual.merger.mlp.2.weight"]), "the projector should train");
        Assert.False(before["thinker.model.layers.0.mlp.up_proj.weight"].AsSpan().SequenceEqual(after["thinker.model.layers.0.mlp.up_proj.weight"]), "the LLM should train");
    }

    [Fact]
    public void Bad_starting_points_fail_before_any_compute_and_say_what_and_where()
    {
        string missing = Path.Combine(fixture.Folder, "no-such-checkpoint");
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => Trainer.Run(fixture.Args("--load", missing), TextWriter.Null)).Message);
        string wrongShape = fixture.WriteModelJson("wrong.json", """{"text_decoder":{"num_layers":28}}""");
        var args = fixture.Args() with { ModelJson = wrongShape };
        Assert.Contains("text_decoder.num_layers is 28 but the checkpoint's config.json has 2", Assert.Throws<InvalidDataException>(() => Trainer.Run(args, TextWriter.Null)).Message);
        string pipeline = fixture.WriteModelJson("pp.json", """{"text_decoder":{"pipeline_num_layers":[1,2]}}""");
        Assert.Contains("sums to 3", Assert.Throws<InvalidDataException>(() => Trainer.Run(fixture.Args() with { ModelJson = pipeline }, TextWriter.Null)).Message);
        string allFrozen = fixture.WriteModelJson("frozen.json", """{"image_encoder":{"vision_projector":{"freeze":true}},"text_decoder":{"freeze":true}}""");
        Assert.Contains("nothing to train", Assert.Throws<ArgumentException>(() => Trainer.Run(fixture.Args() with { ModelJson = allFrozen }, TextWriter.Null)).Message);
    }

    [Fact]
    public void Step_lines_keep_the_substrings_mindspeed_users_grep_for_and_tensorboard_gets_events()
    {
        using var dir = new TempFolder();
        var log = new StringWriter();
        Trainer.Run(fixture.Args("--train-iters", "2", "--log-tps", "--tensorboard-dir", dir.Path), log);
        Assert.NotEmpty(Directory.GetFiles(dir.Path, "*tfevents*", SearchOption.AllDirectories));
        string text = log.ToString();
        Assert.Contains("elapsed time per iteration (ms):", text);
        Assert.Contains("tokens per sample:", text);
        Assert.Contains("iteration        2/       2", text);
        Assert.Contains("learning rate: 2.000000E-003", text);
    }

    [Fact]
    public void Per_sample_loss_averages_sample_means_and_per_token_loss_divides_by_the_step_tokens()
    {
        // Two samples: one with 1 counted token (loss ln 4), one with 3 (loss ~0). Token mean ≠ sample mean.
        var logits = TorchSharp.torch.zeros(2, 4, 4);
        var labels = TorchSharp.torch.tensor(new long[,] { { 0, 1, -100, -100 }, { 0, 2, 2, 2 } });
        logits[1, TorchSharp.torch.TensorIndex.Slice(0, 3), 2] = TorchSharp.torch.tensor(50f);
        double ln4 = Math.Log(4);
        Assert.Equal(ln4 / 4, StepLoss.ForMicroBatch(logits, labels, LossMode.Default, 1, 0).Logged, 5);
        Assert.Equal(ln4 / 2, StepLoss.ForMicroBatch(logits, labels, LossMode.PerSample, 1, 0).Logged, 5);
        Assert.Equal(ln4 / 8, StepLoss.ForMicroBatch(logits, labels, LossMode.PerToken, 1, stepTokens: 8).Logged, 5);
        Assert.Equal(ln4 / 8, StepLoss.ForMicroBatch(logits, labels, LossMode.Default, 2, 0).Logged, 5);
    }

    [Fact]
    public void A_failed_save_keeps_the_previous_checkpoint_and_leaves_no_partial_folder()
    {
        using var dir = new TempFolder();
        File.WriteAllText(Path.Combine(dir.Path, "iter_0000002"), "in the way");   // the second save cannot take its name
        Assert.ThrowsAny<IOException>(() => Trainer.Run(fixture.Args("--train-iters", "2", "--save", dir.Path, "--save-interval", "1"), TextWriter.Null));
        Assert.Equal("1", File.ReadAllText(Path.Combine(dir.Path, CheckpointStore.Tracker)));
        Assert.True(File.Exists(Path.Combine(dir.Path, "iter_0000001", CheckpointStore.ModelFolder, "model.safetensors")));
        Assert.Empty(Directory.GetDirectories(dir.Path, "*.tmp-*"));
    }

    [Fact]
    public void A_divergent_run_is_stopped_after_the_allowed_non_finite_steps()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            Trainer.Run(fixture.Args("--lr", "1000", "--clip-grad", "0", "--train-iters", "30", "--max-nan-steps", "2"), TextWriter.Null));
        Assert.Contains("non-finite steps in a row", error.Message);
    }

    /// <summary>Calls back on the training thread (Progress&lt;T&gt; would post elsewhere).</summary>
    sealed class AtIterations(Action<int> onIteration) : IProgress<(int Iteration, int Total)>
    {
        public void Report((int Iteration, int Total) value) => onIteration(value.Iteration);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--lora-target-modules linear_qkv linear_fc1 --lora-r 4")]
    [InlineData("--calculate-per-token-loss --clip-grad 0.01")]
    public void The_training_loop_holds_its_memory_flat_across_steps(string extra)
    {
        // Undisposed tensors are freed only when the GC runs, which does not see native memory: count them, not just RSS.
        long rssAt20 = 0, rssAt120 = 0, liveAt20 = 0, liveAt120 = 0;
        var progress = new AtIterations(i =>
        {
            if (i == 20) (rssAt20, liveAt20) = (ResidentMemory.AfterCollection(), TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            if (i == 120) (rssAt120, liveAt120) = (ResidentMemory.AfterCollection(), TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        });
        Trainer.Run(fixture.Args([.. $"--train-iters 120 --log-interval 10 {extra}".Split(' ', StringSplitOptions.RemoveEmptyEntries)]), TextWriter.Null, progress);
        Assert.True(rssAt20 > 0 && rssAt120 > 0);
        Assert.True(liveAt120 == liveAt20, $"{liveAt120 - liveAt20} tensors left undisposed over 100 training steps");
        Assert.True(rssAt120 - rssAt20 < 48L << 20, $"RSS grew by {(rssAt120 - rssAt20) >> 20} MiB over 100 training steps");
    }
}
