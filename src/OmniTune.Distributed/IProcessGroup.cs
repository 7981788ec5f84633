using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>Reductions a collective can apply.</summary>
public enum ReduceOp
{
    /// <summary>Element-wise sum.</summary>
    Sum,

    /// <summary>Element-wise maximum.</summary>
    Max,
}

/// <summary>
/// A group of processes and its collectives on contiguous tensors (in place where it makes sense). The only type that
/// knows a transport; groups are passed to what needs them, never looked up. A group of one makes every collective an
/// identity, so single-process code takes the same path.
/// </summary>
public interface IProcessGroup : IDisposable
{
    /// <summary>Owner and axis, e.g. "decoder.dp"; errors name it.</summary>
    string Name { get; }

    /// <summary>This process's rank in the group.</summary>
    int Rank { get; }

    /// <summary>Processes in the group.</summary>
    int Size { get; }

    /// <summary>Reduces <paramref name="tensor"/> across the group, in place.</summary>
    void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum);

    /// <summary>Copies <paramref name="tensor"/> from <paramref name="root"/> to every rank, in place.</summary>
    void Broadcast(Tensor tensor, int root = 0);

    /// <summary>Concatenates every rank's <paramref name="tensor"/> along dim 0 (rank order).</summary>
    Tensor AllGather(Tensor tensor);

    /// <summary>Sums across ranks and returns this rank's 1/Size slice of dim 0.</summary>
    Tensor ReduceScatter(Tensor tensor);

    /// <summary>
    /// Sends <paramref name="tensor"/> (shape and dtype first, so the receiver needs neither) to <paramref name="destination"/>
    /// on <paramref name="channel"/>: messages of one channel between two ranks arrive in the order sent, channels are
    /// independent of each other (a pipeline's forward activations and backward gradients).
    /// </summary>
    void Send(Tensor tensor, int destination, int channel = 0);

    /// <summary>
    /// Starts a send without waiting for the receiver (so two neighbours sending to each other cannot deadlock); disposing
    /// the handle waits until the tensor's memory may be reused. The group keeps the tensor alive until then.
    /// </summary>
    PendingOperation SendAsync(Tensor tensor, int destination, int channel = 0)
    {
        Send(tensor, destination, channel);
        return PendingOperation.Completed;
    }

    /// <summary>
    /// Starts summing <paramref name="tensor"/> across the group in place without waiting (a data-parallel bucket while
    /// backward goes on); disposing the handle waits for the sum. The tensor must stay untouched until then.
    /// </summary>
    PendingOperation AllReduceAsync(Tensor tensor)
    {
        AllReduce(tensor);
        return PendingOperation.Completed;
    }

    /// <summary>
    /// Starts summing <paramref name="tensor"/> across the group into <paramref name="result"/>, this rank's 1/Size slice of
    /// dim 0 (a bucket of the distributed optimizer while backward goes on); disposing the handle waits for it. Both
    /// tensors must stay untouched until then.
    /// </summary>
    PendingOperation ReduceScatterAsync(Tensor tensor, Tensor result)
    {
        using Tensor reduced = ReduceScatter(tensor);
        result.copy_(reduced);
        return PendingOperation.Completed;
    }

    /// <summary>Receives the tensor that <paramref name="source"/> sends on <paramref name="channel"/>, whatever its shape and dtype.</summary>
    Tensor Receive(int source, int channel = 0);

    /// <summary>Waits for every rank.</summary>
    void Barrier();
}

/// <summary>
/// A communication in flight (a send, an overlapped all-reduce); <see cref="Dispose"/> waits for it to complete (a
/// completed one returns at once).
/// </summary>
public class PendingOperation : IDisposable
{
    /// <summary>An operation that has already completed.</summary>
    public static PendingOperation Completed { get; } = new();

    /// <summary>Lets the transport progress the operation without waiting; true once it has completed.</summary>
    public virtual bool Test() => true;

    /// <summary>Waits for completion and releases what the send held.</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);
}
