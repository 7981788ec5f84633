using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>
/// A process group over an Open MPI communicator (CPU tensors; in-place where MPI allows). Counts above 2³¹ are chunked.
/// MPI has no 16-bit float type: bf16 and fp16 tensors (a bf16 model's activations under tensor, sequence or context
/// parallel) move as their bits, and are summed in fp32 and rounded once.
/// Reduce-scatter runs as a ring over point-to-point messages (as NCCL and Gloo do it): Open MPI 4.1's
/// MPI_Reduce_scatter_block makes full-size temporaries on every call and ran 2.6× slower than its all-reduce of the same
/// tensor on one node (`--only allreduce` of the bench, every algorithm of coll_tuned tried).
/// Every call is watched: one that waits longer than the timeout ends the job with a message naming the rank, the group and
/// the call, instead of hanging on a dead peer.
/// </summary>
public sealed class MpiProcessGroup : IProcessGroup
{
    /// <summary>Megatron's default for --distributed-timeout-minutes.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(10);

    const int MaxCount = int.MaxValue / 8;
    const int MaxDims = 8;
    const int HeaderTag = 7301, DataTag = 7302;
    const int RingTag = 1 << 20;   // + the collective's sequence number (mod 4096): clear of the send/receive channels' tags
    int ringSequence;
    readonly IntPtr communicator;
    readonly CollectiveWatchdog watchdog;
    readonly int worldRank;

    MpiProcessGroup(string name, IntPtr communicator, CollectiveWatchdog watchdog, int worldRank)
    {
        Name = name;
        this.communicator = communicator;
        this.watchdog = watchdog;
        this.worldRank = worldRank;
        Rank = OpenMpi.Rank(communicator);
        Size = OpenMpi.Size(communicator);
    }

