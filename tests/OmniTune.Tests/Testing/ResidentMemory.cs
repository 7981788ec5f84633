using System.Diagnostics;

namespace OmniTune.Tests.Testing;

/// <summary>Resident set size after a full collection, for tests that watch memory across training steps.</summary>
public static class ResidentMemory
{
    /// <summary>Bytes resident now, after the GC and finalizers have run.</summary>
    public static long AfterCollection()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return process.WorkingSet64;
    }

    /// <summary>
    /// Resets the process's peak resident set (VmHWM) to the current size through /proc/self/clear_refs and returns
    /// it; long.MaxValue where the kernel does not allow it (so a peak difference comes out negative: not measurable).
    /// </summary>
    public static long ResetPeak()
    {
        AfterCollection();
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return long.MaxValue;
        }
        return Peak();
    }

    /// <summary>VmHWM, the peak resident set, in bytes.</summary>
    public static long Peak()
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }
}
