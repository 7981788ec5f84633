namespace OmniTune.Models.Qwen25Omni.Loading;

/// <summary>A checkpoint whose keys or shapes do not match the model; the message lists every difference.</summary>
public sealed class CheckpointMismatchException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckpointMismatchException(string message) : base(message)
    {
    }
}
