using OmniTune.Models.Common;
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
            .ToDictionary(p => p.name, p => p.parameter.grad!.contiguous().bytes.ToArray());
    }

    [Theory]
    [InlineData("uniform", 1)]
    [InlineData("uniform", 2)]
    [InlineData("block", 1)]
    public void Recompute_gives_bit_identical_gradients_in_every_tower(string method, int layers)
    {
        var plain = Gradients(null);
        var recomputed = Gradients(new RecomputeSettings(method, layers));
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
}
