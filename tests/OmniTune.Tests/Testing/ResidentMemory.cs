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
}
