using System.Runtime.InteropServices;

namespace OmniTune.Core.Native;

/// <summary>
/// glibc's dynamic mmap threshold lets freed multi-megabyte tensor buffers stay in the heap arenas, so RSS
/// climbs by megabytes per training step even when every tensor is disposed. Fixing the threshold at 1 MiB
/// makes large buffers go back to the kernel on free and keeps memory flat (feasibility §1).
/// </summary>
public static partial class MallocTuning
{
    const int MallocMmapThreshold = -3;
    const int OneMebibyte = 1 << 20;
    static int applied;

    /// <summary>Sets the mmap threshold once per process; a no-op off glibc or when already applied.</summary>
    public static void Apply()
    {
        if (Interlocked.Exchange(ref applied, 1) == 1 || !OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") != null || CachingAllocator.InUse) return;   // the user's setting; glibc's malloc unused
        try
        {
            if (mallopt(MallocMmapThreshold, OneMebibyte) == 0) Console.Error.WriteLine("warning: mallopt(M_MMAP_THRESHOLD) was refused; RSS may grow across training steps");
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): nothing to tune.
        }
        catch (DllNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int mallopt(int parameter, int value);
}
