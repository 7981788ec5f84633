using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Loop;
using OmniTune.Training.Optimization;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

public sealed class MixedPrecisionTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public MixedPrecisionTests(TrainingFixture fixture) => this.fixture = fixture;

    [Fact]
    public void Bf16_training_keeps_fp32_masters_saves_them_and_resumes_bit_for_bit()
    {
        using var dir = new TempFolder();
        string[] common = ["--bf16", "--device", "cpu", "--micro-batch-size", "1", "--global-batch-size", "2", "--seq-length", "128"];
        string straight = Path.Combine(dir.Path, "straight"), first = Path.Combine(dir.Path, "first"), second = Path.Combine(dir.Path, "second");
        var log = new StringWriter();
        var whole = Trainer.Run(fixture.Args([.. common, "--train-iters", "4", "--save", straight]), log);
        Assert.Contains("fp32 master weights", log.ToString());
        var head = Trainer.Run(fixture.Args([.. common, "--train-iters", "2", "--save", first]), TextWriter.Null);
        var tail = Trainer.Run(fixture.Args([.. common, "--train-iters", "4", "--load", first, "--save", second]), TextWriter.Null);
        Assert.Equal(whole.StepLosses, head.StepLosses.Concat(tail.StepLosses));
        Assert.True(whole.StepLosses[^1] < whole.StepLosses[0], "bf16 training should still learn");
        string iteration = CheckpointStore.IterationFolder(straight, 4);
        using var masters = SafetensorsFile.Open(Path.Combine(iteration, MasterWeights.FileName));
        Assert.Equal(ScalarType.Float32, masters.Info("model.layers.0.mlp.up_proj.weight").DType);
        using var weights = SafetensorsCheckpoint.Open(Path.Combine(iteration, CheckpointStore.ModelFolder));
        Assert.Equal(ScalarType.BFloat16, weights.Info("thinker.model.layers.0.mlp.up_proj.weight").DType);
        // The bf16 model weight is the rounded master.
        Tensor master = masters.Read("model.layers.0.mlp.up_proj.weight");
        Assert.True(CheckpointBytes.Of(master.to(ScalarType.BFloat16)).AsSpan().SequenceEqual(CheckpointBytes.Of(weights.Read("thinker.model.layers.0.mlp.up_proj.weight"))));
    }
}
