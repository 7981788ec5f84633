namespace OmniTune.Core.Native;

/// <summary>Resident memory of this process from /proc/self/status, and a reset of its peak (Linux).</summary>
public static class ProcessMemory
{
    /// <summary>Current resident set size in bytes.</summary>
    public static long Rss() => Field("VmRSS:");

    /// <summary>Peak resident set size since the last <see cref="ResetPeak"/>, in bytes.</summary>
    public static long Peak() => Field("VmHWM:");

    /// <summary>Resets the peak ("5" to /proc/self/clear_refs).</summary>
    public static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    static long Field(string name)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(name, StringComparison.Ordinal))
                return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }
}
