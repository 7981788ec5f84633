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

    [Fact]
    public void Every_merge_path_gives_the_same_bf16_bits_the_trainer_save_generate_and_the_converter()
    {
        using var dir = new TempFolder();
        string baseFolder = Path.Combine(dir.Path, "base"), merged = Path.Combine(dir.Path, "merged"), adapterFolder = Path.Combine(dir.Path, "adapters");
        OmniTune.Models.Qwen25Omni.Tiny.TinyQwen25Omni.Write(baseFolder, seed: 6, ScalarType.BFloat16);
        Directory.CreateDirectory(merged);
        Directory.CreateDirectory(adapterFolder);
        var (model, _, _) = ThinkerCheckpointLoader.Load(baseFolder, dtype: ScalarType.BFloat16);
        using (model)
        {
            using var adapters = LoraAdapters.Attach(model, new LoraSettings(["linear_qkv", "linear_fc2"], Rank: 4, Alpha: 8), tower => tower == "text_decoder");
            using (no_grad())
            {
                foreach (var (_, p) in adapters.Parameters()) p.normal_(0, 0.05);
            }
            adapters.Save(adapterFolder);
            adapters.SaveMerged(model, merged);   // --lora-save-full-weight
            adapters.MergeInto(model);            // generate --adapter
            using var saved = SafetensorsCheckpoint.Open(merged);
            using var original = SafetensorsCheckpoint.Open(baseFolder);
            using var converted = new OmniTune.Checkpoints.Conversion.LoraMergedSource(new OmniTune.Checkpoints.Conversion.HfTensorSource(baseFolder), adapterFolder);   // convert mm-to-hf
            int differing = 0;
            foreach (var (key, parameter) in model.HuggingFaceParameters())
            {
                using Tensor fromSave = saved.Read("thinker." + key), fromConverter = converted.Read(key);
                Assert.Equal(ScalarType.BFloat16, fromSave.dtype);
                Assert.True(fromSave.bytes.SequenceEqual(fromConverter.bytes), $"{key}: the trainer's merged save and the converter differ");
                Assert.True(fromSave.bytes.SequenceEqual(CheckpointBytes.Of(parameter.detach())), $"{key}: the trainer's merged save and generate's merge differ");
                using Tensor before = original.Read("thinker." + key);
                if (!before.bytes.SequenceEqual(fromSave.bytes)) differing++;
            }
            Assert.True(differing >= 3 * 2, $"{differing} weights changed by the merge; q, k, v and down_proj of 2 layers at least");
        }
    }

    [Fact]
    public void Lora_training_updates_only_adapters_saves_them_with_merged_weights_and_resumes_exactly()
    {
        using var dir = new TempFolder();
        string[] lora = ["--lora-target-modules", "linear_qkv", "linear_fc2", "--lora-r", "4", "--lora-alpha", "8", "--lora-save-full-weight",
                         "--micro-batch-size", "1", "--global-batch-size", "2", "--lr", "5e-3"];
        string straight = Path.Combine(dir.Path, "straight"), first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var whole = Trainer.Run(fixture.Args([.. lora, "--train-iters", "4", "--save", straight]), TextWriter.Null);
        var head = Trainer.Run(fixture.Args([.. lora, "--train-iters", "2", "--save", first]), TextWriter.Null);
        var tail = Trainer.Run(fixture.Args([.. lora, "--train-iters", "4", "--load", first, "--save", second]), TextWriter.Null);
        Assert.Equal(whole.StepLosses, head.StepLosses.Concat(tail.StepLosses));

        string modelFolder = Path.Combine(CheckpointStore.IterationFolder(straight, 4), CheckpointStore.ModelFolder);
        Assert.True(File.Exists(Path.Combine(modelFolder, LoraAdapters.WeightsFile)));
        Assert.Equal(["linear_qkv", "linear_fc2"], LoraAdapters.ReadSettings(modelFolder).TargetModules);
        using (var adapterFile = SafetensorsCheckpoint.Open(Path.Combine(modelFolder, LoraAdapters.WeightsFile)))
        {
            Assert.Contains("thinker.model.layers.0.self_attn.q_proj.lora_A.weight", adapterFile.Keys);
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
        Trainer.Run(fixture.Args(["--lora-target-modules", "linear_qkv", "linear_fc2", "--lora-r", "4", "--lora-alpha", "8", "--micro-batch-size", "1",
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
}
