using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace OmniTune.Tests.Testing;

/// <summary>Runs the omnitune CLI under mpirun (Open MPI, oversubscribed, one thread per rank) and reads its step lines.</summary>
public static partial class MpiJob
{
    /// <summary>Fails the test with the fix when mpirun is missing (setup installs it).</summary>
    public static void Require() =>
        Assert.True((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "mpirun"))),
            "mpirun is required (apt-get install openmpi-bin; bash tools/setup.sh does it)");

    [GeneratedRegex(@"iteration\s+(\d+)/.*? loss: ([0-9.E+-]+)")]
    private static partial Regex StepLine();

    /// <summary>
    /// Runs <c>mpirun … {arguments}</c> where <c>{cli}</c> stands for omnitune.dll; every rank runs with one thread, so a
    /// single-process reference started with <c>-np 1</c> computes exactly as the ranks do.
    /// </summary>
    public static (int Code, string Output, double Seconds) Run(string arguments, string term = "dumb", Action<string>? onLine = null)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "omnitune.dll");
        var start = new ProcessStartInfo("mpirun") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["TERM"] = term;
        foreach (string a in $"--allow-run-as-root --oversubscribe -x TERM -x OMP_NUM_THREADS=1 {arguments}".Split(' ', StringSplitOptions.RemoveEmptyEntries))
            start.ArgumentList.Add(a.Replace("{cli}", cli, StringComparison.Ordinal));
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        var output = new System.Text.StringBuilder();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            output.AppendLine(line);
            onLine?.Invoke(line);
        }
        if (!process.WaitForExit(180_000))
        {
            process.Kill(entireProcessTree: true);
            return (-1, output + error.Result, clock.Elapsed.TotalSeconds);
        }
        return (process.ExitCode, output + error.Result, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// The end-of-run report of --overlap-grad-reduce: bucket reductions (<paramref name="collective"/>: "all-reduce" or
    /// "reduce-scatter") started during backward, and in all; fails when there is none or the flag had no effect.
    /// </summary>
    public static (long Early, long All) OverlapStarted(string output, string collective = "all-reduce")
    {
        Assert.DoesNotContain("--overlap-grad-reduce has no effect", output);
        var started = Regex.Match(output, $@"overlapped gradient reduction: (\d+) of (\d+) bucket {collective}s started during backward");
        Assert.True(started.Success, output);
        return (long.Parse(started.Groups[1].Value, CultureInfo.InvariantCulture), long.Parse(started.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>The loss of every step line, in order.</summary>
    public static List<double> Losses(string output) =>
        StepLine().Matches(output).Select(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)).ToList();
}
