using System.Text.Json;
using OmniTune.Tests.Testing;
using OmniTune.Tests.Training;
using OmniTune.Training.Checkpointing;

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
public sealed class CachingAllocatorTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public CachingAllocatorTests(TrainingFixture fixture) => this.fixture = fixture;

    internal static bool JemallocInstalled { get; } = OperatingSystem.IsLinux() && OmniTune.Core.Native.CachingAllocator.InstalledLibrary is not null;

    static (int Code, string Output, string Error) CommCheck(Dictionary<string, string> environment) =>
        ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "omnitune.dll"), "comm-check", "--size-mib", "1"], environment);

    [JemallocFact]
    public void By_default_omnitune_runs_on_jemalloc_that_keeps_freed_buffers()
    {
        var (code, output, error) = CommCheck(new() { ["OMNITUNE_ALLOCATOR"] = "" });
        Assert.True(code == 0, output + error);
        Assert.Contains("memory allocator: jemalloc (narenas:1,oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1)", output);
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

    /// <summary>
    /// jemalloc never gives freed pages back (dirty_decay_ms:-1): what keeps memory bounded is that it reuses them. A
    /// finetune run of the tiny model on text and image samples: the resident memory its metrics record stops growing
    /// once the first iterations have been through every shape (the in-process test does the same for glibc's allocator).
    /// </summary>
    [JemallocFact]
    public void Finetune_on_jemalloc_keeps_its_resident_memory_flat_across_iterations()
    {
        using var dir = new TempFolder();
        var (code, output, error) = ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "omnitune.dll"), .. ($"finetune --mm-model {fixture.ModelJson} " +
            $"--mm-data {fixture.DataJson} --seq-length 256 --lr 1e-4 --lr-decay-style constant --log-interval 1 --num-workers 0 --seed 5 --micro-batch-size 2 " +
            $"--global-batch-size 4 --train-iters 80 --save {dir.Path} --save-interval 1000").Split(' ')], new Dictionary<string, string> { ["OMNITUNE_ALLOCATOR"] = "" });
        Assert.True(code == 0, output + error);
        Assert.Contains("memory allocator: jemalloc", output);
        var resident = File.ReadLines(Path.Combine(dir.Path, CheckpointStore.MetricsFile)).Select(line => JsonDocument.Parse(line).RootElement)
            .ToDictionary(r => r.GetProperty("Iteration").GetInt32(), r => r.GetProperty("ResidentMemoryGiB").GetDouble());
        Assert.Equal(80, resident.Count);
        Assert.True(resident[20] > 0.05, $"resident memory {resident[20]} GiB at iteration 20");
        double growth = (resident[80] - resident[20]) * 1024;
        Assert.True(growth < 40, $"resident memory grew by {growth:F0} MiB from iteration 20 to 80 (GiB every 10 iterations: " +
                                 $"{string.Join(", ", resident.Where(r => r.Key % 10 == 0).Select(r => r.Value.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))})");
    }
}
