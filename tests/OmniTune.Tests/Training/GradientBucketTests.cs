using OmniTune.Distributed;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using OmniTune.Training.Arguments;
using OmniTune.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

/// <summary>--overlap-grad-reduce's buckets are the gradients: views that backward accumulates into and that survive a step.</summary>
public sealed class GradientBucketTests
{
    [Fact]
    public void Gradients_are_views_into_the_buckets_through_accumulation_and_zeroing_and_equal_plain_backward()
    {
        var config = TinyQwen25Omni.Config(TinyTokenizerBuilder.Build()).Thinker;
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var named = model.named_parameters().Where(p => p.name.StartsWith("model.", StringComparison.Ordinal) || p.name.StartsWith("lm_head.", StringComparison.Ordinal))
            .Select(p => (p.name, p.parameter)).ToList();
        foreach (var (name, p) in model.named_parameters()) p.requires_grad = named.Any(n => n.name == name);
        var generator = new Generator(5);
        Tensor[] ids = [randint(0, config.Text.VocabSize, [2, 24], generator: generator), randint(0, config.Text.VocabSize, [2, 24], generator: generator)];
        void Backward(Tensor batch) => OmniTune.Models.Common.CausalLmLoss.Mean(model.Forward(batch), batch).backward();

        // Plain: two micro-batches accumulate into freshly made gradients.
        foreach (Tensor batch in ids) Backward(batch);
        var plain = named.ToDictionary(n => n.name, n => CheckpointBytes.Of(n.parameter.grad!.clone()));
        model.zero_grad();

        using var buckets = new OverlappedGradientReduce(new SingleRankGroup("dp"), LossMode.Default, named, bucketElements: 5_000);
        for (int step = 0; step < 2; step++)
        {
            Assert.All(named, n => Assert.True(buckets.IsView(n.parameter), $"{n.name}: not a view into its bucket before backward"));
            Assert.All(named, n => Assert.Equal(0, n.parameter.grad!.abs().sum().item<float>()));
            foreach (Tensor batch in ids) Backward(batch);
            foreach (var (name, p) in named)
            {
                Assert.True(buckets.IsView(p), $"{name}: backward replaced the view");
                Assert.Equal(plain[name], CheckpointBytes.Of(p.grad!.clone()));   // 0 + g₁ + g₂, bit for bit
            }
            buckets.Finish();
            buckets.ZeroGradients();
        }
        // What the optimizer's zero_grad does (drops them) is undone by the next ZeroGradients.
        model.zero_grad();
        Assert.False(buckets.IsView(named[0].parameter));
        buckets.ZeroGradients();
        Assert.True(buckets.IsView(named[0].parameter));
    }
}
