namespace OmniTune.Tests.Testing;

/// <summary>A fact about machines without NCCL: skipped, with the reason shown, where libnccl.so.2 is installed.</summary>
public sealed class WithoutNcclFactAttribute : FactAttribute
{
    /// <summary>Where NCCL would be found.</summary>
    public static readonly string[] LibraryPaths = ["/usr/lib/x86_64-linux-gnu/libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2", "/usr/lib64/libnccl.so.2"];

    public WithoutNcclFactAttribute()
    {
        if (LibraryPaths.Any(File.Exists)) Skip = "libnccl.so.2 is installed on this machine: the missing-library message can only be checked without it";
    }
}

/// <summary>A fact that needs binutils' readelf (bash tools/setup.sh installs it); skipped with the reason shown otherwise.</summary>
public sealed class ReadelfFactAttribute : FactAttribute
{
    /// <summary>readelf's path, or null.</summary>
    public static readonly string? Readelf = new[] { "/usr/bin/readelf", "/bin/readelf" }.FirstOrDefault(File.Exists);

    public ReadelfFactAttribute()
    {
        if (Readelf is null) Skip = "readelf is not installed (apt-get install binutils): the library's version needs cannot be read";
    }
}
