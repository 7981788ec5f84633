namespace OmniTune.Tests.Testing;

/// <summary>
/// How close tolerance checks came to failing: with OMNITUNE_TEST_MARGINS naming a file, each check appends its worst
/// difference as a fraction of its tolerance (1 fails). Machines differ in rounding (another CPU, another GEMM kernel); a
/// check that passes here at 0.9 is one that fails elsewhere.
/// </summary>
public static class Margins
{
    static readonly object Gate = new();

    public static void Record(string file, int line, string what, double fraction)
    {
        string? path = Environment.GetEnvironmentVariable("OMNITUNE_TEST_MARGINS");
        if (string.IsNullOrEmpty(path)) return;
        lock (Gate) File.AppendAllText(path, $"{fraction:F3}\t{Path.GetFileName(file)}:{line}\t{what}{Environment.NewLine}");
    }
}
