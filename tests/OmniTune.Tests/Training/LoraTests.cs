using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Tests.Models;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Loop;
using OmniTune.Training.Lora;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

public sealed class LoraTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public LoraTests(TrainingFixture fixture) => this.fixture = fixture;

    [Fact]
    public void Merged_weights_compute_what_the_adapters_compute()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config, seed: 4);
        var sample = MultimodalSample.Build(config, seed: 5);
        using var adapters = LoraAdapters.Attach(model, new LoraSettings(["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"], Rank: 4, Alpha: 8), tower => tower == "text_decoder");
        Assert.Equal(config.Text.NumHiddenLayers * 7, adapters.Layers.Count);
        using (no_grad())
        {
            Tensor plain = model.Forward(sample.Inputs);
            foreach (var (key, p) in adapters.Parameters()) p.normal_(0, 0.05);   // B starts at zero: make the adapters do something
            Tensor adapted = model.Forward(sample.Inputs);
            Assert.True((adapted - plain).abs().max().item<float>() > 1e-3, "the adapters should change the output");
            adapters.MergeInto(model);
            TensorAssert.Close(adapted, model.Forward(sample.Inputs), 2e-5);
        }
    }

    [Theory]
    [InlineData(LoraFlavour.Peft)]
    [InlineData(LoraFlavour.MindSpeed)]
    public void Every_merge_path_gives_the_same_bf16_bits_the_trainer_save_generate_and_the_converter(LoraFlavour flavour)
    {
        using var dir = new TempFolder();
        string baseFolder = Path.Combine(dir.Path, "base"), merged = Path.Combine(dir.Path, "merged"), adapterFolder = Path.Combine(dir.Path, "adapters");
        OmniTune.Models.Qwen25Omni.Tiny.TinyQwen25Omni.Write(baseFolder, seed: 6, ScalarType.BFloat16);
        Directory.CreateDirectory(merged);
        Directory.CreateDirectory(adapterFolder);
        var (model, _, _) = ThinkerCheckpointLoader.Load(baseFolder, dtype: ScalarType.BFloat16);
        using (model)
        {
            string[] targets = flavour == LoraFlavour.Peft ? ["q_proj", "k_proj", "v_proj", "down_proj"] : ["linear_qkv", "linear_fc2"];
            using var adapters = LoraAdapters.Attach(model, new LoraSettings(targets, Rank: 4, Alpha: 8), tower => tower == "text_decoder");
            using (no_grad())
            {
                foreach (var (_, p) in adapters.Parameters()) p.normal_(0, 0.05);
            }
            if (flavour == LoraFlavour.Peft)
            {
                adapters.Save(adapterFolder);
            }
            else
            {
                var layout = OmniTune.Checkpoints.Conversion.ParallelLayout.Single(model.Config);
                adapters.SaveRank(Path.Combine(adapterFolder, "mp_rank_00"), layout, stage: 0, iteration: 1);
                File.WriteAllText(Path.Combine(adapterFolder, CheckpointStore.LayoutFile), layout.ToJson());
            }
            adapters.SaveMerged(model, merged);   // --lora-save-full-weight
            adapters.MergeInto(model);            // the model with its adapters folded in
            using var saved = SafetensorsCheckpoint.Open(merged);
            using var original = SafetensorsCheckpoint.Open(baseFolder);
            using var converted = new OmniTune.Checkpoints.Conversion.LoraMergedSource(new OmniTune.Checkpoints.Conversion.HfTensorSource(baseFolder), adapterFolder);   // convert mm-to-hf, generate --adapter
            int differing = 0;
            foreach (var (key, parameter) in model.HuggingFaceParameters())
            {
                using Tensor fromSave = saved.Read("thinker." + key), fromConverter = converted.Read(key);
                Assert.Equal(ScalarType.BFloat16, fromSave.dtype);
                Assert.True(fromSave.bytes.SequenceEqual(fromConverter.bytes), $"{key}: the trainer's merged save and the converter differ");
                Assert.True(fromSave.bytes.SequenceEqual(CheckpointBytes.Of(parameter.detach())), $"{key}: the trainer's merged save and the in-model merge differ");
                using Tensor before = original.Read("thinker." + key);
                if (!before.bytes.SequenceEqual(fromSave.bytes)) differing++;
            }
            Assert.True(differing >= 4 * 2, $"{differing} weights changed by the merge; q, k, v and down_proj of 2 layers at least");
        }
    }

    [Fact]
    public void Mindspeed_names_train_one_adapter_per_fused_layer_hugging_face_names_one_per_projection()
    {
        var config = TinyThinker.Config();
        var t = config.Text;
        long hidden = t.HiddenSize, q = t.NumAttentionHeads * t.HeadDim, kv = t.NumKeyValueHeads * t.HeadDim, inter = t.IntermediateSize;
        const int r = 4;
        long Count(LoraAdapters a) => a.Parameters().Sum(p => p.Parameter.numel());
        using (var model = TinyThinker.Create(config, seed: 4))
        using (var peft = LoraAdapters.Attach(model, new LoraSettings(["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"], Rank: r), tower => tower == "text_decoder"))
        {
            Assert.Equal(t.NumHiddenLayers * (3 * r * hidden + r * (q + 2 * kv) + 2 * r * hidden + 2 * r * inter), Count(peft));   // PEFT: one A per projection
        }
        using var model2 = TinyThinker.Create(config, seed: 4);
        using var fused = LoraAdapters.Attach(model2, new LoraSettings(["linear_qkv", "linear_fc1"], Rank: r, Alpha: 8), tower => tower == "text_decoder");
        Assert.Equal(t.NumHiddenLayers * (r * hidden + r * (q + 2 * kv) + r * hidden + 2 * r * inter), Count(fused));   // MindSpeed's parameter count
        using (no_grad())
        {
            foreach (var (_, p) in fused.Parameters()) p.normal_(0, 0.05);
        }
        // The fused formula: [q; k; v] interleaved = W_qkv x + (α/r) B_qkv A x, with one A and B_qkv fused like the weight.
        var modules = model2.named_modules().ToDictionary(m => m.name, m => m.module);
        var map = OmniTune.Checkpoints.Conversion.MmTensorMap.For(config, model2.TiedLmHead);
        var qkv = map.Single(m => m.Name == "text_decoder.decoder.layers.1.self_attention.linear_qkv.weight");
        string[] members = qkv.Sources.Select(s => s[..^".weight".Length]).ToArray();
        var linears = members.Select(m => (TorchSharp.Modules.Linear)modules[m]).ToArray();
        using var noGrad = no_grad();
        manual_seed(9);
        Tensor x = randn(3, hidden);
        Tensor weight = OmniTune.Checkpoints.Conversion.TensorOps.Merge(qkv, linears.Select(l => l.weight!.detach()).ToArray());
        Tensor bias = OmniTune.Checkpoints.Conversion.TensorOps.Merge(map.Single(m => m.Name == "text_decoder.decoder.layers.1.self_attention.linear_qkv.bias"),
            linears.Select(l => l.bias!.detach()).ToArray());
        Tensor a = fused.Layers[members[0]].Down.A.weight!.detach();
        Tensor b = OmniTune.Checkpoints.Conversion.TensorOps.Merge(qkv, members.Select(m => fused.Layers[m].B.detach()).ToArray());
        Tensor expected = nn.functional.linear(x, weight, bias) + nn.functional.linear(nn.functional.linear(x, a), b) * 2.0;
        Tensor actual = OmniTune.Checkpoints.Conversion.TensorOps.Merge(qkv, linears.Select(l => l.call(x).t()).ToArray()).t();
        TensorAssert.Close(expected, actual, 1e-5);
        Assert.False(fused.Layers[members[1]].OwnsA);
        Assert.Same(fused.Layers[members[0]].Down, fused.Layers[members[2]].Down);
    }

    [Fact]
    public void Lora_training_updates_only_adapters_saves_them_with_merged_weights_and_resumes_exactly()
    {
        using var dir = new TempFolder();
        string[] lora = ["--lora-target-modules", "q_proj", "k_proj", "v_proj", "down_proj", "--lora-r", "4", "--lora-alpha", "8", "--lora-save-full-weight",
                         "--micro-batch-size", "1", "--global-batch-size", "2", "--lr", "5e-3"];
        string straight = Path.Combine(dir.Path, "straight"), first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var whole = Trainer.Run(fixture.Args([.. lora, "--train-iters", "4", "--save", straight]), TextWriter.Null);
        var head = Trainer.Run(fixture.Args([.. lora, "--train-iters", "2", "--save", first]), TextWriter.Null);
        var tail = Trainer.Run(fixture.Args([.. lora, "--train-iters", "4", "--load", first, "--save", second]), TextWriter.Null);
        Assert.Equal(whole.StepLosses, head.StepLosses.Concat(tail.StepLosses));

        string modelFolder = Path.Combine(CheckpointStore.IterationFolder(straight, 4), CheckpointStore.ModelFolder);
        Assert.True(File.Exists(Path.Combine(modelFolder, LoraAdapters.WeightsFile)));
        Assert.Equal(["q_proj", "k_proj", "v_proj", "down_proj"], LoraAdapters.ReadSettings(modelFolder).TargetModules);
        using (var adapterFile = SafetensorsCheckpoint.Open(Path.Combine(modelFolder, LoraAdapters.WeightsFile)))
        {
            Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", adapterFile.Keys);   // PEFT's keys on the Hugging Face thinker
            var thinkerWeights = OmniTune.Models.Qwen25Omni.Thinker.ThinkerWeightLayout.For(TinyThinker.Config(), tiedLmHead: false).Select(w => w.Key).ToHashSet();
            foreach (string key in adapterFile.Keys)   // each names a linear layer of the Hugging Face thinker, as PeftModel.from_pretrained maps them
                Assert.Contains(key["base_model.model.".Length..^".lora_A.weight".Length] + ".weight", thinkerWeights);
            Assert.DoesNotContain(adapterFile.Keys, k => k.Contains("o_proj", StringComparison.Ordinal));
        }
        // The merged checkpoint differs from the base only in adapted weights, and loads as a plain model.
        using var merged = SafetensorsCheckpoint.Open(modelFolder);
        using var baseModel = SafetensorsCheckpoint.Open(fixture.Model);
        Assert.True(CheckpointBytes.Of(merged.Read("thinker.model.layers.1.mlp.gate_proj.weight")).AsSpan().SequenceEqual(CheckpointBytes.Of(baseModel.Read("thinker.model.layers.1.mlp.gate_proj.weight"))));
        Assert.False(CheckpointBytes.Of(merged.Read("thinker.model.layers.1.mlp.down_proj.weight")).AsSpan().SequenceEqual(CheckpointBytes.Of(baseModel.Read("thinker.model.layers.1.mlp.down_proj.weight"))));
        var (loaded, _, _) = ThinkerCheckpointLoader.Load(modelFolder);
        loaded.Dispose();

        // A checkpoint with adapters only converts to a Hugging Face folder with the adapters merged: equal to the trainer's merge.
        string adaptersOnly = Path.Combine(dir.Path, "adapters-only");
        Trainer.Run(fixture.Args(["--lora-target-modules", "q_proj", "k_proj", "v_proj", "down_proj", "--lora-r", "4", "--lora-alpha", "8", "--micro-batch-size", "1",
            "--global-batch-size", "2", "--lr", "5e-3", "--train-iters", "4", "--save", adaptersOnly]), TextWriter.Null);
        string converted = Path.Combine(dir.Path, "converted");
        var (o, e) = (Console.Out, Console.Error);
        Console.SetOut(TextWriter.Null);
        Console.SetError(TextWriter.Null);
        int code;
        try
        {
            code = OmniTune.Cli.Program.Main(["convert", "mm-to-hf", "--mm-dir", adaptersOnly, "--save-hf-dir", converted, "--hf-dir", fixture.Model]);
        }
        finally
        {
            Console.SetOut(o);
            Console.SetError(e);
        }
        Assert.Equal(0, code);
        using var fromConverter = SafetensorsCheckpoint.Open(converted);
        foreach (string key in new[] { "thinker.model.layers.1.mlp.down_proj.weight", "thinker.model.layers.0.self_attn.k_proj.weight", "thinker.model.layers.0.mlp.up_proj.weight" })
            TensorAssert.Close(merged.Read(key), fromConverter.Read(key), 1e-6);
    }

    [Fact]
    public void Mindspeed_named_lora_saves_in_mindspeeds_rank_files_resumes_exactly_and_merges()
    {
        using var dir = new TempFolder();
        string[] lora = ["--lora-target-modules", "linear_qkv", "linear_fc1", "--lora-r", "4", "--lora-alpha", "8", "--micro-batch-size", "1", "--global-batch-size", "2", "--lr", "5e-3"];
        string straight = Path.Combine(dir.Path, "straight"), first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var whole = Trainer.Run(fixture.Args([.. lora, "--lora-save-full-weight", "--train-iters", "4", "--save", straight]), TextWriter.Null);
        var head = Trainer.Run(fixture.Args([.. lora, "--train-iters", "2", "--save", first]), TextWriter.Null);
        var tail = Trainer.Run(fixture.Args([.. lora, "--train-iters", "4", "--load", first, "--save", second]), TextWriter.Null);
        Assert.Equal(whole.StepLosses, head.StepLosses.Concat(tail.StepLosses));

        string iteration = CheckpointStore.IterationFolder(straight, 4);
        using (var pt = OmniTune.Core.PyTorch.PyTorchFile.Open(Path.Combine(iteration, "mp_rank_00", "model_optim_rng.pt")))
        {
            var root = (System.Collections.IDictionary)pt.Root!;
            Assert.Equal(["checkpoint_version", "iteration", "model"], root.Keys.Cast<string>().Order(StringComparer.Ordinal));
            Assert.Equal(4, Convert.ToInt32(root["iteration"]));
            var model = ((System.Collections.IDictionary)root["model"]!).Keys.Cast<string>().ToList();
            Assert.Contains("text_decoder.decoder.layers.0.self_attention.linear_qkv.lora_A.default.weight", model);
            Assert.Contains("text_decoder.decoder.layers.1.mlp.linear_fc1.lora_B.default.weight", model);
            Assert.All(model, k => Assert.Contains(".lora_", k, StringComparison.Ordinal));   // adapters only, as MindSpeed saves LoRA
        }
        // --lora-save-full-weight: the merged weights as a MindSpeed release beside the adapters, equal to the converter's merge.
        string fromMerged = Path.Combine(dir.Path, "from-merged"), fromAdapters = Path.Combine(dir.Path, "from-adapters");
        var (o, e) = (Console.Out, Console.Error);
        Console.SetOut(TextWriter.Null);
        Console.SetError(TextWriter.Null);
        try
        {
            Assert.Equal(0, OmniTune.Cli.Program.Main(["convert", "mm-to-hf", "--mm-dir", Path.Combine(iteration, "merged"), "--save-hf-dir", fromMerged]));
            Assert.Equal(0, OmniTune.Cli.Program.Main(["convert", "mm-to-hf", "--mm-dir", straight, "--save-hf-dir", fromAdapters, "--hf-dir", fixture.Model]));
        }
        finally
        {
            Console.SetOut(o);
            Console.SetError(e);
        }
        using var a = SafetensorsCheckpoint.Open(fromMerged);
        using var b = SafetensorsCheckpoint.Open(fromAdapters);
        foreach (string key in a.Keys) Assert.True(CheckpointBytes.Of(a.Read(key)).AsSpan().SequenceEqual(CheckpointBytes.Of(b.Read(key))), $"{key} differs");
    }
}