    /// <summary>The world: every process mpirun started. A call that waits longer than <paramref name="timeout"/> ends the job.</summary>
    public static MpiProcessGroup World(string name = "world", TimeSpan? timeout = null)
    {
        OpenMpi.Initialize();
        IntPtr world = OpenMpi.Handle("ompi_mpi_comm_world");
        int rank = OpenMpi.Rank(world), size = OpenMpi.Size(world);
        var watchdog = new CollectiveWatchdog(timeout ?? DefaultTimeout, message =>
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"[rank {rank}/{size}] error: {message}");
            Console.Error.Flush();
            OpenMpi.Abort(world, 124);
        });
        return new MpiProcessGroup(name, world, watchdog, rank);
    }

    /// <summary>A sub-group of the ranks with the same <paramref name="color"/>, ordered by <paramref name="key"/>.</summary>
    public MpiProcessGroup Split(string name, int color, int key) => new(name, OpenMpi.Split(communicator, color, key), watchdog, worldRank);

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>How long one call may wait for its peers.</summary>
    public TimeSpan Timeout => watchdog.Timeout;

    /// <summary>The job's watchdog, shared with groups built on this one (NCCL groups bootstrapped from it).</summary>
    internal CollectiveWatchdog Watchdog => watchdog;

    CollectiveWatchdog.Scope Watch(string call, Tensor? tensor = null) =>
        watchdog.Watch($"rank {Rank} of group '{Name}' (world rank {worldRank}): {call}" + (tensor is null ? "" : $" of {tensor.numel()} {tensor.dtype} elements"));

    static IntPtr TypeOf(Tensor t) => t.dtype switch
    {
        ScalarType.Float32 => OpenMpi.Handle("ompi_mpi_float"),
        ScalarType.Float64 => OpenMpi.Handle("ompi_mpi_double"),
        ScalarType.Int64 => OpenMpi.Handle("ompi_mpi_int64_t"),
        ScalarType.Int32 => OpenMpi.Handle("ompi_mpi_int"),
        _ => throw new NotSupportedException($"MPI reductions here take fp32, fp64, int32 or int64 tensors, not {t.dtype}"),
    };

    static bool IsHalf(Tensor t) => t.dtype is ScalarType.BFloat16 or ScalarType.Float16;

    void RequireContiguousCpu(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous())
            throw new ArgumentException($"{Name}: MPI collectives need contiguous CPU tensors (CUDA tensors go through NCCL)");
    }

    void RequirePeer(int peer)
    {
        if (peer < 0 || peer >= Size || peer == Rank)
            throw new ArgumentOutOfRangeException(nameof(peer), $"group '{Name}': rank {Rank} cannot exchange with rank {peer} (group of {Size})");
    }

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        RequireContiguousCpu(tensor);
        if (IsHalf(tensor))
        {
            using Tensor wide = tensor.to(ScalarType.Float32);
            AllReduce(wide, op);
            tensor.copy_(wide);
            return;
        }
        IntPtr type = TypeOf(tensor), mpiOp = OpenMpi.Handle(op == ReduceOp.Sum ? "ompi_mpi_op_sum" : "ompi_mpi_op_max");
        int element = TensorMemory.ElementSize(tensor.dtype);
        IntPtr data = TensorMemory.DataPointer(tensor);
        using var watched = Watch("all-reduce", tensor);
        for (long offset = 0; offset < tensor.numel(); offset += MaxCount)
        {
            int count = (int)Math.Min(MaxCount, tensor.numel() - offset);
            OpenMpi.Allreduce(OpenMpi.InPlace, data + (nint)(offset * element), count, type, mpiOp, communicator);
        }
    }

    /// <inheritdoc/>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        RequireContiguousCpu(tensor);
        IntPtr data = TensorMemory.DataPointer(tensor);
        long bytes = tensor.numel() * TensorMemory.ElementSize(tensor.dtype);
        IntPtr byteType = OpenMpi.Handle("ompi_mpi_byte");
        using var watched = Watch($"broadcast from rank {root}", tensor);
        for (long offset = 0; offset < bytes; offset += MaxCount)
            OpenMpi.Bcast(data + (nint)offset, (int)Math.Min(MaxCount, bytes - offset), byteType, root, communicator);
    }

    /// <inheritdoc/>
    public Tensor AllGather(Tensor tensor)
    {
        RequireContiguousCpu(tensor);
        long[] shape = tensor.shape;
        shape[0] *= Size;
        Tensor result = empty(shape, tensor.dtype);
        int count = checked((int)tensor.numel());
        IntPtr type = IsHalf(tensor) ? OpenMpi.Handle("ompi_mpi_uint16_t") : TypeOf(tensor);   // a gather sums nothing: 16-bit floats move as their bits
        using var watched = Watch("all-gather", tensor);
        OpenMpi.Allgather(TensorMemory.DataPointer(tensor), count, type, TensorMemory.DataPointer(result), count, type, communicator);
        return result;
    }

    /// <inheritdoc/>
    public Tensor ReduceScatter(Tensor tensor)
    {
        long[] shape = tensor.shape;
        if (shape.Length == 0 || shape[0] % Size != 0) throw new ArgumentException($"{Name}: dim 0 ({(shape.Length == 0 ? 0 : shape[0])}) is not divisible by the group size {Size}");
        shape[0] /= Size;
        if (IsHalf(tensor))
        {
            using Tensor wide = tensor.to(ScalarType.Float32);
            using Tensor sums = ReduceScatter(wide);
            return sums.to(tensor.dtype);
        }
        Tensor result = empty(shape, tensor.dtype);
        using (ReduceScatterAsync(tensor, result)) { }   // waits
        return result;
    }

    /// <inheritdoc/>
    public PendingOperation ReduceScatterAsync(Tensor tensor, Tensor result)
    {
        RequireContiguousCpu(tensor);
        RequireContiguousCpu(result);
        if (tensor.numel() != result.numel() * Size || tensor.dtype != result.dtype)
            throw new ArgumentException($"{Name}: a reduce-scatter of {tensor.numel()} {tensor.dtype} elements over {Size} ranks cannot land in {result.numel()} {result.dtype} elements");
        TypeOf(tensor);   // a type MPI moves
        return new RingReduceScatter(this, tensor, result, RingTag + ringSequence++ % 4096);
    }

    /// <inheritdoc/>
    public void Send(Tensor tensor, int destination, int channel = 0)
    {
        using PendingOperation pending = SendAsync(tensor, destination, channel);
    }

    /// <inheritdoc/>
    public PendingOperation SendAsync(Tensor tensor, int destination, int channel = 0)
    {
        RequireContiguousCpu(tensor);
        RequirePeer(destination);
        if (tensor.dim() > MaxDims) throw new ArgumentException($"{Name}: send takes tensors of at most {MaxDims} dimensions, not {tensor.dim()}");
        ArgumentOutOfRangeException.ThrowIfNegative(channel);
        var header = new long[2 + MaxDims];
        header[0] = (long)tensor.dtype;
        header[1] = tensor.dim();
        tensor.shape.CopyTo(header, 2);
        var pending = new MpiPending(this, $"send to rank {destination} on channel {channel}", tensor, header);
        pending.Requests.Add(OpenMpi.Isend(pending.HeaderPointer, header.Length, OpenMpi.Handle("ompi_mpi_int64_t"), destination, HeaderTag + 2 * channel, communicator));
        Transfer(pending.Tensor, (data, count, type) => pending.Requests.Add(OpenMpi.Isend(data, count, type, destination, DataTag + 2 * channel, communicator)));
        return pending;
    }

    /// <inheritdoc/>
    public PendingOperation AllReduceAsync(Tensor tensor)
    {
        RequireContiguousCpu(tensor);
        IntPtr type = TypeOf(tensor), sum = OpenMpi.Handle("ompi_mpi_op_sum");
        int element = TensorMemory.ElementSize(tensor.dtype);
        var pending = new MpiPending(this, "overlapped all-reduce", tensor, null);
        IntPtr data = TensorMemory.DataPointer(pending.Tensor);
        for (long offset = 0; offset < tensor.numel(); offset += MaxCount)
        {
            int count = (int)Math.Min(MaxCount, tensor.numel() - offset);
            pending.Requests.Add(OpenMpi.Iallreduce(OpenMpi.InPlace, data + (nint)(offset * element), count, type, sum, communicator));
        }
        return pending;
    }

    /// <summary>
    /// An MPI operation in flight (a send with its pinned header, or a non-blocking collective): an alias of the tensor
    /// lives until every request completed.
    /// </summary>
    sealed class MpiPending : PendingOperation
    {
        readonly MpiProcessGroup group;
        readonly string call;
        System.Runtime.InteropServices.GCHandle header;
        bool done;

        public MpiPending(MpiProcessGroup group, string call, Tensor tensor, long[]? header)
        {
            this.group = group;
            this.call = call;
            Tensor = tensor.alias().DetachFromDisposeScope();   // lives until the operation completes, whatever scope the caller is in
            if (header is not null) this.header = System.Runtime.InteropServices.GCHandle.Alloc(header, System.Runtime.InteropServices.GCHandleType.Pinned);
        }

        public Tensor Tensor { get; }

        public IntPtr HeaderPointer => header.AddrOfPinnedObject();

        public List<IntPtr> Requests { get; } = [];

        public override bool Test()
        {
            if (done) return true;
            bool complete = true;
            for (int i = 0; i < Requests.Count; i++)
            {
                if (Requests[i] == IntPtr.Zero) continue;
                IntPtr request = Requests[i];
                if (OpenMpi.Test(ref request)) Requests[i] = IntPtr.Zero;
                else complete = false;
            }
            return complete;
        }

        public override void Dispose()
        {
            if (done) return;
            done = true;
            using (group.Watch(call, Tensor))
            {
                foreach (IntPtr request in Requests)
                {
                    if (request != IntPtr.Zero) OpenMpi.Wait(request);
                }
            }
            if (header.IsAllocated) header.Free();
            Tensor.Dispose();
            base.Dispose();
        }
    }

    /// <summary>
    /// A ring reduce-scatter in flight: Size − 1 steps; at step k rank r sends its partial sum of chunk (r − k − 1) mod Size
    /// to rank r + 1 and receives rank r − 1's partial sum of chunk (r − k − 2) mod Size, to which it adds its own; after the
    /// last step it holds the whole sum of chunk r. Each step's receive lands in one of two chunk buffers (the last one in
    /// the result), so a step's send buffer is never overwritten before that send completed. <see cref="Test"/> moves it on
    /// as far as its messages have arrived (backward calls it layer by layer); <see cref="Dispose"/> finishes it.
    /// </summary>
    sealed class RingReduceScatter : PendingOperation
    {
        readonly MpiProcessGroup group;
        readonly Tensor input, result, spare;
        readonly int tag, steps;
        readonly List<IntPtr> requests = [];
        int step;

        public RingReduceScatter(MpiProcessGroup group, Tensor tensor, Tensor result, int tag)
        {
            this.group = group;
            this.tag = tag;
            input = tensor.reshape(-1).DetachFromDisposeScope();   // views: they live until the operation completes
            this.result = result.reshape(-1).DetachFromDisposeScope();
            steps = group.Size - 1;
            spare = (steps > 1 ? empty_like(this.result) : this.result.alias()).DetachFromDisposeScope();
            if (steps == 0) this.result.copy_(input);
            else Post();
        }

        Tensor Chunk(int index)
        {
            long n = result.shape[0];
            return input.narrow(0, ((index % group.Size + group.Size) % group.Size) * n, n);
        }

        /// <summary>Step k receives into this buffer; step Size − 2's is the result.</summary>
        Tensor Buffer(int k) => (steps - 1 - k) % 2 == 0 ? result : spare;

        void Post()
        {
            int rank = group.Rank, size = group.Size;
            using Tensor send = step == 0 ? Chunk(rank - 1) : Buffer(step - 1).alias();
            Tensor receive = Buffer(step);
            Transfer(receive, (data, count, type) => requests.Add(OpenMpi.Irecv(data, count, type, (rank - 1 + size) % size, tag, group.communicator)));
            Transfer(send, (data, count, type) => requests.Add(OpenMpi.Isend(data, count, type, (rank + 1) % size, tag, group.communicator)));
        }

        /// <summary>Adds this rank's part to the chunk just received and starts the next step.</summary>
        void Advance()
        {
            requests.Clear();
            using (Tensor own = Chunk(group.Rank - step - 2)) Buffer(step).add_(own);
            if (++step < steps) Post();
        }

        public override bool Test()
        {
            while (step < steps)
            {
                for (int i = 0; i < requests.Count; i++)
                {
                    IntPtr request = requests[i];
                    if (request == IntPtr.Zero) continue;
                    if (!OpenMpi.Test(ref request)) return false;
                    requests[i] = IntPtr.Zero;
                }
                Advance();
            }
            return true;
        }

        public override void Dispose()
        {
            if (step > steps) return;   // disposed already
            if (step < steps)
            {
                using (group.Watch("reduce-scatter", input))
                {
                    while (step < steps)
                    {
                        foreach (IntPtr request in requests)
                        {
                            if (request != IntPtr.Zero) OpenMpi.Wait(request);
                        }
                        Advance();
                    }
                }
            }
            step = steps + 1;   // disposed: a second call does nothing
            input.Dispose();
            result.Dispose();
            spare.Dispose();
            base.Dispose();
        }
    }

    /// <inheritdoc/>
    public Tensor Receive(int source, int channel = 0)
    {
        RequirePeer(source);
        var header = new long[2 + MaxDims];
        using var watched = Watch($"receive from rank {source} on channel {channel}");
        unsafe
        {
            fixed (long* h = header) OpenMpi.Recv((IntPtr)h, header.Length, OpenMpi.Handle("ompi_mpi_int64_t"), source, HeaderTag + 2 * channel, communicator);
        }
        if (header[1] is < 0 or > MaxDims) throw new InvalidOperationException($"{Name}: rank {source} sent a malformed tensor header ({header[1]} dimensions)");
        Tensor result = empty(header.AsSpan(2, (int)header[1]).ToArray(), (ScalarType)header[0]);
        Transfer(result, (data, count, type) => OpenMpi.Recv(data, count, type, source, DataTag + 2 * channel, communicator));
        return result;
    }

    /// <summary>Moves a tensor's bytes in chunks MPI's int counts can address.</summary>
    static void Transfer(Tensor tensor, Action<IntPtr, int, IntPtr> call)
    {
        IntPtr data = TensorMemory.DataPointer(tensor), byteType = OpenMpi.Handle("ompi_mpi_byte");
        long bytes = tensor.numel() * TensorMemory.ElementSize(tensor.dtype);
        for (long offset = 0; offset < bytes; offset += MaxCount)
            call(data + (nint)offset, (int)Math.Min(MaxCount, bytes - offset), byteType);
    }

    /// <inheritdoc/>
    public void Barrier()
    {
        using var watched = Watch("barrier");
        OpenMpi.Barrier(communicator);
    }

    /// <summary>Ends every rank of the job with <paramref name="code"/> (after a fatal error on this rank).</summary>
    public void Abort(int code) => OpenMpi.Abort(communicator, code);

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
