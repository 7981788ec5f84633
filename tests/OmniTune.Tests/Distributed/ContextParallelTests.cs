using OmniTune.Checkpoints.Conversion;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// Context-parallel training under mpirun against the single-process run (also under mpirun, -np 1), on the demo's
/// image, audio, video-with-sound and text samples, one per row — sequences of a few hundred tokens cut into 2·CP
/// chunks, with chunk borders inside image, audio and video spans (checked below): losses of every iteration and the
/// final weights agree within the tolerance the changed summation order allows (each rank's loss is a partial sum, and
/// gradients are summed across the group).
/// </summary>
public sealed class ContextParallelTests : IClassFixture<PipelineFixture>
{
    readonly PipelineFixture fixture;

    public ContextParallelTests(PipelineFixture fixture) => this.fixture = fixture;

    string Flags(string modelJson, string extra) =>
        $"finetune --mm-model {modelJson} --mm-data {fixture.DataJson} --seq-length 1024 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 4 --train-iters 6 {extra}";

    /// <summary>A model.json that trains every tower, with the decoder's pipeline layout when given.</summary>
    string TrainAll(string name, string? text = null)
    {
        string layers = text is null ? "" : $", \"pipeline_num_layers\": {text}";
        string encoders = text is null ? "" : ", \"pipeline_num_layers\": [2,0]";
        string path = Path.Combine(fixture.Folder, name);
        File.WriteAllText(path, $$"""
            {
              "image_encoder": { "vision_encoder": { "freeze": false{{encoders}} }, "vision_projector": { "freeze": false } },
              "audio_encoder": { "audio_encoder": { "freeze": false{{encoders}} } },
              "text_decoder": { "freeze": false{{layers}} }
            }
            """);
        return path;
    }


    Dictionary<string, byte[]> Weights(string save)
    {
        string folder = CheckpointStore.IterationFolder(save, 6);
        if (!CheckpointStore.IsStageCheckpoint(folder)) return CheckpointBytes.Read(Path.Combine(folder, CheckpointStore.ModelFolder));
        string hf = Path.Combine(fixture.Folder, "hf-" + Guid.NewGuid().ToString("N")[..8]);
        using (var mm = new MmCheckpoint(save)) CheckpointConverter.ToHf(mm, hf, null);
        return CheckpointBytes.Read(hf);
    }

