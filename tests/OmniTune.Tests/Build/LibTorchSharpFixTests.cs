using System.Diagnostics;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Build;

public sealed class LibTorchSharpFixTests
{
    [Fact]
    public void TorchSharp_loads_in_the_test_host()
    {
        Assert.Equal(6f, (ones(2, 3).sum()).item<float>());
    }

    [ReadelfFact]
    public void The_copied_native_library_has_no_strong_requirement_on_a_libstdcxx_version_the_system_lacks()
    {
        string library = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(library), library);
        var start = new ProcessStartInfo(ReadelfFactAttribute.Readelf!, ["-V", library]) { RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        string[] lines = process.StandardOutput.ReadToEnd().Split('\n');
        process.WaitForExit();
        string systemLib = new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" }.First(File.Exists);
        byte[] system = File.ReadAllBytes(systemLib);
        foreach (string line in lines.Where(l => l.Contains("Name: GLIBCXX_", StringComparison.Ordinal)))
        {
            string version = line.Split("Name: ")[1].Split(' ')[0].Trim();
            bool present = system.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes("\0" + version + "\0")) >= 0;
            if (!present) Assert.Contains("WEAK", line);
        }
    }
}
