using OmniTune.Checkpoints.Conversion;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// The MindSpeed-MM guide's heterogeneous layout scaled down: vision and audio encoders whole (model.json tp 1) and
/// data-parallel over all 4 ranks, the decoder at TP 2 × DP 2 (<c>--hetero-parallel</c>), with frozen and with trainable
/// encoders (MindSpeed-MM allows frozen only), against the single-process run: losses of every iteration and the final
/// weights agree within the tensor-parallel tolerance (row-parallel sums and the vocabulary-parallel loss change the
/// summation order; the shared encoders' gradients are summed over the group).
/// </summary>
public sealed class HeteroParallelTests : IClassFixture<PipelineFixture>
{
    readonly PipelineFixture fixture;

    public HeteroParallelTests(PipelineFixture fixture) => this.fixture = fixture;

    string Flags(string modelJson, string extra) =>
        $"finetune --mm-model {modelJson} --mm-data {fixture.DataJson} --seq-length 1024 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --global-batch-size 4 --train-iters 6 {extra}";

    string ModelJson(string name, bool trainEncoders)
    {
        string freeze = trainEncoders ? "false" : "true";
        string path = Path.Combine(fixture.Folder, name);
        File.WriteAllText(path, $$"""
            {
              "image_encoder": { "tp": 1, "vision_encoder": { "freeze": {{freeze}} }, "vision_projector": { "freeze": false } },
              "audio_encoder": { "tp": 1, "audio_encoder": { "freeze": {{freeze}} } },
              "text_decoder": { "freeze": false }
            }
            """);
        return path;
    }


    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_guides_layout_scaled_down_reproduces_the_single_process_run(bool trainEncoders)
    {
        MpiJob.Require();
        string name = trainEncoders ? "hetero-trained" : "hetero-frozen";
        string single = Path.Combine(fixture.Folder, name + "-single"), save = Path.Combine(fixture.Folder, name);
        var baseline = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(ModelJson(name + "-single.json", trainEncoders), $"--micro-batch-size 2 --save {single}")}");
        Assert.True(baseline.Code == 0, baseline.Output);
        var (code, output, _) = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags(ModelJson(name + ".json", trainEncoders), $"--micro-batch-size 2 --tensor-model-parallel-size 2 --hetero-parallel --save {save}")}");
        Assert.True(code == 0, output);
        Assert.Contains("heterogeneous parallel: vision encoder data-parallel over every rank, audio encoder data-parallel over every rank", output);
        var expected = MpiJob.Losses(baseline.Output);
        var losses = MpiJob.Losses(output);
        CheckpointBytes.AssertLossesClose(expected, losses, 2e-5);
        var expectedWeights = CheckpointBytes.Read(Path.Combine(CheckpointStore.IterationFolder(single, 6), CheckpointStore.ModelFolder));
        string hf = Path.Combine(fixture.Folder, name + "-hf");
        using (var mm = new MmCheckpoint(save)) CheckpointConverter.ToHf(mm, hf, null);
        var weights = CheckpointBytes.Read(hf);
        CheckpointBytes.AssertClose(expectedWeights, weights, key => key.EndsWith("k_proj.bias", StringComparison.Ordinal) || key.EndsWith("attn.k.bias", StringComparison.Ordinal) ? 2e-2 : 5e-5);
    }

    [Fact]
    public void A_batch_the_encoders_ranks_cannot_share_is_refused_with_both_numbers()
    {
        MpiJob.Require();
        var (code, output, _) = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags(ModelJson("hetero-bad.json", true), "--micro-batch-size 1 --tensor-model-parallel-size 2 --hetero-parallel")}");
        Assert.NotEqual(0, code);
        Assert.Contains("(2 × 1 = 2) is not divisible by the image_encoder's data-parallel size 4", output);
    }
}