    [Theory]
    [InlineData("cp2", 2, "--context-parallel-size 2", "")]
    [InlineData("cp2-per-token", 2, "--context-parallel-size 2", "--calculate-per-token-loss")]
    [InlineData("cp2-tp2-sp", 4, "--context-parallel-size 2 --tensor-model-parallel-size 2 --sequence-parallel", "")]
    [InlineData("cp2-pp2", 4, "--context-parallel-size 2 --pipeline-model-parallel-size 2", "")]
    [InlineData("cp2-dp2-zero1", 4, "--context-parallel-size 2 --use-distributed-optimizer", "")]   // DP 2 over the CP pairs, ZeRO-1 in each
    [InlineData("cp2-dp2-zero1-overlap", 4, "--context-parallel-size 2 --use-distributed-optimizer --overlap-grad-reduce --ddp-bucket-size 20000", "")]   // reduce-scattered over DP, the shards summed over CP
    [InlineData("cp2-dp2-overlap", 4, "--context-parallel-size 2 --overlap-grad-reduce --ddp-bucket-size 20000", "")]   // buckets all-reduced over the 4 ranks
    public void Context_parallel_layouts_reproduce_the_single_process_run(string name, int ranks, string layout, string mode)
    {
        MpiJob.Require();
        string single = Path.Combine(fixture.Folder, $"cp-single-{name}"), save = Path.Combine(fixture.Folder, name);
        var baseline = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(TrainAll($"cp-single-{name}.json"), $"--save {single} {mode}")}");
        Assert.True(baseline.Code == 0, baseline.Output);
        string modelJson = TrainAll($"{name}.json", layout.Contains("pipeline", StringComparison.Ordinal) ? "[2,2]" : null);
        var (code, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(modelJson, $"{layout} --save {save} {mode}")}");
        Assert.True(code == 0, output);
        Assert.Contains("context parallel over 2 ranks", output);
        if (layout.Contains("overlap", StringComparison.Ordinal))
            Assert.True(MpiJob.OverlapStarted(output, layout.Contains("distributed", StringComparison.Ordinal) ? "reduce-scatter" : "all-reduce").Early > 0, output);
        var expected = MpiJob.Losses(baseline.Output);
        var losses = MpiJob.Losses(output);
        CheckpointBytes.AssertLossesClose(expected, losses, 2e-5);
        var expectedWeights = Weights(single);
        var weights = Weights(save);
        CheckpointBytes.AssertClose(expectedWeights, weights, key => key.EndsWith("k_proj.bias", StringComparison.Ordinal) || key.EndsWith("attn.k.bias", StringComparison.Ordinal) ? 2e-2 : 5e-5);
    }

    /// <summary>
    /// --overlap-grad-reduce under context parallel: the buckets are all-reduced over the data- and context-parallel ranks
    /// together (here the two context-parallel ranks), starting during backward — the same sums as context parallel's own
    /// after backward, so the same training bit for bit.
    /// </summary>
    [Fact]
    public void Overlapped_reduction_over_the_context_parallel_ranks_gives_the_same_training_bit_for_bit()
    {
        MpiJob.Require();
        string modelJson = TrainAll("cp-overlap.json");
        string after = Path.Combine(fixture.Folder, "cp-overlap-after"), overlapped = Path.Combine(fixture.Folder, "cp-overlap");
        var plain = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--context-parallel-size 2 --save {after}")}");
        Assert.True(plain.Code == 0, plain.Output);
        var (code, output, _) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--context-parallel-size 2 --overlap-grad-reduce --ddp-bucket-size 20000 --save {overlapped}")}");
        Assert.True(code == 0, output);
        Assert.Contains("overlapped gradient reduction over 'model.dp_cp'", output);
        Assert.True(MpiJob.OverlapStarted(output).Early >= 1, output);
        Assert.Equal(MpiJob.Losses(plain.Output), MpiJob.Losses(output));
        CheckpointBytes.AssertIdentical(Weights(after), Weights(overlapped));
    }

    [Fact]
    public void A_context_parallel_run_resumes_bit_exactly_from_its_checkpoint()
    {
        MpiJob.Require();
        string modelJson = TrainAll("cp-resume.json");
        string straight = Path.Combine(fixture.Folder, "cp-resume-straight"), split = Path.Combine(fixture.Folder, "cp-resume-split");
        var whole = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--context-parallel-size 2 --save {straight}")}");
        Assert.True(whole.Code == 0, whole.Output);
        var head = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--context-parallel-size 2 --train-iters 3 --save {split}")}");
        Assert.True(head.Code == 0, head.Output);
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--context-parallel-size 2 --save {split} --load {split}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming after iteration 3", tail.Output);
        Assert.Equal(MpiJob.Losses(whole.Output), MpiJob.Losses(head.Output).Concat(MpiJob.Losses(tail.Output)));
        var (a, b) = (Weights(straight), Weights(split));
        CheckpointBytes.AssertIdentical(a, b, "after resume: ");
    }

    [Fact]
    public void A_context_parallel_size_that_does_not_divide_the_ranks_is_refused_with_the_numbers()
    {
        MpiJob.Require();
        var (code, output, _) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(TrainAll("cp3.json"), "--context-parallel-size 3")}");
        Assert.NotEqual(0, code);
        Assert.Contains("world size 2 is not divisible by TP 1 × CP 3", output);
    }

    [Fact]
    public void The_demo_rows_put_chunk_borders_inside_image_audio_and_video_spans()
    {
        var (data, _) = OmniTune.Data.Datasets.DataJsonLoader.Load(fixture.DataJson);
        var processor = OmniTune.Data.Datasets.DataJsonLoader.Processor(data, fixture.Model);
        var dataset = OmniTune.Data.Datasets.SupervisedDatasetBuilder.Build(data, processor, new OmniTune.Data.Datasets.DatasetBuildOptions(1024), TextWriter.Null);
        var (config, _) = OmniTune.Models.Qwen25Omni.Config.Qwen25OmniConfigLoader.Load(fixture.Model);
        var cut = new HashSet<int>();
        foreach (var sample in dataset.Samples)
        {
            int length = (sample.InputIds.Length + 7) / 8 * 8;   // one sample per row, padded to a multiple of lcm(8, 2·CP)
            foreach (int border in new[] { length / 4, length / 2, 3 * length / 4 })
            {
                int before = sample.InputIds[border - 1];
                if (border < sample.InputIds.Length && sample.InputIds[border] == before) cut.Add(before);   // the same media token on both sides
            }
        }
        var t = config.Thinker;
        Assert.Superset(new HashSet<int> { t.ImageTokenId, t.AudioTokenId, t.VideoTokenId }, cut);
    }
}
