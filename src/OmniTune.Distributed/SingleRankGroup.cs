using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>A group of one process: every collective is an identity.</summary>
public sealed class SingleRankGroup(string name) : IProcessGroup
{
    /// <inheritdoc/>
    public string Name { get; } = name;

    /// <inheritdoc/>
    public int Rank => 0;

    /// <inheritdoc/>
    public int Size => 1;

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
    }

    /// <inheritdoc/>
    public void Broadcast(Tensor tensor, int root = 0)
    {
    }

    /// <inheritdoc/>
    public Tensor AllGather(Tensor tensor) => tensor.clone();

    /// <inheritdoc/>
    public Tensor ReduceScatter(Tensor tensor) => tensor.clone();

    /// <inheritdoc/>
    public void Send(Tensor tensor, int destination, int channel = 0) =>
        throw new InvalidOperationException($"group '{Name}' has one rank: there is no rank {destination} to send to");

    /// <inheritdoc/>
    public Tensor Receive(int source, int channel = 0) =>
        throw new InvalidOperationException($"group '{Name}' has one rank: there is no rank {source} to receive from");

    /// <inheritdoc/>
    public void Barrier()
    {
    }

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
