using OmniTune.Cli.Demo;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;

namespace OmniTune.Tests.Distributed;

/// <summary>A tiny Qwen2.5-Omni with 4 decoder layers and the demo's image, audio, video-with-sound and text conversations.</summary>
public sealed class PipelineFixture : IDisposable
{
    readonly TempFolder folder = new();

    public PipelineFixture()
    {
        Model = Path.Combine(folder.Path, "model");
        TinyQwen25Omni.Write(Model, seed: 3, adjust: c => c with { Thinker = c.Thinker with { Text = c.Thinker.Text with { NumHiddenLayers = 4, MaxWindowLayers = 4 } } });
        string data = Path.Combine(folder.Path, "data");
        DemoDataset.Write(data);
        DataJson = Path.Combine(folder.Path, "data.json");
        DemoDataset.WriteDataJson(DataJson, Model, data, Path.Combine(folder.Path, "cache"));
    }

    public string Model { get; }

    public string DataJson { get; }

    public string Folder => folder.Path;

    /// <summary>A model.json with the towers' pipeline_num_layers (JSON arrays as text, or null to leave one out).</summary>
    public string ModelJson(string name, string? vision, string? audio, string? text, bool freezeStageZero = false, bool recompute = false)
    {
        string Layers(string? list) => (list is null ? "" : $", \"pipeline_num_layers\": {list}")
            + (recompute ? ", \"recompute_granularity\": \"full\", \"recompute_method\": \"uniform\", \"recompute_num_layers\": 1" : "");
        string path = Path.Combine(folder.Path, name);
        File.WriteAllText(path, $$"""
            {
              "image_encoder": { "vision_encoder": { "freeze": true{{Layers(vision)}} }, "vision_projector": { "freeze": {{(freezeStageZero ? "true" : "false")}} } },
              "audio_encoder": { "audio_encoder": { "freeze": {{(freezeStageZero ? "true" : "false")}}{{Layers(audio)}} } },
              "text_decoder": { "freeze": false{{Layers(text)}} }
            }
            """);
        return path;
    }

    public void Dispose() => folder.Dispose();
}

/// <summary>
/// Pipeline-parallel training under mpirun against the single-process run (also under mpirun, -np 1, so that both use one
/// thread per process): every iteration's loss and the final weights (through convert mm-to-hf) are bit-identical.
/// </summary>
public sealed class PipelineParallelTests : IClassFixture<PipelineFixture>
{
    readonly PipelineFixture fixture;

    public PipelineParallelTests(PipelineFixture fixture) => this.fixture = fixture;

    string Flags(string modelJson, string extra) =>
        $"finetune --mm-model {modelJson} --mm-data {fixture.DataJson} --seq-length 1024 --lr 2e-3 --lr-decay-style constant --weight-decay 0.01 " +
        $"--clip-grad 1.0 --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 1 --global-batch-size 4 --train-iters 6 {extra}";

