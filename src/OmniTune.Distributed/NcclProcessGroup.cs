using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>
/// A process group over an NCCL communicator for CUDA tensors (GPU machines). It is bootstrapped from a CPU group with the
/// same members: rank 0's NCCL unique id is broadcast over it, and send/receive exchange shapes over it before the data
/// moves over NCCL. Every call runs on the legacy default stream (ordered with TorchSharp's kernels) and waits for the
/// device, so the job's watchdog sees a hung peer. Built and checked for its errors here; run only where CUDA and
/// libnccl.so.2 exist (this workplace has no GPU).
/// </summary>
public sealed class NcclProcessGroup : IProcessGroup
{
    readonly IProcessGroup bootstrap;
    readonly CollectiveWatchdog? watchdog;
    readonly Device device;
    IntPtr communicator;

    NcclProcessGroup(string name, IProcessGroup bootstrap, IntPtr communicator, Device device)
    {
        Name = name;
        this.device = device;
        this.bootstrap = bootstrap;
        this.communicator = communicator;
        watchdog = (bootstrap as MpiProcessGroup)?.Watchdog;
    }

    /// <summary>
    /// Creates the NCCL communicator for the members of <paramref name="bootstrap"/> (collective over it), this rank
    /// working on CUDA device <paramref name="deviceIndex"/> (usually its local rank on the node).
    /// </summary>
    public static NcclProcessGroup Create(IProcessGroup bootstrap, string name, int deviceIndex)
    {
        NcclLibrary.Load();
        NcclLibrary.SetDevice(deviceIndex);   // NCCL binds a communicator to the current device
        using Tensor id = zeros(128, dtype: ScalarType.Byte);
        if (bootstrap.Rank == 0)
        {
            NcclUniqueId unique = NcclLibrary.UniqueId();
            unsafe
            {
                new ReadOnlySpan<byte>(unique.Internal, 128).CopyTo(new Span<byte>((void*)TensorMemory.DataPointer(id), 128));
            }
        }
        bootstrap.Broadcast(id);
        NcclUniqueId shared;
        unsafe
        {
            new ReadOnlySpan<byte>((void*)TensorMemory.DataPointer(id), 128).CopyTo(new Span<byte>(shared.Internal, 128));
        }
        return new NcclProcessGroup(name, bootstrap, NcclLibrary.InitRank(bootstrap.Size, shared, bootstrap.Rank), new Device(DeviceType.CUDA, deviceIndex));
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int Rank => bootstrap.Rank;

    /// <inheritdoc/>
    public int Size => bootstrap.Size;

    /// <summary>NCCL's data type code for <paramref name="dtype"/>.</summary>
    public static int DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Int8 => 0,
        ScalarType.Byte => 1,
        ScalarType.Int32 => 2,
        ScalarType.Int64 => 4,
        ScalarType.Float16 => 6,
        ScalarType.Float32 => 7,
        ScalarType.Float64 => 8,
        ScalarType.BFloat16 => 9,
        _ => throw new NotSupportedException($"NCCL has no data type for {dtype}"),
    };

    /// <summary>NCCL's reduction code for <paramref name="op"/>.</summary>
    public static int Operation(ReduceOp op) => op switch
    {
        ReduceOp.Sum => 0,
        ReduceOp.Max => 2,
        _ => throw new NotSupportedException($"NCCL reduction {op} is not mapped"),
    };

    void RequireContiguousCuda(Tensor t)
    {
        if (t.device_type != DeviceType.CUDA || !t.is_contiguous())
            throw new ArgumentException($"{Name}: NCCL collectives need contiguous CUDA tensors (CPU tensors go through MPI)");
        ObjectDisposedException.ThrowIf(communicator == IntPtr.Zero, this);
    }

    /// <summary>Issues one NCCL call and waits for the device under the watchdog.</summary>
    void Run(string call, Tensor tensor, Action issue)
    {
        using var watched = watchdog?.Watch($"rank {Rank} of NCCL group '{Name}': {call} of {tensor.numel()} {tensor.dtype} elements");
        issue();
        cuda.synchronize(tensor.device);
    }

    static IntPtr Pointer(Tensor t) => TensorMemory.DataPointer(t);

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        RequireContiguousCuda(tensor);
        Run("all-reduce", tensor, () => NcclLibrary.AllReduce(Pointer(tensor), Pointer(tensor), (ulong)tensor.numel(), DataType(tensor.dtype), Operation(op), communicator, IntPtr.Zero));
    }

    /// <inheritdoc/>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        RequireContiguousCuda(tensor);
        Run($"broadcast from rank {root}", tensor, () => NcclLibrary.Broadcast(Pointer(tensor), Pointer(tensor), (ulong)tensor.numel(), DataType(tensor.dtype), root, communicator, IntPtr.Zero));
    }

    /// <inheritdoc/>
    public Tensor AllGather(Tensor tensor)
    {
        RequireContiguousCuda(tensor);
        long[] shape = tensor.shape;
        shape[0] *= Size;
        Tensor result = empty(shape, tensor.dtype, tensor.device);
        Run("all-gather", tensor, () => NcclLibrary.AllGather(Pointer(tensor), Pointer(result), (ulong)tensor.numel(), DataType(tensor.dtype), communicator, IntPtr.Zero));
        return result;
    }

    /// <inheritdoc/>
    public Tensor ReduceScatter(Tensor tensor)
    {
        RequireContiguousCuda(tensor);
        if (tensor.shape[0] % Size != 0) throw new ArgumentException($"{Name}: dim 0 ({tensor.shape[0]}) is not divisible by the group size {Size}");
        long[] shape = tensor.shape;
        shape[0] /= Size;
        Tensor result = empty(shape, tensor.dtype, tensor.device);
        Run("reduce-scatter", tensor, () => NcclLibrary.ReduceScatter(Pointer(tensor), Pointer(result), (ulong)result.numel(), DataType(tensor.dtype), 0, communicator, IntPtr.Zero));
        return result;
    }

    /// <inheritdoc/>
    public void Send(Tensor tensor, int destination, int channel = 0)
    {
        RequireContiguousCuda(tensor);
        var header = new long[] { (long)tensor.dtype }.Concat(tensor.shape).ToArray();
        using (Tensor h = torch.tensor(header)) bootstrap.Send(h, destination, channel);
        Run($"send to rank {destination}", tensor, () => NcclLibrary.Send(Pointer(tensor), (ulong)tensor.numel(), DataType(tensor.dtype), destination, communicator, IntPtr.Zero));
    }

    /// <inheritdoc/>
    public Tensor Receive(int source, int channel = 0)
    {
        long[] header;
        using (Tensor h = bootstrap.Receive(source, channel)) header = h.data<long>().ToArray();
        Tensor result = empty(header[1..], (ScalarType)header[0], device);
        Run($"receive from rank {source}", result, () => NcclLibrary.Receive(Pointer(result), (ulong)result.numel(), DataType(result.dtype), source, communicator, IntPtr.Zero));
        return result;
    }

    /// <inheritdoc/>
    public void Barrier()
    {
        cuda.synchronize(device);
        bootstrap.Barrier();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (communicator == IntPtr.Zero) return;
        NcclLibrary.Destroy(communicator);
        communicator = IntPtr.Zero;
    }
}
