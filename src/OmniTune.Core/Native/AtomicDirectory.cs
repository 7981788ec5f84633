using System.Runtime.InteropServices;

namespace OmniTune.Core.Native;

/// <summary>
/// Puts a finished folder in place of another so that, at every instant, the target path names a complete folder:
/// the old one until the swap, the new one after it. On Linux this is <c>renameat2(RENAME_EXCHANGE)</c>, one atomic
/// system call, after which the old contents (now at the source path) are deleted. Where the call is not available the
/// old folder is first renamed aside to <c>target.replaced-*</c>; <see cref="RecoverInterrupted"/> puts such a folder
/// back when a crash struck between the two renames.
/// </summary>
public static partial class AtomicDirectory
{
    const uint RenameExchange = 2;
    const int AtFdCwd = -100;

    /// <summary>Suffix of a folder set aside by the fallback path.</summary>
    public const string ReplacedSuffix = ".replaced-";

    /// <summary>Moves <paramref name="source"/> to <paramref name="target"/>, replacing a folder that is there.</summary>
    public static void Replace(string source, string target)
    {
        if (!Directory.Exists(target))
        {
            Directory.Move(source, target);
            return;
        }
        if (TryExchange(source, target))
        {
            Directory.Delete(source, recursive: true);   // source now holds the old contents
            return;
        }
        string aside = $"{target}{ReplacedSuffix}{Guid.NewGuid():N}";
        Directory.Move(target, aside);
        Directory.Move(source, target);
        Directory.Delete(aside, recursive: true);
    }

    /// <summary>
    /// When <paramref name="target"/> is missing but a folder set aside by an interrupted <see cref="Replace"/> exists,
    /// moves it back and returns true.
    /// </summary>
    public static bool RecoverInterrupted(string target)
    {
        if (Directory.Exists(target)) return false;
        string? parent = Path.GetDirectoryName(Path.GetFullPath(target));
        if (parent is null || !Directory.Exists(parent)) return false;
        string? aside = Directory.GetDirectories(parent, Path.GetFileName(target) + ReplacedSuffix + "*").FirstOrDefault();
        if (aside is null) return false;
        Directory.Move(aside, target);
        return true;
    }

    static bool TryExchange(string source, string target)
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return renameat2(AtFdCwd, Path.GetFullPath(source), AtFdCwd, Path.GetFullPath(target), RenameExchange) == 0;
        }
        catch (EntryPointNotFoundException)
        {
            return false;   // libc without renameat2 (glibc < 2.28, musl): the fallback path
        }
    }

    [LibraryImport("libc", EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int renameat2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);
}
