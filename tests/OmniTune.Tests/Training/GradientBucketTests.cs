using OmniTune.Distributed;
using OmniTune.Models.Qwen25Omni.Positions;
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

        using var buckets = new GradientBuckets(new SingleRankGroup("dp"), LossMode.Default, named, bucketElements: 5_000);
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

    /// <summary>A two-rank group of one process: collectives are identities; each non-blocking all-reduce records its tensor and what it held.</summary>
    sealed class Recording : IProcessGroup
    {
        readonly SingleRankGroup inner = new("dp");
        public List<(Tensor Buffer, Tensor Content)> Started { get; } = [];
        public string Name => "dp";
        public int Rank => 0;
        public int Size => 2;
        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) { }
        public PendingOperation AllReduceAsync(Tensor tensor)
        {
            Started.Add((tensor.alias().DetachFromDisposeScope(), tensor.clone().DetachFromDisposeScope()));
            return PendingOperation.Completed;
        }
        public void Broadcast(Tensor tensor, int root = 0) { }
        public Tensor AllGather(Tensor tensor) => inner.AllGather(tensor);
        public Tensor ReduceScatter(Tensor tensor) => inner.ReduceScatter(tensor);
        public void Send(Tensor tensor, int destination, int channel = 0) => throw new NotSupportedException();
        public Tensor Receive(int source, int channel = 0) => throw new NotSupportedException();
        public void Barrier() { }
        public void Dispose() => inner.Dispose();
    }

    /// <summary>
    /// With every tower watched, each bucket's reduction starts during backward only once its gradients are final: what
    /// it held when it started equals what it holds when backward is over — with the vision encoder run in two passes
    /// (an image, then a video, each through both blocks) and recomputed (its re-forward makes no pass), and the audio
    /// tower not run at all (final at once). Buckets start in their order (tower by tower, each from its last layer), and
    /// only the stems' and embedding's wait for the end of backward.
    /// </summary>
    [Fact]
    public void Encoder_buckets_start_in_backward_once_every_pass_has_gone_through_their_layers()
    {
        var config = TinyQwen25Omni.Config(TinyTokenizerBuilder.Build()).Thinker;
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var named = model.named_parameters().Where(p => p.name != "audio_tower.audio_bos_eos_token.weight").Select(p => (p.name, p.parameter)).ToList();
        using var group = new Recording();
        using var buckets = new GradientBuckets(group, LossMode.Default, named, bucketElements: 1);   // a bucket per parameter
        model.TextModel.Progress = buckets.Watch(GradientBuckets.Tower.Decoder);
        model.Visual.Progress = buckets.Watch(GradientBuckets.Tower.Vision);
        model.AudioTower.Progress = buckets.Watch(GradientBuckets.Tower.Audio);
        model.Visual.Recompute = new OmniTune.Models.Common.RecomputeSettings("uniform", 1);
        var generator = new Generator(11);
        long columns = config.Vision.PatchDim;

        buckets.Forwarding(0);
        Tensor image = model.Visual.Forward(randn([16, columns], generator: generator), [new GridThw(1, 4, 4)]);
        Tensor video = model.Visual.Forward(randn([32, columns], generator: generator), [new GridThw(2, 4, 4)]);
        Tensor ids = randint(0, config.Text.VocabSize, [1, 20], generator: generator);
        Tensor embeds = cat([model.TextModel.Embed(ids)[0], image, video]).unsqueeze(0);
        long length = embeds.shape[1];
        Tensor positions = arange(length).expand(3, 1, length);
        Tensor hidden = model.TextModel.Forward(embeds, positions, null);
        Tensor loss = (hidden * randn(hidden.shape, generator: generator)).sum() + model.Head(hidden).square().mean();
        buckets.Backwarding(0, 1);
        loss.backward();

        var order = buckets.Segments.Select(s => OmniTune.Core.Tensors.TensorMemory.DataPointer(s.Reduced!)).ToList();
        var afterBackward = buckets.Segments.Where(s => s.Parameters.All(p => named.First(n => ReferenceEquals(n.parameter, p)).name is string name &&
            (name.StartsWith("model.embed_tokens.", StringComparison.Ordinal) || name.StartsWith("visual.patch_embed.", StringComparison.Ordinal) ||
             name.StartsWith("audio_tower.conv", StringComparison.Ordinal)))).Count();
        Assert.Equal((long)order.Count - afterBackward, buckets.Started.Early);
        Assert.Equal(order.Take(group.Started.Count), group.Started.Select(s => OmniTune.Core.Tensors.TensorMemory.DataPointer(s.Buffer)));
        foreach (var (buffer, content) in group.Started)
            Assert.True(buffer.equal(content).all().item<bool>(), "a bucket's reduction started before backward had finished its gradients");
        buckets.Finish();
        Assert.Equal(order, group.Started.Select(s => OmniTune.Core.Tensors.TensorMemory.DataPointer(s.Buffer)));
    }
}
