namespace OmniTune.Data.Media;

/// <summary>A media file that cannot be used; the message names the file and the reason.</summary>
public sealed class MediaException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public MediaException(string path, string reason, Exception? inner = null) : base($"{path}: {reason}", inner)
    {
        FilePath = path;
        Reason = reason;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>Why it cannot be used.</summary>
    public string Reason { get; }
}
