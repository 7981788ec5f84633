using OmniTune.Checkpoints.Conversion;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// Tensor-parallel training under mpirun against the single-process run (also under mpirun, -np 1): losses of every
/// iteration and the final weights (through convert mm-to-hf) agree within the tolerance that the changed summation
/// order allows (a row-parallel layer sums its partial products across ranks, the vocabulary-parallel loss reduces its
/// statistics across ranks). Measured over 10 iterations: losses within 2e-7 relative, weights within 2.1e-5 (the
/// decoder's k_proj biases, whose gradient is rounding noise, within 2.6e-5).
/// </summary>
public sealed class TensorParallelTests : IClassFixture<PipelineFixture>
{
    readonly PipelineFixture fixture;

    public TensorParallelTests(PipelineFixture fixture) => this.fixture = fixture;

    string Flags(string modelJson, string extra) =>
        $"finetune --mm-model {modelJson} --mm-data {fixture.DataJson} --seq-length 1024 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 4 --train-iters 10 {extra}";

    /// <summary>A model.json that trains every tower (so that every plan's gradients are checked).</summary>
    string TrainAll(string name, string? text = null, string? vision = null, string? audio = null, int? encoderTp = null, bool recompute = false)
    {
        string Layers(string? list) => (list is null ? "" : $", \"pipeline_num_layers\": {list}")
            + (recompute ? ", \"recompute_granularity\": \"full\", \"recompute_method\": \"uniform\", \"recompute_num_layers\": 1" : "");
        string tp = encoderTp is int size ? $"\"tp\": {size}, " : "";
        string path = Path.Combine(fixture.Folder, name);
        File.WriteAllText(path, $$"""
            {
              "image_encoder": { {{tp}}"vision_encoder": { "freeze": false{{Layers(vision)}} }, "vision_projector": { "freeze": false } },
              "audio_encoder": { {{tp}}"audio_encoder": { "freeze": false{{Layers(audio)}} } },
              "text_decoder": { "freeze": false{{Layers(text)}} }
            }
            """);
        return path;
    }

