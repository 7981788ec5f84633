using OmniTune.Distributed;
using OmniTune.Training.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

/// <summary>
/// The distributed optimizer on one rank: its traffic (the tensor collectives go over the device group, NCCL on CUDA; the
/// scalar reductions over the data-parallel MPI group — checked with groups that count their calls) and its update, against
/// the plain AdamW's, with an fp32 model stepped in place and with fp32 masters kept beside a bf16 or strided one.
/// </summary>
public sealed class DistributedAdamWGroupTests
{
    sealed class Counting(string name) : IProcessGroup
    {
        readonly SingleRankGroup inner = new(name);
        public List<string> Calls { get; } = [];
        public string Name => inner.Name;
        public int Rank => inner.Rank;
        public int Size => inner.Size;
        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) { Calls.Add($"AllReduce[{tensor.numel()}]"); inner.AllReduce(tensor, op); }
        public void Broadcast(Tensor tensor, int root = 0) { Calls.Add("Broadcast"); inner.Broadcast(tensor, root); }
        public Tensor AllGather(Tensor tensor) { Calls.Add($"AllGather[{tensor.numel()}]"); return inner.AllGather(tensor); }
        public Tensor ReduceScatter(Tensor tensor) { Calls.Add($"ReduceScatter[{tensor.numel()}]"); return inner.ReduceScatter(tensor); }
        public void Send(Tensor tensor, int destination, int channel = 0) => inner.Send(tensor, destination, channel);
        public Tensor Receive(int source, int channel = 0) => inner.Receive(source, channel);
        public void Barrier() => inner.Barrier();
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void Tensor_collectives_use_the_device_group_and_scalars_the_data_parallel_group()
    {
        var parameters = new List<(string, Parameter)> { ("a", new Parameter(randn(6, 4))), ("b", new Parameter(randn(5))) };
        foreach (var (_, p) in parameters) p.grad = randn(p.shape).DetachFromDisposeScope();
        using var dp = new Counting("dp");
        using var device = new Counting("dp.nccl");
        using var optimizer = new DistributedAdamW(parameters, dp, 0.9, 0.999, 1e-8, 0.01, deviceGroup: device);
        optimizer.Step(1e-3, clip: 1.0, average: true);
        Assert.Equal(["ReduceScatter[29]", "AllGather[29]"], device.Calls);
        Assert.Equal(["AllReduce[1]"], dp.Calls);   // the squared norm
    }

    static List<(string, Parameter)> Model(ScalarType dtype, bool strided)
    {
        var generator = new Generator(7);
        Parameter Make(params long[] shape) => new(randn(shape, generator: generator).to(dtype));
        return
        [
            ("embed.weight", strided ? new Parameter(randn(9, 5, generator: generator).to(dtype).t()) : Make(5, 9)),
            ("layer.bias", Make(5)),
            ("layer.weight", Make(7, 5)),
            ("norm.weight", Make(7)),
        ];
    }

    [Theory]
    [InlineData(ScalarType.Float32, false, 2)]
    [InlineData(ScalarType.Float32, true, 3)]
    [InlineData(ScalarType.BFloat16, false, 3)]
    public void Steps_as_the_plain_AdamW_does_keeping_masters_only_where_the_model_cannot_be_its_own(ScalarType dtype, bool strided, int stateCopies)
    {
        var sharded = Model(dtype, strided);
        var plain = sharded.Select(p => (p.Item1, new Parameter(p.Item2.detach().to(ScalarType.Float32).contiguous()))).ToList();   // bf16 values are exact in fp32
        using var dp = new Counting("dp");
        using var distributed = new DistributedAdamW(sharded, dp, 0.9, 0.999, 1e-8, 0.1);
        Assert.Equal(stateCopies * distributed.ShardSize, distributed.StateValues);
        var groups = new List<TorchSharp.Modules.AdamW.ParamGroup>
        {
            new(plain.Where(p => TrainableParameters.Decays(p.Item1, p.Item2)).Select(p => p.Item2), lr: 1e-2, weight_decay: 0.1),
            new(plain.Where(p => !TrainableParameters.Decays(p.Item1, p.Item2)).Select(p => p.Item2), lr: 1e-2, weight_decay: 0.0),
        };
        using var reference = new OmniTune.Training.Optimization.AdamW(groups, 1e-2, 0.9, 0.999, 1e-8, 0.1);
        var generator = new Generator(11);
        for (int step = 0; step < 3; step++)
        {
            for (int i = 0; i < plain.Count; i++)
            {
                Tensor grad = randn(plain[i].Item2.shape, generator: generator);
                plain[i].Item2.grad = grad.clone().DetachFromDisposeScope();
                sharded[i].Item2.grad = grad.to(dtype).DetachFromDisposeScope();
            }
            if (dtype != ScalarType.Float32) foreach (var (_, p) in plain) p.grad = p.grad!.to(dtype).to(ScalarType.Float32).DetachFromDisposeScope();
            distributed.Step(1e-2, clip: 0, average: true);
            reference.step();
            for (int i = 0; i < plain.Count; i++)
            {
                Tensor expected = plain[i].Item2.detach();
                // A bf16 model's masters step in fp32 as the plain optimizer does; the model holds them rounded to bf16.
                Assert.True(expected.to(dtype).equal(sharded[i].Item2.detach()).all().item<bool>(), $"{plain[i].Item1} after step {step + 1}: {(expected - sharded[i].Item2.detach().to(ScalarType.Float32)).abs().max().item<float>()}");
            }
        }
    }
}
