using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Build;

/// <summary>Runs the MSBuild task of build/LibTorchSharpGlibcxxFix.targets on a pristine copy of TorchSharp's native library.</summary>
public sealed class GlibcxxBuildStepTests
{
    static readonly string SystemLibStdCxx = new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" }
        .FirstOrDefault(File.Exists) ?? "";

    static string? PristineLibrary()
    {
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(packages, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return File.Exists(path) ? path : null;
    }

    static (int Code, string Output) RunTask(TempFolder dir, string library, string systemLib)
    {
        string targets = Path.Combine(RepositoryPaths.Root, "build", "LibTorchSharpGlibcxxFix.targets");
        File.WriteAllText(dir.File("probe.proj"), $"""
            <Project>
              <Import Project="{targets}" />
              <Target Name="Probe">
                <WeakenMissingLibStdCxxVersions Libraries="{library}" SystemLibStdCxx="{systemLib}" />
              </Target>
            </Project>
            """);
        var start = new ProcessStartInfo("dotnet", ["msbuild", dir.File("probe.proj"), "-t:Probe", "-nologo", "-nodeReuse:false"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = dir.Path,
        };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    static byte[] WithVersionRenamed(byte[] library, string from, string to)
    {
        byte[] copy = (byte[])library.Clone();
        byte[] a = Encoding.ASCII.GetBytes("\0" + from + "\0"), b = Encoding.ASCII.GetBytes("\0" + to + "\0");
        for (int i = copy.AsSpan().IndexOf(a); i >= 0; i = copy.AsSpan().IndexOf(a)) b.CopyTo(copy, i);
        return copy;
    }

    /// <summary>Skipped, with the reason shown, where the pristine library or the system libstdc++ is not there to patch.</summary>
    public sealed class PatchableFactAttribute : FactAttribute
    {
        public PatchableFactAttribute()
        {
            if (PristineLibrary() is null) Skip = "TorchSharp 0.107.0's native library is not in the NuGet cache: nothing to patch";
            else if (SystemLibStdCxx.Length == 0) Skip = "no system libstdc++.so.6 at the Debian paths: nothing to compare against";
        }
    }

    [PatchableFact]
    public void The_task_weakens_only_missing_versions_is_a_no_op_when_present_and_fails_when_a_missing_version_is_really_used()
    {
        string pristine = PristineLibrary()!;
        string cacheHash = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(pristine)));
        byte[] system = File.ReadAllBytes(SystemLibStdCxx);
        using var dir = new TempFolder();

        // 1. The real system library (3.4.30 on Debian 12): 3.4.32 becomes weak; the cache copy is untouched.
        string library = dir.File("libLibTorchSharp.so");
        File.Copy(pristine, library);
        var (code, output) = RunTask(dir, library, SystemLibStdCxx);
        bool systemHas32 = system.AsSpan().IndexOf(Encoding.ASCII.GetBytes("\0GLIBCXX_3.4.32\0")) >= 0;
        Assert.True(code == 0, output);
        if (!systemHas32) Assert.Contains("marked GLIBCXX_3.4.32 weak", output);
        Assert.Equal(cacheHash, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(pristine))));
        if (!systemHas32) Assert.NotEqual(cacheHash, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(library))));

        // 2. A libstdc++ that has every version: nothing changes.
        string fullLib = dir.File("libstdc++-full.so.6");
        File.WriteAllBytes(fullLib, [.. system, .. Encoding.ASCII.GetBytes("\0GLIBCXX_3.4.32\0")]);
        File.Copy(pristine, library, overwrite: true);
        (code, output) = RunTask(dir, library, fullLib);
        Assert.True(code == 0, output);
        Assert.Equal(cacheHash, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(library))));

        // 3. A libstdc++ without 3.4.29/3.4.30, whose symbols the library really binds: the build fails loudly.
        string oldLib = dir.File("libstdc++-old.so.6");
        File.WriteAllBytes(oldLib, WithVersionRenamed(WithVersionRenamed(system, "GLIBCXX_3.4.29", "GLIBCXX_9.9.29"), "GLIBCXX_3.4.30", "GLIBCXX_9.9.30"));
        File.Copy(pristine, library, overwrite: true);
        (code, output) = RunTask(dir, library, oldLib);
        Assert.NotEqual(0, code);
        Assert.Contains("a newer libstdc++ is required", output);
        Assert.Equal(cacheHash, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(library))));
    }
}
