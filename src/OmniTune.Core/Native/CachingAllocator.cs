using System.Runtime.InteropServices;

namespace OmniTune.Core.Native;

/// <summary>
/// jemalloc as the process's allocator on Linux, the way Intel's PyTorch launcher sets it up: libtorch's CPU tensors come
/// from malloc, and glibc's (with <see cref="MallocTuning"/>'s 1 MiB mmap threshold) hands every buffer above 1 MiB back
/// to the kernel when it is freed, which zeroes the pages again at the next allocation — up to half of a CPU training
/// step on a virtual machine where page faults are dear. jemalloc, told to keep large buffers in its one ordinary arena and
/// never to purge them (<see cref="Settings"/>), reuses them from one step to the next. The allocator of a process cannot change once it runs, so
/// <see cref="Use"/> executes the same program again in place (same process id, arguments and descriptors, so mpirun
/// and pipes see no difference) with jemalloc preloaded. <c>OMNITUNE_ALLOCATOR=glibc</c> keeps glibc's; a process
/// started with an <c>LD_PRELOAD</c> of its own keeps it; without Debian's <c>libjemalloc2</c> nothing changes.
/// </summary>
public static partial class CachingAllocator
{
    /// <summary>The environment variable that chooses the allocator: <c>jemalloc</c> (default where installed) or <c>glibc</c>.</summary>
    public const string Variable = "OMNITUNE_ALLOCATOR";

    /// <summary>
    /// jemalloc's settings when the user gave none: one arena (with dirty pages never purged, an arena per thread would
    /// each keep their own: a finetune run's memory grew by a megabyte an iteration), large buffers in it, never purged.
    /// </summary>
    public const string Settings = "narenas:1,oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1";

    const string Library = "libjemalloc.so.2";
    const string Marker = "OMNITUNE_JEMALLOC_PRELOADED";   // set for the program started again, which takes LD_PRELOAD back out
    static readonly string[] LibraryFolders = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];

    /// <summary>
    /// Called first thing by a program (not by a library or a test host): when jemalloc is installed and wanted but not
    /// loaded, replaces this process with the same program with jemalloc preloaded (does not return then). Returns
    /// otherwise — also when the replacement fails, with a warning on stderr.
    /// </summary>
    public static void Use()
    {
        if (!OperatingSystem.IsLinux()) return;
        if (Environment.GetEnvironmentVariable(Marker) is not null)
        {
            // Started again by this method: the programs this one starts (ffmpeg, python3, mpirun) get the environment
            // the user gave it (another omnitune among them makes its own choice).
            Environment.SetEnvironmentVariable("LD_PRELOAD", null);
            Environment.SetEnvironmentVariable(Marker, null);
            return;
        }
        if (InUse) return;
        string? choice = Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } set ? set : null;
        if (string.Equals(choice, "glibc", StringComparison.OrdinalIgnoreCase)) return;
        if (choice is not null && !string.Equals(choice, "jemalloc", StringComparison.OrdinalIgnoreCase))
        {
            Console.Error.WriteLine($"warning: {Variable}={choice} is neither 'jemalloc' nor 'glibc'; keeping glibc's allocator");
            return;
        }
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LD_PRELOAD"))) return;   // the user's own preload
        string? library = InstalledLibrary;
        if (library is null)
        {
            if (choice is not null) Console.Error.WriteLine($"warning: {Variable}=jemalloc but {Library} is not installed (apt-get install libjemalloc2); keeping glibc's allocator");
            return;
        }
        string line = File.ReadAllText("/proc/self/cmdline");   // each argument ends with a NUL (an empty one too)
        string[] arguments = (line.EndsWith('\0') ? line[..^1] : line).Split('\0');
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);
        environment["LD_PRELOAD"] = library;
        environment.TryAdd("MALLOC_CONF", Settings);
        environment[Marker] = "1";
        Console.Out.Flush();
        Console.Error.Flush();
        // The executable by its own path, not /proc/self/exe: the process keeps its name ("dotnet" in ps and pkill).
        Execute(Environment.ProcessPath ?? "/proc/self/exe", arguments, environment.Select(e => $"{e.Key}={e.Value}").ToArray());
        Console.Error.WriteLine($"warning: could not start again with {library} preloaded (errno {Marshal.GetLastPInvokeError()}); keeping glibc's allocator");
    }

    /// <summary>Where jemalloc is installed (Debian's libjemalloc2), or null.</summary>
    public static string? InstalledLibrary => LibraryFolders.Select(folder => Path.Combine(folder, Library)).FirstOrDefault(File.Exists);

    /// <summary>Whether jemalloc serves this process's allocations (it is mapped, hence preloaded: nothing else loads it).</summary>
    public static bool InUse => OperatingSystem.IsLinux() && File.ReadLines("/proc/self/maps").Any(line => line.Contains("libjemalloc", StringComparison.Ordinal));

    /// <summary>The allocator in words, for a run's log.</summary>
    public static string Describe() => InUse
        ? $"jemalloc ({Environment.GetEnvironmentVariable("MALLOC_CONF") ?? "its defaults"})"
        : OperatingSystem.IsLinux() ? $"glibc (mmap threshold 1 MiB; {Variable}=jemalloc with libjemalloc2 installed reuses freed buffers)" : "the system's";

    static unsafe void Execute(string path, string[] arguments, string[] environment)
    {
        nint[] argv = Strings(arguments), envp = Strings(environment);
        try
        {
            fixed (nint* a = argv, e = envp) _ = execve(path, a, e);   // returns only on failure
        }
        finally
        {
            foreach (nint p in argv.Concat(envp)) Marshal.FreeCoTaskMem(p);
        }
    }

    /// <summary>NUL-terminated UTF-8 strings in a null-terminated array, as execve takes them.</summary>
    static nint[] Strings(string[] values) => [.. values.Select(Marshal.StringToCoTaskMemUTF8), 0];

    [LibraryImport("libc", EntryPoint = "execve", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int execve(string path, nint* argv, nint* envp);
}
