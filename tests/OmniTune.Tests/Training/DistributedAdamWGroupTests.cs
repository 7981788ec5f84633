using OmniTune.Distributed;
using OmniTune.Training.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

/// <summary>
/// The distributed optimizer's traffic: the tensor collectives go over the device group (NCCL on CUDA), the scalar
/// reductions over the data-parallel (MPI) group — checked here on one rank with groups that count their calls.
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
}
