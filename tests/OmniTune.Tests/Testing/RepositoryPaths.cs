namespace OmniTune.Tests.Testing;

/// <summary>Locates the repository root (holding OmniTune.slnx) and the shared folder beside it.</summary>
public static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary><c>../shared</c> relative to the repository.</summary>
    public static string Shared => Path.GetFullPath(Path.Combine(Root, "..", "shared"));

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OmniTune.slnx"))) return dir.FullName;
        }
        throw new InvalidOperationException("repository root (OmniTune.slnx) not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A fact that is skipped, with the reason shown, when a file under ../shared is absent.</summary>
public sealed class SharedAssetFactAttribute : FactAttribute
{
    public SharedAssetFactAttribute(string relativePath)
    {
        if (!File.Exists(Path.Combine(RepositoryPaths.Shared, relativePath)) && !Directory.Exists(Path.Combine(RepositoryPaths.Shared, relativePath)))
            Skip = $"../shared/{relativePath} is not present; this golden test needs the shared assets";
    }
}
