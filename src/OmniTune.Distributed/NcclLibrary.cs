using System.Runtime.InteropServices;

namespace OmniTune.Distributed;

/// <summary>NCCL's 128-byte unique id, passed by value to ncclCommInitRank and broadcast over MPI.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct NcclUniqueId
{
    /// <summary>The opaque bytes.</summary>
    public fixed byte Internal[128];
}

/// <summary>
/// Binding to NVIDIA's <c>libnccl.so.2</c> for CUDA tensors (feasibility §3), in the same function-pointer style as the
/// MPI binding. Built and load-checked here; exercised only on GPU machines (this workplace has none).
/// Data types: float32 = 7, float16 = 6, bfloat16 = 9; ops: sum = 0, avg = 4. Collectives run on the legacy default
/// stream (0), which orders them with TorchSharp's kernels.
/// </summary>
public static unsafe class NcclLibrary
{
    static IntPtr library;

    /// <summary>Loads libnccl.so.2; an error says how to get it.</summary>
    public static void Load()
    {
        if (library != IntPtr.Zero) return;
        if (!NativeLibrary.TryLoad("libnccl.so.2", out library))
            throw new DllNotFoundException("libnccl.so.2 not found: install NCCL (NVIDIA's repositories, or the nvidia-nccl-cu12 wheel) on the GPU machine");
    }

    /// <summary>cudaSetDevice from the CUDA runtime that TorchSharp's CUDA package ships (NCCL binds communicators to the current device).</summary>
    public static void SetDevice(int index)
    {
        IntPtr runtime = IntPtr.Zero;
        foreach (string name in new[] { "libcudart.so.12", "libcudart.so.13", "libcudart.so" })
            if (NativeLibrary.TryLoad(name, out runtime)) break;
        if (runtime == IntPtr.Zero) throw new DllNotFoundException("libcudart.so not found: NCCL groups need the CUDA runtime (build with -p:OmniTuneTorchBackend=cuda on a GPU machine)");
        var f = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(runtime, "cudaSetDevice");
        int result = f(index);
        if (result != 0) throw new InvalidOperationException($"cudaSetDevice({index}) failed with CUDA error {result}");
    }

    static T Function<T>(string name) where T : unmanaged
    {
        Load();
        IntPtr address = NativeLibrary.GetExport(library, name);
        return *(T*)&address;
    }

    /// <summary>ncclGetUniqueId (rank 0, before the broadcast).</summary>
    public static NcclUniqueId UniqueId()
    {
        NcclUniqueId id;
        var f = (delegate* unmanaged<NcclUniqueId*, int>)Function<IntPtr>("ncclGetUniqueId");
        Check(f(&id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>ncclCommInitRank.</summary>
    public static IntPtr InitRank(int ranks, NcclUniqueId id, int rank)
    {
        IntPtr comm;
        var f = (delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int>)Function<IntPtr>("ncclCommInitRank");
        Check(f(&comm, ranks, id, rank), "ncclCommInitRank");
        return comm;
    }

    /// <summary>ncclAllReduce on device buffers (in place when send == receive).</summary>
    public static void AllReduce(IntPtr send, IntPtr receive, ulong count, int dataType, int op, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, ulong, int, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclAllReduce"))(send, receive, count, dataType, op, comm, stream), "ncclAllReduce");

    /// <summary>ncclBroadcast on device buffers.</summary>
    public static void Broadcast(IntPtr send, IntPtr receive, ulong count, int dataType, int root, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, ulong, int, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclBroadcast"))(send, receive, count, dataType, root, comm, stream), "ncclBroadcast");

    /// <summary>ncclAllGather: <paramref name="sendCount"/> elements from each rank, concatenated in rank order.</summary>
    public static void AllGather(IntPtr send, IntPtr receive, ulong sendCount, int dataType, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, ulong, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclAllGather"))(send, receive, sendCount, dataType, comm, stream), "ncclAllGather");

    /// <summary>ncclReduceScatter: <paramref name="receiveCount"/> reduced elements land on each rank.</summary>
    public static void ReduceScatter(IntPtr send, IntPtr receive, ulong receiveCount, int dataType, int op, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, ulong, int, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclReduceScatter"))(send, receive, receiveCount, dataType, op, comm, stream), "ncclReduceScatter");

    /// <summary>ncclSend (point to point, NCCL ≥ 2.7).</summary>
    public static void Send(IntPtr buffer, ulong count, int dataType, int peer, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, ulong, int, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclSend"))(buffer, count, dataType, peer, comm, stream), "ncclSend");

    /// <summary>ncclRecv (point to point, NCCL ≥ 2.7).</summary>
    public static void Receive(IntPtr buffer, ulong count, int dataType, int peer, IntPtr comm, IntPtr stream) =>
        Check(((delegate* unmanaged<IntPtr, ulong, int, int, IntPtr, IntPtr, int>)Function<IntPtr>("ncclRecv"))(buffer, count, dataType, peer, comm, stream), "ncclRecv");

    /// <summary>ncclCommDestroy.</summary>
    public static void Destroy(IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, int>)Function<IntPtr>("ncclCommDestroy"))(comm), "ncclCommDestroy");

    static void Check(int result, string call)
    {
        if (result != 0) throw new InvalidOperationException($"{call} failed with NCCL error {result}");
    }
}
