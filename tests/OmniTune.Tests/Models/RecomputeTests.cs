using OmniTune.Models.Common;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class RecomputeTests
{
    static Dictionary<string, byte[]> Gradients(RecomputeSettings? settings)
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config, seed: 8);
        model.TextModel.Recompute = settings;
        model.Visual.Recompute = settings;
        model.AudioTower.Recompute = settings;
        var sample = MultimodalSample.Build(config, seed: 9);
        using var scope = NewDisposeScope();
        CausalLmLoss.Mean(model.Forward(sample.Inputs), sample.Labels).backward();
        return model.named_parameters().Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => CheckpointBytes.Of(p.parameter.grad!.contiguous()));
    }

    [Theory]
    [InlineData("uniform", 1)]
    [InlineData("uniform", 2)]
    [InlineData("block", 1)]
    public void Recompute_gives_bit_identical_gradients_in_every_tower(string method, int layers)
    {
        var plain = Gradients(null);
        var settings = new RecomputeSettings(method, layers);
        long before = ActivationCheckpoint.Recomputations;
        var recomputed = Gradients(settings);
        var config = TinyThinker.Config();
        var sample = MultimodalSample.Build(config, seed: 9);
        int visionCalls = (sample.Inputs.PixelValues is null ? 0 : 1) + (sample.Inputs.PixelValuesVideos is null ? 0 : 1);   // images, then videos
        int Segments(int n) => settings.Plan(n).Count(p => p.Checkpointed);
        int segments = Segments(config.Text.NumHiddenLayers) + visionCalls * Segments(config.Vision.Depth) + Segments(config.Audio.EncoderLayers);
        Assert.Equal(2, visionCalls);
        Assert.Equal(segments, ActivationCheckpoint.Recomputations - before);   // recompute really ran, once per segment
        Assert.Equal(plain.Keys.Order(), recomputed.Keys.Order());
        Assert.Contains("visual.blocks.0.attn.q.weight", plain.Keys);
        Assert.Contains("audio_tower.layers.1.fc1.weight", plain.Keys);
        foreach (var (name, grad) in plain) Assert.True(grad.AsSpan().SequenceEqual(recomputed[name]), $"{name} differs with {method}/{layers}");
    }

    [Fact]
    public void Recompute_plans_follow_megatrons_uniform_and_block_methods()
    {
        Assert.Equal([(0, 2, true), (2, 2, true), (4, 1, true)], new RecomputeSettings("uniform", 2).Plan(5));
        Assert.Equal([(0, 1, true), (1, 1, true), (2, 1, false)], new RecomputeSettings("block", 2).Plan(3));
    }

    [Fact]
    public void Recompute_replays_the_generators_accelerators_draw_from()
    {
        // A segment that draws a dropout-like mask from a registered generator (on GPUs: the device's generator).
        using var generator = new Generator(5);
        ReplayedRandomness.Register(generator);
        try
        {
            Tensor x = randn(64).requires_grad_(true);
            Tensor y = ActivationCheckpoint.Run((input, _) => input * rand(input.shape, generator: generator), x, []);
            y.sum().backward();
            Tensor maskUsedInForward = y.detach() / x.detach();
            TensorAssert.Close(maskUsedInForward, x.grad!, 1e-6);   // the recomputation drew the same mask
        }
        finally
        {
            ReplayedRandomness.Unregister(generator);
        }
    }
}
