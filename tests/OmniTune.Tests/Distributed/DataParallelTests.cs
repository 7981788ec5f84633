using System.Text.RegularExpressions;
using OmniTune.Tests.Testing;
using OmniTune.Tests.Training;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Loop;
using OmniTune.Training.Optimization;

namespace OmniTune.Tests.Distributed;

/// <summary>Data-parallel training under mpirun (Open MPI) against the single-process run with the same global batch.</summary>
public sealed class DataParallelTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public DataParallelTests(TrainingFixture fixture) => this.fixture = fixture;

    string Flags(string extra) =>
        $"finetune --mm-model {fixture.ModelJson} --mm-data {fixture.DataJson} --seq-length 256 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 4 --train-iters 4 {extra}";

    [Theory]
    [InlineData(2, "")]
    [InlineData(4, "--check-weight-hash-across-dp-replicas-interval 2")]
    [InlineData(2, "--calculate-per-token-loss")]
    [InlineData(2, "--global-batch-size 6 --train-iters 5")]   // 8 samples: every epoch drops 2, and the runs must drop the same
    public void Data_parallel_losses_equal_the_single_process_run_with_the_same_global_batch(int ranks, string mode)
    {
        MpiJob.Require();
        var single = Trainer.Run(fixture.Args([.. $"--micro-batch-size 1 --global-batch-size 4 --train-iters 4 {mode}".Split(' ', StringSplitOptions.RemoveEmptyEntries)]), TextWriter.Null);
        int iterations = single.StepLosses.Count;
        var (code, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(mode)}");
        Assert.True(code == 0, output);
        Assert.Contains($"data parallel over {ranks} ranks", output);
        Assert.Matches(@"data-parallel communication: [0-9.]+ ms per step, [0-9.]+ % of step time", output);
        var losses = MpiJob.Losses(output);
        Assert.Equal(iterations, losses.Count);   // step lines come from rank 0 only
        if (mode.Contains("replicas", StringComparison.Ordinal))
            Assert.Equal(2, Regex.Count(output, $"replica check after iteration \\d: parameters identical on {ranks} ranks"));
        CheckpointBytes.AssertLossesClose(single.StepLosses, losses, 2e-5);
    }

    /// <summary>
    /// --overlap-grad-reduce with small buckets (so several start during the last micro-batch's backward, the rest after):
    /// the same sums element by element, so the same losses and weights, bit for bit, as the reduction after backward —
    /// the token embedding's included, whose rows untouched by every rank's tokens are left out of the reduction. Under the
    /// distributed optimizer the buckets are reduce-scattered and the optimizer's state is sharded by bucket: the same
    /// updates element by element, and the same saved state (gathered by parameter name), bit for bit.
    /// </summary>
    [Theory]
    [InlineData("", "all-reduce")]
    [InlineData("--use-distributed-optimizer", "reduce-scatter")]
    public void Overlapped_gradient_reduction_gives_the_same_training_bit_for_bit(string optimizer, string collective)
    {
        MpiJob.Require();
        using var dir = new TempFolder();
        string after = Path.Combine(dir.Path, "after"), overlapped = Path.Combine(dir.Path, "overlapped");
        var plain = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags($"--save {after} {optimizer}")}");
        Assert.True(plain.Code == 0, plain.Output);
        var (code, output, _) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags($"--overlap-grad-reduce --ddp-bucket-size 20000 --save {overlapped} {optimizer}")}");
        Assert.True(code == 0, output);
        var buckets = Regex.Match(output, @"overlapped gradient reduction over '[^']+': (\d+) buckets");
        Assert.True(buckets.Success && int.Parse(buckets.Groups[1].Value) > 2, output);
        Assert.Contains("the token embedding (", output);   // reduced by the rows the step's tokens touched, not in a bucket
        var (early, all) = MpiJob.OverlapStarted(output, collective);
        Assert.InRange(early, 1, all - 1);   // some during backward, the encoders' and embedding's after
        Assert.Equal(MpiJob.Losses(plain.Output), MpiJob.Losses(output));
        CheckpointBytes.AssertIdentical(CheckpointBytes.Read(Path.Combine(CheckpointStore.IterationFolder(after, 4), CheckpointStore.ModelFolder)),
            CheckpointBytes.Read(Path.Combine(CheckpointStore.IterationFolder(overlapped, 4), CheckpointStore.ModelFolder)));
        if (optimizer.Length == 0) return;
        Assert.Contains("sharded by the", output);
        CheckpointBytes.AssertIdentical(CheckpointBytes.ReadFile(Path.Combine(CheckpointStore.IterationFolder(after, 4), DistributedAdamW.FileName)),
            CheckpointBytes.ReadFile(Path.Combine(CheckpointStore.IterationFolder(overlapped, 4), DistributedAdamW.FileName)), "optimizer state ");
    }

    [Fact]
    public void Under_mpirun_only_rank_zero_writes_files_and_prints_and_no_terminal_codes_appear()
    {
        MpiJob.Require();
        using var dir = new TempFolder();
        var (code, output, _) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags($"--save {dir.Path}")}", term: "xterm-256color");
        Assert.True(code == 0, output);
        Assert.DoesNotContain('\u001b', output);
        Assert.Equal(1, Regex.Count(output, "finished at iteration 4"));
        Assert.DoesNotContain("resuming", output);
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl"));
        Assert.Equal([1, 2, 3, 4], lines.Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("Iteration").GetInt32()));
    }

    [Fact]
    public void The_distributed_optimizer_matches_the_plain_one_and_resumes_at_another_data_parallel_size()
    {
        MpiJob.Require();
        using var dir = new TempFolder();
        var plain = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("")}");
        var sharded = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("--use-distributed-optimizer")}");
        Assert.True(sharded.Code == 0, sharded.Output);
        Assert.Contains("distributed optimizer:", sharded.Output);
        // What each rank holds: plain AdamW both moments of every trainable value; ZeRO-1 the moments of its slice alone (no
        // full moments beside them: TorchSharp's AdamW would allocate them for every parameter it is given; no fp32 master
        // slice beside an fp32 model: its parameters are stepped in place).
        long trainable = Number(plain.Output, @"trainable: ([\d,]+) parameters"), shard = Number(sharded.Output, @"distributed optimizer: ([\d,]+) parameters");
        Assert.Equal(2 * trainable, Number(plain.Output, @"optimizer state on rank 0: ([\d,]+) values"));
        Assert.Equal(2 * shard, Number(sharded.Output, @"optimizer state on rank 0: ([\d,]+) values"));
        Assert.Contains("(the moments of its slice; the fp32 model is its own master)", sharded.Output);
        Assert.InRange(shard, trainable / 2, trainable / 2 + 4096);
        var (a, b) = (MpiJob.Losses(plain.Output), MpiJob.Losses(sharded.Output));
        Assert.Equal(4, b.Count);
        CheckpointBytes.AssertLossesClose(a, b, 2e-5);

        string first = Path.Combine(dir.Path, "dp4");
        var straight = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags("--use-distributed-optimizer")}");
        var head = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags($"--use-distributed-optimizer --train-iters 2 --save {first}")}");
        Assert.True(head.Code == 0, head.Output);
        Assert.True(File.Exists(Path.Combine(first, "iter_0000002", "distrib_optim.safetensors")));
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags($"--use-distributed-optimizer --load {first}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming a data-parallel-4 run at data-parallel size 2", tail.Output);
        var expected = MpiJob.Losses(straight.Output);
        var resumed = MpiJob.Losses(head.Output).Concat(MpiJob.Losses(tail.Output)).ToList();
        Assert.Equal(4, resumed.Count);
        CheckpointBytes.AssertLossesClose(expected, resumed, 2e-5);
    }

    internal static long Number(string output, string pattern)
    {
        var match = Regex.Match(output, pattern);
        Assert.True(match.Success, $"no line matching '{pattern}' in:\n{output}");
        return long.Parse(match.Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void A_rank_that_fails_ends_the_whole_job_quickly_with_its_rank_named()
    {
        MpiJob.Require();
        var (code, output, seconds) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags("--train-iters 200")} : -np 1 dotnet {{cli}} {Flags("--load /nonexistent-checkpoint")}");
        Assert.NotEqual(0, code);
        Assert.Contains("[rank 1/2]", output);
        Assert.Contains("/nonexistent-checkpoint", output);
        Assert.True(seconds < 60, $"the job took {seconds:F0} s to end");
    }

    [Fact]
    public void Every_collective_and_send_receive_agree_on_an_odd_number_of_ranks()
    {
        MpiJob.Require();
        var (code, output, _) = MpiJob.Run("-np 3 dotnet {cli} comm-check --size-mib 1");
        Assert.True(code == 0, output);
        Assert.Contains("send/receive and barrier agree on 3 ranks", output);
    }

    [Fact]
    public void Each_tower_gets_its_own_groups_so_the_decoder_and_the_encoders_can_be_laid_out_differently()
    {
        MpiJob.Require();
        var (code, output, _) = MpiJob.Run("-np 4 dotnet {cli} comm-check --size-mib 1 --tp 2 --cp 2");
        Assert.True(code == 0, output);
        Assert.Contains("decoder layout: tp 2 × cp 2 × dp 1 × pp 1; vision: dp 4", output);
        Assert.Contains("group 'decoder.tp': all-reduce, broadcast, all-gather, reduce-scatter, send/receive and barrier agree on 2 ranks", output);
        Assert.Contains("group 'decoder.cp': all-reduce, broadcast, all-gather, reduce-scatter, send/receive and barrier agree on 2 ranks", output);
        // Context-parallel attention (load-balanced chunks, gathered keys/values, causal mask by global position, padding),
        // forward and backward, against the single-process maths.
        Assert.Contains("context-parallel checks over 2 ranks (group 'decoder.cp'): 10 passed", output);
        Assert.Contains("group 'vision.dp': all-reduce, broadcast, all-gather, reduce-scatter, send/receive and barrier agree on 4 ranks", output);
        Assert.Contains("tensor-parallel mappings and layers over 'decoder.tp' (2 ranks): 26 checks of forward and backward against the single-process maths passed", output);
    }

    [Fact]
    public void A_hung_rank_ends_the_job_after_the_timeout_with_the_waiting_rank_and_group_named()
    {
        MpiJob.Require();
        var (code, output, seconds) = MpiJob.Run("-np 2 dotnet {cli} comm-check --timeout-seconds 3 --stall-rank 1");
        Assert.NotEqual(0, code);
        Assert.Contains("rank 0 of group 'world'", output);
        Assert.Contains("waited more than 3 s for its peers", output);
        Assert.True(seconds < 60, $"the job took {seconds:F0} s to end");
    }
}
