using System.Runtime.InteropServices;

namespace OmniTune.Distributed;

/// <summary>
/// A direct binding to Open MPI's <c>libmpi.so.40</c> (feasibility §2: MPI.NET does not work with Open MPI). The library
/// is opened with RTLD_GLOBAL (Open MPI loads its plugins itself); predefined handles are the addresses of its exported
/// globals; MPI_IN_PLACE is (void*)1.
/// </summary>
public static unsafe partial class OpenMpi
{
    const int RtldNow = 2, RtldGlobal = 0x100;
    static readonly object Gate = new();
    static IntPtr library;
    static bool initialized;

    /// <summary>MPI_IN_PLACE.</summary>
    public static readonly IntPtr InPlace = 1;

    /// <summary>Whether this process was started by mpirun (Open MPI's environment).</summary>
    public static bool LaunchedByMpirun => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;

    /// <summary>World size announced by mpirun (1 without it).</summary>
    public static int WorldSizeFromEnvironment => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE"), out int n) ? n : 1;

    static IntPtr Symbol(string name) => NativeLibrary.GetExport(library, name);

    /// <summary>Address of an exported predefined handle (ompi_mpi_comm_world, ompi_mpi_float, …).</summary>
    public static IntPtr Handle(string name) => Symbol(name);

    /// <summary>Initialises MPI once (thread level multiple requested).</summary>
    public static void Initialize()
    {
        lock (Gate)
        {
            if (initialized) return;
            library = dlopen("libmpi.so.40", RtldNow | RtldGlobal);
            if (library == IntPtr.Zero)
                throw new DllNotFoundException("libmpi.so.40 not found: install Open MPI (Debian: apt-get install openmpi-bin; bash tools/setup.sh does it)");
            int provided;
            Check(((delegate* unmanaged<IntPtr, IntPtr, int, int*, int>)Symbol("MPI_Init_thread"))(IntPtr.Zero, IntPtr.Zero, 3, &provided), "MPI_Init_thread");
            initialized = true;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Finalize_();
        }
    }

    static void Finalize_()
    {
        lock (Gate)
        {
            if (!initialized) return;
            initialized = false;
            ((delegate* unmanaged<int>)Symbol("MPI_Finalize"))();
        }
    }

    /// <summary>MPI_Comm_rank.</summary>
    public static int Rank(IntPtr comm)
    {
        int rank;
        Check(((delegate* unmanaged<IntPtr, int*, int>)Symbol("MPI_Comm_rank"))(comm, &rank), "MPI_Comm_rank");
        return rank;
    }

    /// <summary>MPI_Comm_size.</summary>
    public static int Size(IntPtr comm)
    {
        int size;
        Check(((delegate* unmanaged<IntPtr, int*, int>)Symbol("MPI_Comm_size"))(comm, &size), "MPI_Comm_size");
        return size;
    }

    /// <summary>MPI_Allreduce.</summary>
    public static void Allreduce(IntPtr send, IntPtr receive, int count, IntPtr type, IntPtr op, IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int>)Symbol("MPI_Allreduce"))(send, receive, count, type, op, comm), "MPI_Allreduce");

    /// <summary>MPI_Bcast.</summary>
    public static void Bcast(IntPtr buffer, int count, IntPtr type, int root, IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int>)Symbol("MPI_Bcast"))(buffer, count, type, root, comm), "MPI_Bcast");

    /// <summary>MPI_Allgather.</summary>
    public static void Allgather(IntPtr send, int sendCount, IntPtr sendType, IntPtr receive, int receiveCount, IntPtr receiveType, IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int, IntPtr, IntPtr, int>)Symbol("MPI_Allgather"))(send, sendCount, sendType, receive, receiveCount, receiveType, comm), "MPI_Allgather");

    /// <summary>MPI_Send (blocking).</summary>
    public static void Send(IntPtr buffer, int count, IntPtr type, int destination, int tag, IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, int>)Symbol("MPI_Send"))(buffer, count, type, destination, tag, comm), "MPI_Send");

    /// <summary>MPI_Isend: starts a send; returns the request to wait on.</summary>
    public static IntPtr Isend(IntPtr buffer, int count, IntPtr type, int destination, int tag, IntPtr comm)
    {
        IntPtr request = IntPtr.Zero;
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int>)Symbol("MPI_Isend"))(buffer, count, type, destination, tag, comm, &request), "MPI_Isend");
        return request;
    }

    /// <summary>MPI_Irecv: starts a receive; returns the request to wait on.</summary>
    public static IntPtr Irecv(IntPtr buffer, int count, IntPtr type, int source, int tag, IntPtr comm)
    {
        IntPtr request = IntPtr.Zero;
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int>)Symbol("MPI_Irecv"))(buffer, count, type, source, tag, comm, &request), "MPI_Irecv");
        return request;
    }

    /// <summary>MPI_Iallreduce: starts an all-reduce; returns the request to wait on.</summary>
    public static IntPtr Iallreduce(IntPtr send, IntPtr receive, int count, IntPtr type, IntPtr op, IntPtr comm)
    {
        IntPtr request = IntPtr.Zero;
        Check(((delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, IntPtr*, int>)Symbol("MPI_Iallreduce"))(send, receive, count, type, op, comm, &request), "MPI_Iallreduce");
        return request;
    }

    /// <summary>MPI_Test on one request (status ignored): progresses it; true once complete (the request is then freed and set to null).</summary>
    public static bool Test(ref IntPtr request)
    {
        int flag = 0;
        fixed (IntPtr* r = &request)
            Check(((delegate* unmanaged<IntPtr*, int*, IntPtr, int>)Symbol("MPI_Test"))(r, &flag, IntPtr.Zero), "MPI_Test");
        return flag != 0;
    }

    /// <summary>MPI_Wait on one request (status ignored).</summary>
    public static void Wait(IntPtr request)
    {
        Check(((delegate* unmanaged<IntPtr*, IntPtr, int>)Symbol("MPI_Wait"))(&request, IntPtr.Zero), "MPI_Wait");
    }

    /// <summary>MPI_Recv (blocking; status ignored).</summary>
    public static void Recv(IntPtr buffer, int count, IntPtr type, int source, int tag, IntPtr comm) =>
        Check(((delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr, int>)Symbol("MPI_Recv"))(buffer, count, type, source, tag, comm, IntPtr.Zero), "MPI_Recv");

    /// <summary>MPI_Barrier.</summary>
    public static void Barrier(IntPtr comm) => Check(((delegate* unmanaged<IntPtr, int>)Symbol("MPI_Barrier"))(comm), "MPI_Barrier");

    /// <summary>MPI_Comm_split.</summary>
    public static IntPtr Split(IntPtr comm, int color, int key)
    {
        IntPtr result = IntPtr.Zero;
        Check(((delegate* unmanaged<IntPtr, int, int, IntPtr*, int>)Symbol("MPI_Comm_split"))(comm, color, key, &result), "MPI_Comm_split");
        return result;
    }

    /// <summary>MPI_Abort: ends every rank of the job.</summary>
    public static void Abort(IntPtr comm, int code) => ((delegate* unmanaged<IntPtr, int, int>)Symbol("MPI_Abort"))(comm, code);

    static void Check(int code, string call)
    {
        if (code != 0) throw new InvalidOperationException($"{call} failed with MPI error {code}");
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr dlopen(string file, int mode);
}