    (List<double> Losses, Dictionary<string, byte[]> Weights) Single(string save, string extra = "")
    {
        var (code, output, _) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(fixture.ModelJson("single.json", null, null, null), $"--save {save} {extra}")}");
        Assert.True(code == 0, output);
        return (MpiJob.Losses(output), Weights(Path.Combine(CheckpointStore.IterationFolder(save, 6), CheckpointStore.ModelFolder)));
    }

    static Dictionary<string, byte[]> Weights(string hfFolder) => CheckpointBytes.Read(hfFolder);

    Dictionary<string, byte[]> ConvertedWeights(string trainingRoot)
    {
        string hf = Path.Combine(fixture.Folder, "hf-" + Guid.NewGuid().ToString("N")[..8]);
        using (var mm = new OmniTune.Checkpoints.Conversion.MmCheckpoint(trainingRoot))
            OmniTune.Checkpoints.Conversion.CheckpointConverter.ToHf(mm, hf, null);
        return Weights(hf);
    }

    [Theory]
    [InlineData("pp2", 2, 2, "[2,0]", "[2,0]", "[1,3]", "")]
    [InlineData("pp4", 4, 4, "[2,0,0,0]", "[2,0,0,0]", "[1,1,1,1]", "--use-flash-attn --variable-seq-lengths")]   // the guide's 7B layout and flags, scaled
    [InlineData("vpp2", 2, 2, "[[2,0],[0,0]]", "[[2,0],[0,0]]", "[[1,1],[1,1]]", "--virtual-pipeline-model-parallel-size 2")]
    [InlineData("pp2-recompute-per-token", 2, 2, "[1,1]", "[2,0]", "[0,4]", "--calculate-per-token-loss")]   // recompute in every tower; the vision encoder spans the stages
    [InlineData("pp2-dp2", 4, 2, "[2,0]", "[1,1]", "[0,4]", "--use-distributed-optimizer")]   // 2 stages × 2 replicas, ZeRO-1; audio spans the stages
    public void Pipeline_layouts_reproduce_the_single_process_run(string name, int ranks, int stages, string vision, string audio, string text, string extra)
    {
        MpiJob.Require();
        bool recompute = name.Contains("recompute", StringComparison.Ordinal);
        var (expectedLosses, expectedWeights) = Single(Path.Combine(fixture.Folder, $"single-{name}"), recompute ? extra : "");
        string save = Path.Combine(fixture.Folder, name);
        string modelJson = fixture.ModelJson($"{name}.json", vision, audio, text, recompute: recompute);
        if (name == "pp4")
        {
            // As the guide does: convert hf → mm with the same layout first, then train from that folder.
            string mm = Path.Combine(fixture.Folder, "mm-pp4");
            using (var hf = new OmniTune.Checkpoints.Conversion.HfTensorSource(fixture.Model))
                OmniTune.Checkpoints.Conversion.CheckpointConverter.ToMm(hf, new OmniTune.Checkpoints.Conversion.ParallelLayout([[1, 1, 1, 1]], [[2, 0, 0, 0]], [[2, 0, 0, 0]]), mm);
            extra += $" --load {mm}";
        }
        var (code, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size {stages} --save {save} {extra}")}");
        Assert.True(code == 0, output);
        Assert.Contains($"pipeline parallel over {stages} stages", output);
        Assert.True(File.Exists(Path.Combine(CheckpointStore.IterationFolder(save, 6), $"mp_rank_00_{stages - 1:D3}", "model_optim_rng.safetensors")));
        var losses = MpiJob.Losses(output);
        var weights = ConvertedWeights(save);
        Assert.Equal(expectedWeights.Keys.Order(), weights.Keys.Order());
        if (ranks == stages)
        {
            // Pipeline only: the same operations on the same data in the same order, so the same bits.
            Assert.Equal(expectedLosses, losses);
            Assert.All(expectedWeights, kv => Assert.True(kv.Value.AsSpan().SequenceEqual(weights[kv.Key]),
                $"{kv.Key} differs from the single-process run by up to {CheckpointBytes.MaxFloatDifference(kv.Value, weights[kv.Key])}"));
            return;
        }
        // With data parallel the gradients of the micro-batches are summed in another order (all-reduce across replicas
        // instead of one accumulation), so the last bits differ: losses within 2e-5 relative, weights within 5e-5. The
        // key biases are the exception: their gradient is zero in exact arithmetic (softmax ignores a constant added to
        // every score of a query), so what Adam sees is rounding noise, normalised to steps of up to lr each.
        CheckpointBytes.AssertLossesClose(expectedLosses, losses, 2e-5);
        CheckpointBytes.AssertClose(expectedWeights, weights, key => key.EndsWith("self_attn.k_proj.bias", StringComparison.Ordinal) ? 2e-3 * 6 : 5e-5);
    }


    /// <summary>
    /// --overlap-grad-reduce under pipeline stages (each stage's replicas reduce their buckets while the last micro-batch's
    /// backward goes on; with virtual chunks, a chunk's layers are final once the last micro-batch's backward has passed
    /// them, whatever the other chunks do): the same sums, so the same losses and weights bit for bit as after backward.
    /// </summary>
    [Theory]
    [InlineData("overlap-pp2-dp2", "[2,0]", "[2,0]", "[1,3]", "")]
    [InlineData("overlap-vpp2-dp2", "[[2,0],[0,0]]", "[[2,0],[0,0]]", "[[1,1],[1,1]]", "--virtual-pipeline-model-parallel-size 2")]
    [InlineData("overlap-pp2-dp2-zero1", "[2,0]", "[2,0]", "[1,3]", "--use-distributed-optimizer")]
    public void Overlapped_gradient_reduction_under_pipeline_stages_gives_the_same_training_bit_for_bit(string name, string vision, string audio, string text, string extra)
    {
        MpiJob.Require();
        string modelJson = fixture.ModelJson($"{name}.json", vision, audio, text);
        string after = Path.Combine(fixture.Folder, name + "-after"), overlapped = Path.Combine(fixture.Folder, name);
        var plain = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --save {after} {extra}")}");
        Assert.True(plain.Code == 0, plain.Output);
        var (code, output, _) = MpiJob.Run($"-np 4 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --overlap-grad-reduce --ddp-bucket-size 20000 --save {overlapped} {extra}")}");
        Assert.True(code == 0, output);
        Assert.True(MpiJob.OverlapStarted(output, extra.Contains("distributed", StringComparison.Ordinal) ? "reduce-scatter" : "all-reduce").Early >= 1, output);
        Assert.Equal(MpiJob.Losses(plain.Output), MpiJob.Losses(output));
        CheckpointBytes.AssertIdentical(ConvertedWeights(after), ConvertedWeights(overlapped));
    }

    /// <summary>
    /// Also with data parallel 2 under the distributed optimizer with the overlapped reduction: stage 0's optimizer then
    /// holds padding alone.
    /// </summary>
    [Theory]
    [InlineData(2, "")]
    [InlineData(4, "--use-distributed-optimizer --overlap-grad-reduce --ddp-bucket-size 20000")]
    public void A_stage_with_only_frozen_encoders_runs_forward_and_backward_and_steps_nothing(int ranks, string extra)
    {
        MpiJob.Require();
        // Vision encoder, projector and audio encoder frozen, all on stage 0; the decoder on stage 1.
        string single = fixture.ModelJson("frozen-single.json", null, null, null, freezeStageZero: true);
        var (code, reference, _) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(single, "--train-iters 3")}");
        Assert.True(code == 0, reference);
        string modelJson = fixture.ModelJson("frozen.json", "[2,0]", "[2,0]", "[0,4]", freezeStageZero: true);
        var (code2, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(modelJson, $"--train-iters 3 --pipeline-model-parallel-size 2 --enable-dummy-optimizer {extra}")}");
        Assert.True(code2 == 0, output);
        Assert.Contains("pipeline stage 0 holds no trainable parameters: it runs forward and backward and steps nothing (--enable-dummy-optimizer changes nothing here", output);
        if (ranks == 2) Assert.Equal(MpiJob.Losses(reference), MpiJob.Losses(output));
        else CheckpointBytes.AssertLossesClose(MpiJob.Losses(reference), MpiJob.Losses(output), 2e-5);   // averaged over 2 replicas
        Assert.Matches(@"stage 1: busy [0-9.]+ ms per step, idle [0-9.]+ ms per step \([0-9.]+ % bubble and transfers\)", output);
    }

    [Fact]
    public void A_layout_with_encoder_layers_after_the_decoder_start_is_refused_with_the_rule()
    {
        MpiJob.Require();
        string modelJson = fixture.ModelJson("wrong.json", "[1,1]", "[2,0]", "[1,3]");
        var (code, output, seconds) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, "--pipeline-model-parallel-size 2")}");
        Assert.NotEqual(0, code);
        Assert.Contains("image_encoder.vision_encoder.pipeline_num_layers [1,1] with text_decoder.pipeline_num_layers [1,3]: the text decoder starts on stage 0 " +
                        "but the vision encoder still has layers on stage 1", output);
        Assert.True(seconds < 60, $"the job took {seconds:F0} s to end");
    }

    [Fact]
    public void A_pipeline_run_resumes_bit_exactly_and_its_checkpoint_loads_at_another_layout_and_in_generate()
    {
        MpiJob.Require();
        string modelJson = fixture.ModelJson("resume.json", "[2,0]", "[2,0]", "[2,2]");
        string straight = Path.Combine(fixture.Folder, "resume-straight"), split = Path.Combine(fixture.Folder, "resume-split");
        var whole = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --save {straight}")}");
        Assert.True(whole.Code == 0, whole.Output);
        var head = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --save {split} --train-iters 3")}");
        Assert.True(head.Code == 0, head.Output);
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --save {split} --load {split}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming after iteration 3", tail.Output);
        Assert.Equal(MpiJob.Losses(whole.Output), MpiJob.Losses(head.Output).Concat(MpiJob.Losses(tail.Output)));
        var (a, b) = (ConvertedWeights(straight), ConvertedWeights(split));
        CheckpointBytes.AssertIdentical(a, b, "after resume: ");

        // Another layout: the weights load (resharded on load), the optimizer state does not unless asked to start afresh.
        string single = fixture.ModelJson("resume-single.json", null, null, null);
        var refused = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(single, $"--load {split} --ckpt-step 3 --train-iters 4")}");
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("the weights load at any layout, the optimizer state does not. Pass --no-load-optim", refused.Output);
        var fresh = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(single, $"--load {split} --ckpt-step 3 --train-iters 4 --no-load-optim")}");
        Assert.True(fresh.Code == 0, fresh.Output);
        Assert.Single(MpiJob.Losses(fresh.Output));

        // generate reads the pipeline checkpoint directly.
        var answer = MpiJob.Run($"-np 1 dotnet {{cli}} generate --model {split} --prompt Hello --max-new-tokens 3");
        Assert.True(answer.Code == 0, answer.Output);
    }

    [Fact]
    public void A_stage_killed_mid_run_ends_the_whole_job_with_a_message()
    {
        MpiJob.Require();
        string modelJson = fixture.ModelJson("killed.json", "[2,0]", "[2,0]", "[2,2]");
        string marker = Path.Combine(fixture.Folder, "killed-" + Guid.NewGuid().ToString("N")[..8]);   // in every rank's command line
        var (code, output, seconds) = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"--pipeline-model-parallel-size 2 --train-iters 200 --save {marker} --save-interval 1000")}",
            onLine: line =>
            {
                if (!line.Contains("iteration        2/", StringComparison.Ordinal)) return;
                foreach (var process in System.Diagnostics.Process.GetProcessesByName("dotnet"))
                {
                    string environment;
                    try
                    {
                        if (!File.ReadAllText($"/proc/{process.Id}/cmdline").Contains(marker, StringComparison.Ordinal)) continue;
                        environment = File.ReadAllText($"/proc/{process.Id}/environ");
                    }
                    catch (IOException)
                    {
                        continue;
                    }
                    if (environment.Contains("OMPI_COMM_WORLD_RANK=1\0", StringComparison.Ordinal)) process.Kill();   // SIGKILL: no handler runs
                }
            });
        Assert.NotEqual(0, code);
        Assert.Contains("iteration        2/", output);
        Assert.DoesNotContain("iteration      200/", output);
        Assert.Matches("signal 9|Killed|waited more than", output);
        Assert.True(seconds < 120, $"the job took {seconds:F0} s to end after a stage died");
    }

    [Fact]
    public void Lora_trains_on_every_stage_as_in_one_process_and_resumes_from_the_stage_adapters()
    {
        MpiJob.Require();
        const string lora = "--lora-target-modules linear_qkv linear_fc1 --lora-r 4 --lora-alpha 8 --train-iters 4";
        string singleSave = Path.Combine(fixture.Folder, "lora-single");
        var (code, single, _) = MpiJob.Run($"-np 1 dotnet {{cli}} {Flags(fixture.ModelJson("lora-single.json", null, null, null), $"{lora} --save {singleSave}")}");
        Assert.True(code == 0, single);
        string modelJson = fixture.ModelJson("lora.json", "[2,0]", "[2,0]", "[1,3]");
        string save = Path.Combine(fixture.Folder, "lora-pp2"), resumed = Path.Combine(fixture.Folder, "lora-pp2-resumed");
        var pipeline = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"{lora} --pipeline-model-parallel-size 2 --save {save} --save-interval 2")}");
        Assert.True(pipeline.Code == 0, pipeline.Output);
        Assert.Equal(MpiJob.Losses(single), MpiJob.Losses(pipeline.Output));
        // MindSpeed's names: its fused adapters in its rank files, layers numbered per stage (stage 1's local 0 is layer 1).
        using (var stage1 = OmniTune.Checkpoints.Conversion.MmRankFile.Open(Path.Combine(CheckpointStore.IterationFolder(save, 4), "mp_rank_00_001", "model_optim_rng.pt")))
        {
            Assert.Contains("text_decoder.decoder.layers.2.self_attention.linear_qkv.lora_A.default.weight", stage1.Names);
            Assert.DoesNotContain("text_decoder.decoder.layers.3.self_attention.linear_qkv.lora_A.default.weight", stage1.Names);
            Assert.Contains("text_decoder.decoder.layers.0.mlp.linear_fc1.lora_B.default.weight", stage1.Names);
        }
        // The adapters spread over the stages merge into the same weights as the one-process run's.
        string mergedSingle = Path.Combine(fixture.Folder, "lora-single-merged"), mergedPipeline = Path.Combine(fixture.Folder, "lora-pp2-merged");
        foreach (var (from, to) in new[] { (singleSave, mergedSingle), (save, mergedPipeline) })
        {
            var convert = MpiJob.Run($"-np 1 dotnet {{cli}} convert mm-to-hf --mm-dir {from} --save-hf-dir {to} --hf-dir {fixture.Model}");
            Assert.True(convert.Code == 0, convert.Output);
        }
        using (var a = OmniTune.Core.Safetensors.SafetensorsCheckpoint.Open(mergedSingle))
        using (var b = OmniTune.Core.Safetensors.SafetensorsCheckpoint.Open(mergedPipeline))
        {
            foreach (string key in a.Keys) OmniTune.Tests.Testing.TensorAssert.Close(a.Read(key), b.Read(key), 1e-6);
        }
        var tail = MpiJob.Run($"-np 2 dotnet {{cli}} {Flags(modelJson, $"{lora} --pipeline-model-parallel-size 2 --load {save} --ckpt-step 2 --save {resumed}")}");
        Assert.True(tail.Code == 0, tail.Output);
        Assert.Contains("resuming after iteration 2", tail.Output);
        Assert.Equal(MpiJob.Losses(single).Skip(2), MpiJob.Losses(tail.Output));
    }

    [Fact]
    public void Validation_under_pipeline_and_data_parallel_gives_the_single_process_values()
    {
        MpiJob.Require();
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(fixture.DataJson))!;
        node["dataset_param"]!["basic_parameters"]!["val_rate"] = 0.4;   // 5 of the 11 samples held out, 6 to train on
        string dataJson = Path.Combine(fixture.Folder, "data-val.json");
        File.WriteAllText(dataJson, node.ToJsonString());
        string Run(string ranks, string modelJson, string extra)
        {
            var (code, output, _) = MpiJob.Run($"-np {ranks} dotnet {{cli}} {Flags(modelJson, $"--train-iters 2 --eval-interval 1 --eval-iters 2 {extra}").Replace(fixture.DataJson, dataJson, StringComparison.Ordinal)}");
            Assert.True(code == 0, output);
            return output;
        }
        static List<double> Values(string output) => System.Text.RegularExpressions.Regex.Matches(output, @"validation loss at iteration \d+ \| lm loss value: ([0-9.E+-]+)")
            .Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var single = Values(Run("1", fixture.ModelJson("val-single.json", null, null, null), ""));
        Assert.Equal(2, single.Count);
        Assert.Equal(single, Values(Run("2", fixture.ModelJson("val-pp2.json", "[2,0]", "[2,0]", "[1,3]"), "--pipeline-model-parallel-size 2")));   // same maths
        var dp = Values(Run("2", fixture.ModelJson("val-dp2.json", null, null, null), ""));
        CheckpointBytes.AssertLossesClose(single, dp, 2e-5);   // averaged across replicas in another order
    }
}
