using OmniTune.Tests.Testing;
using OmniTune.Tests.Training;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// A bf16 model (fp32 masters; on CPU with --device cpu) under the parallel modes, over MPI, which has no 16-bit float
/// type: the collectives of bf16 tensors (the row-sparse embedding's gradient rows, tensor and sequence parallel's
/// activations, context parallel's) move their bits and sum in fp32, rounded once. Each of these failed with "MPI
/// collectives here take fp32, fp64, int32 or int64 tensors, not BFloat16" before.
/// </summary>
public sealed class MixedPrecisionParallelTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public MixedPrecisionParallelTests(TrainingFixture fixture) => this.fixture = fixture;

    string Flags(string extra) =>
        $"finetune --mm-model {fixture.ModelJson} --mm-data {fixture.DataJson} --seq-length 256 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 4 --train-iters 4 --bf16 --device cpu {extra}";

    /// <summary>
    /// A bf16 model (fp32 masters, on CPU with --device cpu) under every gradient reduction at DP 2. MPI carries no bf16:
    /// the token embedding's rows, reduced apart from the buckets, are summed in fp32 as the buckets are (they failed with
    /// a bf16 all-reduce before). Overlapped, the same sums as after backward: the same losses bit for bit. ZeRO-1 steps
    /// the fp32 sums of its slices, as Megatron's distributed optimizer does with its fp32 gradient buffer, where plain DP
    /// rounds the sums to the bf16 gradients first: close within bf16's rounding.
    /// </summary>
    [Fact]
    public void A_bf16_model_trains_under_every_gradient_reduction()
    {
        MpiJob.Require();
        var plain = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("")}");
        Assert.True(plain.Code == 0, plain.Output);
        Assert.Contains("mixed precision: bf16 model", plain.Output);
        var overlapped = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("--overlap-grad-reduce --ddp-bucket-size 20000")}");
        Assert.True(overlapped.Code == 0, overlapped.Output);
        var sharded = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags("--use-distributed-optimizer --overlap-grad-reduce --ddp-bucket-size 20000")}");
        Assert.True(sharded.Code == 0, sharded.Output);
        Assert.Contains("the token embedding", sharded.Output);   // reduced by its rows
        Assert.Contains("(its fp32 master slice and moments)", sharded.Output);
        Assert.Equal(3 * DataParallelTests.Number(sharded.Output, @"distributed optimizer: ([\d,]+) parameters"), DataParallelTests.Number(sharded.Output, @"optimizer state on rank 0: ([\d,]+) values"));   // fp32 masters beside bf16
        var losses = MpiJob.Losses(plain.Output);
        Assert.Equal(4, losses.Count);
        Assert.Equal(losses, MpiJob.Losses(overlapped.Output));
        CheckpointBytes.AssertLossesClose(losses, MpiJob.Losses(sharded.Output), 5e-4);   // bf16 rounds at 3.9e-3; seen: 3.6e-5
    }

    /// <summary>
    /// Tensor, sequence and context parallel against the single process: the same model, each rank's partial sums rounded
    /// to bf16 before they are added (as over NCCL), so close within bf16's rounding, not equal.
    /// </summary>
    [Theory]
    [InlineData("--tensor-model-parallel-size 2")]
    [InlineData("--tensor-model-parallel-size 2 --sequence-parallel")]
    [InlineData("--context-parallel-size 2")]
    public void A_bf16_model_trains_under_tensor_sequence_and_context_parallel_as_in_one_process(string mode)
    {
        MpiJob.Require();
        var single = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags("")}");
        Assert.True(single.Code == 0, single.Output);
        var parallel = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(mode)}");
        Assert.True(parallel.Code == 0, parallel.Output);
        var expected = MpiJob.Losses(single.Output);
        Assert.Equal(4, expected.Count);
        CheckpointBytes.AssertLossesClose(expected, MpiJob.Losses(parallel.Output), 1e-3);   // bf16 rounds at 3.9e-3
    }
}