    (List<double> Losses, Dictionary<string, byte[]> Weights) Single(string name, bool recompute)
    {
        string save = Path.Combine(fixture.Folder, $"tp-single-{name}");
        var (code, output, _) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(TrainAll($"tp-single-{name}.json", recompute: recompute), $"--save {save}")}");
        Assert.True(code == 0, output);
        return (MpiJob.Losses(output), CheckpointBytes.Read(Path.Combine(CheckpointStore.IterationFolder(save, 10), CheckpointStore.ModelFolder)));
    }

    Dictionary<string, byte[]> ConvertedWeights(string trainingRoot)
    {
        string hf = Path.Combine(fixture.Folder, "hf-" + Guid.NewGuid().ToString("N")[..8]);
        using (var mm = new MmCheckpoint(trainingRoot))
            CheckpointConverter.ToHf(mm, hf, null);
        return CheckpointBytes.Read(hf);
    }


    [Theory]
    [InlineData("tp2", 2, "")]
    [InlineData("tp2-sp", 2, "--sequence-parallel")]
    [InlineData("tp2-sp-recompute", 2, "--sequence-parallel")]   // full recompute in every tower: the collectives rerun in backward
    [InlineData("tp2-pp2", 4, "--pipeline-model-parallel-size 2")]
    [InlineData("tp2-dp2", 4, "--use-distributed-optimizer")]
    [InlineData("tp2-sp-dp2-zero1-overlap", 4, "--sequence-parallel --use-distributed-optimizer --overlap-grad-reduce --ddp-bucket-size 20000")]   // the norms' partial sums completed in the shards
    [InlineData("tp2-encoders-tp1", 2, "")]   // model.json image_encoder.tp = audio_encoder.tp = 1: whole encoders on both ranks
    public void Tensor_parallel_layouts_reproduce_the_single_process_run(string name, int ranks, string extra)
    {
        MpiJob.Require();
        bool recompute = name.Contains("recompute", StringComparison.Ordinal);
        var (expectedLosses, expectedWeights) = Single(name, recompute);
        string save = Path.Combine(fixture.Folder, name);
        bool pipeline = extra.Contains("pipeline", StringComparison.Ordinal);
        string modelJson = pipeline ? TrainAll($"{name}.json", text: "[2,2]", vision: "[2,0]", audio: "[2,0]")
            : TrainAll($"{name}.json", encoderTp: name.Contains("encoders-tp1", StringComparison.Ordinal) ? 1 : null, recompute: recompute);
        var (code, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(modelJson, $"--tensor-model-parallel-size 2 --save {save} {extra}")}");
        Assert.True(code == 0, output);
        Assert.Contains("tensor parallel over 2 ranks", output);
        Assert.Matches(@"tensor-parallel communication: [0-9.]+ ms per step, [0-9.]+ % of step time", output);
        if (extra.Contains("overlap", StringComparison.Ordinal)) Assert.True(MpiJob.OverlapStarted(output, "reduce-scatter").Early > 0, output);
        if (name.Contains("encoders-tp1", StringComparison.Ordinal)) Assert.Contains("encoders: vision at tensor-parallel size 1, audio at 1", output);
        Assert.True(File.Exists(Path.Combine(CheckpointStore.IterationFolder(save, 10), pipeline ? "mp_rank_01_001" : "mp_rank_01", MmCheckpoint.FileName)));
        var losses = MpiJob.Losses(output);
        var weights = ConvertedWeights(save);
        CheckpointBytes.AssertLossesClose(expectedLosses, losses, 2e-5);
        CheckpointBytes.AssertClose(expectedWeights, weights, key => key.EndsWith("k_proj.bias", StringComparison.Ordinal) || key.EndsWith("attn.k.bias", StringComparison.Ordinal) ? 2e-3 * 10 : 5e-5);
    }

    [Fact]
    public void Lora_at_tp2_cuts_the_adapters_as_megatron_does_and_resumes_from_each_ranks_adapters()
    {
        MpiJob.Require();
        const string lora = "--lora-target-modules linear_qkv linear_proj linear_fc1 linear_fc2 --lora-r 4 --lora-alpha 8 --train-iters 4";
        var (code, single, _) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(TrainAll("tp-lora-single.json"), lora)}");
        Assert.True(code == 0, single);
        string save = Path.Combine(fixture.Folder, "tp-lora"), resumed = Path.Combine(fixture.Folder, "tp-lora-resumed");
        var run = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(TrainAll("tp-lora.json"), $"{lora} --tensor-model-parallel-size 2 --save {save} --save-interval 2")}");
        Assert.True(run.Code == 0, run.Output);
        var expected = MpiJob.Losses(single);
        var losses = MpiJob.Losses(run.Output);
        CheckpointBytes.AssertLossesClose(expected, losses, 2e-5);
        // MindSpeed's names: its fused adapters in its rank files. Column-parallel linear_qkv: one A whole, B (q, k, v
        // interleaved per query group) cut by rows; row-parallel linear_proj: A cut by columns (tiny decoder: hidden 64,
        // q 64 + k 32 + v 32 → 64 rows per rank).
        using (var adapters = OmniTune.Checkpoints.Conversion.MmRankFile.Open(Path.Combine(CheckpointStore.IterationFolder(save, 4), "mp_rank_01", "model_optim_rng.pt")))
        {
            Assert.Equal([64L, 4], adapters.Info("text_decoder.decoder.layers.0.self_attention.linear_qkv.lora_B.default.weight").Shape);
            Assert.Equal([4L, 64], adapters.Info("text_decoder.decoder.layers.0.self_attention.linear_qkv.lora_A.default.weight").Shape);
            Assert.Equal([4L, 32], adapters.Info("text_decoder.decoder.layers.0.self_attention.linear_proj.lora_A.default.weight").Shape);
            Assert.Equal([64L, 4], adapters.Info("text_decoder.decoder.layers.0.self_attention.linear_proj.lora_B.default.weight").Shape);
            Assert.DoesNotContain(adapters.Names, n => n.Contains("q_proj", StringComparison.Ordinal));
        }
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(TrainAll("tp-lora.json"), $"{lora} --tensor-model-parallel-size 2 --load {save} --ckpt-step 2 --save {resumed}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming after iteration 2", tail.Output);
        Assert.Equal(losses.Skip(2), MpiJob.Losses(tail.Output));
    }

    [Fact]
    public void A_convert_output_at_tp2_loads_directly_and_a_size_that_does_not_divide_the_heads_is_refused_with_the_tower_named()
    {
        MpiJob.Require();
        string mm = Path.Combine(fixture.Folder, "mm-tp2");
        var convert = MpiJob.Run($"-np 1 dotnet {{cli}} convert hf-to-mm --hf-dir {fixture.Model} --mm-dir {mm} --tp-size 2 --llm-pp-layers [[4]] --vit-pp-layers [[2]] --audio-pp-layers [[2]]");
        Assert.True(convert.Code == 0, convert.Output);
        string fromHf = Path.Combine(fixture.Folder, "tp2-from-hf"), fromMm = Path.Combine(fixture.Folder, "tp2-from-mm");
        var a = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(TrainAll("tp-load.json"), $"--tensor-model-parallel-size 2 --train-iters 3 --save {fromHf}")}");
        Assert.True(a.Code == 0, a.Output);
        var b = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(TrainAll("tp-load.json"), $"--tensor-model-parallel-size 2 --train-iters 3 --load {mm} --save {fromMm}")}");
        Assert.True(b.Code == 0, b.Output);
        Assert.Equal(MpiJob.Losses(a.Output), MpiJob.Losses(b.Output));   // the same weights on each rank, so the same run

        var refused = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags(TrainAll("tp-load.json"), "--tensor-model-parallel-size 4 --train-iters 1")}");
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("text_decoder: tensor-parallel size 4 does not divide num_key_value_heads = 2", refused.Output);
    }

    [Fact]
    public void A_tp2_run_with_recompute_resumes_bit_exactly_and_its_checkpoint_loads_in_one_process_and_in_generate()
    {
        MpiJob.Require();
        string modelJson = TrainAll("tp-resume.json", recompute: true);
        string straight = Path.Combine(fixture.Folder, "tp-resume-straight"), split = Path.Combine(fixture.Folder, "tp-resume-split");
        var whole = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--tensor-model-parallel-size 2 --sequence-parallel --train-iters 6 --save {straight}")}");
        Assert.True(whole.Code == 0, whole.Output);
        var head = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--tensor-model-parallel-size 2 --sequence-parallel --train-iters 3 --save {split}")}");
        Assert.True(head.Code == 0, head.Output);
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--tensor-model-parallel-size 2 --sequence-parallel --train-iters 6 --save {split} --load {split}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming after iteration 3", tail.Output);
        Assert.Equal(MpiJob.Losses(whole.Output), MpiJob.Losses(head.Output).Concat(MpiJob.Losses(tail.Output)));
        var (a, b) = (ConvertedWeights(straight), ConvertedWeights(split));
        CheckpointBytes.AssertIdentical(a, b, "after resume: ");

        // One process continues from the TP checkpoint (weights merged as they load; the optimizer state is per rank).
        var single = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(modelJson, $"--load {split} --ckpt-step 3 --train-iters 4 --no-load-optim")}");
        Assert.True(single.Code == 0, single.Output);
        Assert.Single(MpiJob.Losses(single.Output));
        var answer = MpiJob.Run($"-np 1 dotnet {{cli}} generate --model {split} --prompt Hello --max-new-tokens 3");
        Assert.True(answer.Code == 0, answer.Output);
    }
}
