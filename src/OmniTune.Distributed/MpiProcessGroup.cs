using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Distributed;

/// <summary>A process group over an Open MPI communicator (CPU tensors; in-place where MPI allows). Counts above 2³¹ are chunked.</summary>
public sealed class MpiProcessGroup : IProcessGroup
{
    const int MaxCount = int.MaxValue / 8;
    readonly IntPtr communicator;

    MpiProcessGroup(string name, IntPtr communicator)
    {
        Name = name;
        this.communicator = communicator;
        Rank = OpenMpi.Rank(communicator);
        Size = OpenMpi.Size(communicator);
    }

    /// <summary>The world: every process mpirun started.</summary>
    public static MpiProcessGroup World(string name = "world")
    {
        OpenMpi.Initialize();
        return new MpiProcessGroup(name, OpenMpi.Handle("ompi_mpi_comm_world"));
    }

    /// <summary>A sub-group of the ranks with the same <paramref name="color"/>, ordered by <paramref name="key"/>.</summary>
    public MpiProcessGroup Split(string name, int color, int key) => new(name, OpenMpi.Split(communicator, color, key));

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    static IntPtr TypeOf(Tensor t) => t.dtype switch
    {
        ScalarType.Float32 => OpenMpi.Handle("ompi_mpi_float"),
        ScalarType.Float64 => OpenMpi.Handle("ompi_mpi_double"),
        ScalarType.Int64 => OpenMpi.Handle("ompi_mpi_int64_t"),
        ScalarType.Int32 => OpenMpi.Handle("ompi_mpi_int"),
        _ => throw new NotSupportedException($"MPI collectives here take fp32, fp64, int32 or int64 tensors, not {t.dtype}"),
    };

    void RequireContiguousCpu(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous())
            throw new ArgumentException($"{Name}: MPI collectives need contiguous CPU tensors (CUDA tensors go through NCCL)");
    }

    /// <inheritdoc/>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        RequireContiguousCpu(tensor);
        IntPtr type = TypeOf(tensor), mpiOp = OpenMpi.Handle(op == ReduceOp.Sum ? "ompi_mpi_op_sum" : "ompi_mpi_op_max");
        int element = TensorMemory.ElementSize(tensor.dtype);
        IntPtr data = TensorMemory.DataPointer(tensor);
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
        OpenMpi.Allgather(TensorMemory.DataPointer(tensor), count, TypeOf(tensor), TensorMemory.DataPointer(result), count, TypeOf(tensor), communicator);
        return result;
    }

    /// <inheritdoc/>
    public Tensor ReduceScatter(Tensor tensor)
    {
        RequireContiguousCpu(tensor);
        if (tensor.shape[0] % Size != 0) throw new ArgumentException($"{Name}: dim 0 ({tensor.shape[0]}) is not divisible by the group size {Size}");
        long[] shape = tensor.shape;
        shape[0] /= Size;
        Tensor result = empty(shape, tensor.dtype);
        OpenMpi.ReduceScatterBlock(TensorMemory.DataPointer(tensor), TensorMemory.DataPointer(result), checked((int)result.numel()), TypeOf(tensor),
            OpenMpi.Handle("ompi_mpi_op_sum"), communicator);
        return result;
    }

    /// <inheritdoc/>
    public void Barrier() => OpenMpi.Barrier(communicator);

    /// <summary>Ends every rank of the job with <paramref name="code"/> (after a fatal error on this rank).</summary>
    public void Abort(int code) => OpenMpi.Abort(communicator, code);

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}
