using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Core;

/// <summary>A fact skipped, with the reason shown, unless Debian's libjemalloc2 is installed.</summary>
public sealed class JemallocFactAttribute : FactAttribute
{
    public JemallocFactAttribute()
    {
        if (!CachingAllocatorTests.JemallocInstalled) Skip = "libjemalloc.so.2 is not installed (apt-get install libjemalloc2; tools/setup.sh does): omnitune keeps glibc's allocator";
    }
}

/// <summary>
/// omnitune starts itself again with jemalloc preloaded (<c>Core/Native/CachingAllocator</c>) unless told otherwise; the
/// allocator that serves the process is read back from its own memory map and printed by <c>comm-check</c> and <c>finetune</c>.
/// </summary>
public sealed class CachingAllocatorTests
{
    internal static bool JemallocInstalled { get; } = OperatingSystem.IsLinux() && OmniTune.Core.Native.CachingAllocator.InstalledLibrary is not null;

    static (int Code, string Output, string Error) CommCheck(Dictionary<string, string> environment) =>
        ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "omnitune.dll"), "comm-check", "--size-mib", "1"], environment);

    [JemallocFact]
    public void By_default_omnitune_runs_on_jemalloc_that_keeps_freed_buffers()
    {
        var (code, output, error) = CommCheck(new() { ["OMNITUNE_ALLOCATOR"] = "" });
        Assert.True(code == 0, output + error);
        Assert.Contains("memory allocator: jemalloc (oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1)", output);
        Assert.Contains("decoder layout:", output);   // the program started again ran the whole command, once
        Assert.Equal(1, output.Split('\n').Count(line => line.StartsWith("memory allocator:", StringComparison.Ordinal)));
    }

    [JemallocFact]
    public void The_user_s_jemalloc_settings_are_kept()
    {
        var (code, output, error) = CommCheck(new() { ["MALLOC_CONF"] = "narenas:1" });
        Assert.True(code == 0, output + error);
        Assert.Contains("memory allocator: jemalloc (narenas:1)", output);
    }

    [Fact]
    public void OMNITUNE_ALLOCATOR_glibc_keeps_glibc_s_allocator_and_an_unknown_value_says_so()
    {
        var (code, output, error) = CommCheck(new() { ["OMNITUNE_ALLOCATOR"] = "glibc" });
        Assert.True(code == 0, output + error);
        Assert.Contains("memory allocator: glibc", output);
        (code, output, error) = CommCheck(new() { ["OMNITUNE_ALLOCATOR"] = "tcmalloc" });
        Assert.True(code == 0, output + error);
        Assert.Contains("OMNITUNE_ALLOCATOR=tcmalloc is neither 'jemalloc' nor 'glibc'", error);
        Assert.Contains("memory allocator: glibc", output);
    }
}
