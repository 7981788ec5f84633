using System.Diagnostics;
using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>
/// A group that adds up the wall time of every call it forwards to <paramref name="inner"/>: the
/// communication share a run reports for tensor parallel, where the collectives sit inside forward and backward.
/// The inner group stays with its owner: disposing this wrapper leaves it open.
/// </summary>
public sealed class TimedProcessGroup(IProcessGroup inner) : IProcessGroup
{
    readonly Stopwatch clock = new();

    /// <summary>Milliseconds spent in the group's calls so far.</summary>
    public double Milliseconds => clock.Elapsed.TotalMilliseconds;

    /// <summary>Calls made so far.</summary>
    public long Calls { get; private set; }

    /// <inheritdoc/>
    public string Name => inner.Name;

    /// <inheritdoc/>
    public int Rank => inner.Rank;

    /// <inheritdoc/>
    public int Size => inner.Size;

    T Timed<T>(Func<T> call)
    {
        Calls++;
        clock.Start();
        try
        {
            return call();
        }
        finally
        {
            clock.Stop();
        }
    }

    void Timed(Action call) => Timed(() =>
    {
        call();
        return 0;
    });

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => Timed(() => inner.AllReduce(tensor, op));

    /// <inheritdoc/>
    public void Broadcast(Tensor tensor, int root = 0) => Timed(() => inner.Broadcast(tensor, root));

    /// <inheritdoc/>
    public Tensor AllGather(Tensor tensor) => Timed(() => inner.AllGather(tensor));

    /// <inheritdoc/>
    public Tensor ReduceScatter(Tensor tensor) => Timed(() => inner.ReduceScatter(tensor));

    /// <inheritdoc/>
    public void Send(Tensor tensor, int destination, int channel = 0) => Timed(() => inner.Send(tensor, destination, channel));

    /// <inheritdoc/>
    public PendingOperation SendAsync(Tensor tensor, int destination, int channel = 0) => Timed(() => inner.SendAsync(tensor, destination, channel));

    /// <inheritdoc/>
    public PendingOperation AllReduceAsync(Tensor tensor) => Timed(() => inner.AllReduceAsync(tensor));

    /// <inheritdoc/>
    public PendingOperation ReduceScatterAsync(Tensor tensor, Tensor result) => Timed(() => inner.ReduceScatterAsync(tensor, result));

    /// <inheritdoc/>
    public Tensor Receive(int source, int channel = 0) => Timed(() => inner.Receive(source, channel));

    /// <inheritdoc/>
    public void Barrier() => Timed(inner.Barrier);

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
