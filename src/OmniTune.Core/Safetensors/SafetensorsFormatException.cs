namespace OmniTune.Core.Safetensors;

/// <summary>A safetensors file or index that cannot be read safely; the message names the file and the problem.</summary>
public sealed class SafetensorsFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public SafetensorsFormatException(string path, string problem)
        : base($"{path}: {problem}")
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it.</summary>
    public string Problem { get; }
}
