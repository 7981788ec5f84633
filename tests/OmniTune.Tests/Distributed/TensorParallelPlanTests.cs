using OmniTune.Checkpoints.Conversion;
using OmniTune.Distributed;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Checkpoints;
using OmniTune.Training.Parallel;
using static TorchSharp.torch;

namespace OmniTune.Tests.Distributed;

/// <summary>
/// The plans and the reading of tensor-parallel parts, in one process: a group that only knows its rank and size stands
/// for rank r of a TP group (building and cutting call no collective).
/// </summary>
public sealed class TensorParallelPlanTests : IClassFixture<ConversionFixture>
{
    readonly ConversionFixture fixture;

    public TensorParallelPlanTests(ConversionFixture fixture) => this.fixture = fixture;

    sealed class Coordinates(int rank, int size) : IProcessGroup
    {
        public string Name => "test.tp";

        public int Rank => rank;

        public int Size => size;

        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => throw new InvalidOperationException("no collective while building");

        public void Broadcast(Tensor tensor, int root = 0) => throw new InvalidOperationException("no collective while building");

        public Tensor AllGather(Tensor tensor) => throw new InvalidOperationException("no collective while building");

        public Tensor ReduceScatter(Tensor tensor) => throw new InvalidOperationException("no collective while building");

        public void Send(Tensor tensor, int destination, int channel = 0) => throw new InvalidOperationException("no collective while building");

        public Tensor Receive(int source, int channel = 0) => throw new InvalidOperationException("no collective while building");

        public void Barrier() => throw new InvalidOperationException("no collective while building");

        public void Dispose()
        {
        }
    }

    [Fact]
    public void The_plans_cut_every_tensor_as_mindspeed_splits_it_and_keep_the_parameter_order()
    {
        var config = fixture.Config.Thinker;
        using var whole = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var group = new Coordinates(1, 2);
        var parallelism = ThinkerParallelism.Apply(model, group, group, group, sequenceParallel: false);
        Assert.Equal(whole.HuggingFaceParameters().Select(p => p.Key), model.HuggingFaceParameters().Select(p => p.Key));   // same names, same order
        var split = MmTensorMap.For(config, tiedLmHead: false).SelectMany(t => t.Sources.Select(s => (s, t.Split))).ToDictionary(x => x.s, x => x.Split);
        foreach (var (key, parameter) in model.HuggingFaceParameters())
        {
            long[] full = whole.HuggingFaceParameters().First(p => p.Key == key).Parameter.shape;
            int? expectedDim = split[key] switch { SplitKind.Row or SplitKind.Glu => 0, SplitKind.Column => 1, _ => null };
            TensorShard? shard = parallelism.Shards.GetValueOrDefault(key);
            Assert.True(expectedDim == shard?.Dim, $"{key}: MindSpeed cuts dimension {expectedDim?.ToString() ?? "none"}, the plan {shard?.Dim.ToString() ?? "none"}");
            Assert.Equal(shard is null ? full : shard.ShapeOf(full), parameter.shape);
            Assert.Equal(shard is not null ? group.Rank < 2 : false, shard is not null && parallelism.CountsInNorm(key));
        }
        Assert.False(parallelism.CountsInNorm("model.norm.weight"));   // whole on every rank: counted on rank 0 only
        Assert.IsType<ColumnParallelLinear>(model.named_modules().First(m => m.name == "model.layers.0.self_attn.q_proj").module);
        Assert.IsType<RowParallelLinear>(model.named_modules().First(m => m.name == "visual.merger.mlp.2").module);

        using var odd = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var three = new Coordinates(0, 3);
        Assert.Contains("text_decoder: tensor-parallel size 3 does not divide num_key_value_heads = 4",
            Assert.Throws<ArgumentException>(() => ThinkerParallelism.Apply(odd, three, three, three, false)).Message);
        Assert.Contains("'model.layers.*.self_attn.qkv' matches no module", Assert.Throws<InvalidOperationException>(() =>
            TensorParallelPlan.Apply(odd, "text_decoder", [new ParallelRule("model.layers.*.self_attn.qkv", ParallelStyle.Column)], group)).Message);
    }

    [Fact]
    public void A_tensor_parallel_part_is_read_from_its_own_rank_file_alone()
    {
        string mm = fixture.NewFolder("mm-parts");
        // safetensors: the layout is in each file, so rank 1 needs no other file at all (a .pt folder's layout is read
        // from every rank's pickle — no tensor of theirs — so there every rank folder must be present).
        using (var source = new HfTensorSource(fixture.Hf)) CheckpointConverter.ToMm(source, new ParallelLayout([[4]], [[3]], [[3]], TpSize: 2), mm, format: MmFileFormat.Safetensors);
        var split = MmTensorMap.For(fixture.Config.Thinker, tiedLmHead: false).SelectMany(t => t.Sources.Select(s => (s, t.Split))).ToDictionary(x => x.s, x => x.Split);
        var cut = split.Where(kv => kv.Value != SplitKind.Replicated).Select(kv => (Key: kv.Key, Dim: kv.Value == SplitKind.Column ? 1 : 0)).ToList();
        var expected = new Dictionary<string, Tensor>();
        using (var hf = new HfTensorSource(fixture.Hf))
        {
            foreach (var (key, dim) in cut)
            {
                using Tensor whole = hf.Read(key);
                expected[key] = whole.narrow(dim, whole.shape[dim] / 2, whole.shape[dim] / 2).contiguous();
            }
        }
        Directory.Delete(Path.Combine(mm, "release", "mp_rank_00"), recursive: true);   // rank 1 needs nothing of rank 0
        using var checkpoint = new MmCheckpoint(mm);
        foreach (var (key, dim) in cut)
        {
            using Tensor part = checkpoint.ReadPart(key, dim, 1, 2);
            Assert.True(part.shape.SequenceEqual(expected[key].shape) && part.eq(expected[key]).all().item<bool>(), $"{key}: rank 1's part differs from the Hugging Face tensor's second half along dimension {dim}");
        }
        Assert.Throws<FileNotFoundException>(() => checkpoint.Read(cut[0].Key));   // the whole tensor needs both files
        foreach (Tensor t in expected.Values) t.Dispose();
    }
}
