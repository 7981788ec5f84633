using OmniTune.Data.Text;

namespace OmniTune.Data.Datasets;

/// <summary>Where a sample came from: its dataset file and its index there.</summary>
/// <param name="File">Dataset file.</param>
/// <param name="Index">0-based row index in that file.</param>
public readonly record struct SampleLocation(string File, int Index)
{
    /// <inheritdoc/>
    public override string ToString() => $"{File}#{Index}";
}

/// <summary>A row in the internal form: alternating prompt/answer messages (ending with the answer) and resolved media paths.</summary>
/// <param name="Location">Source of the row.</param>
/// <param name="Messages">user/observation at even, assistant/function at odd positions; even count.</param>
/// <param name="System">System prompt ("" for the template default).</param>
/// <param name="Tools">Tool list JSON ("" for none).</param>
/// <param name="Images">Image paths.</param>
/// <param name="Videos">Video paths.</param>
/// <param name="Audios">Audio paths.</param>
public sealed record ConvertedSample(SampleLocation Location, IReadOnlyList<ChatMessage> Messages, string System, string Tools,
    IReadOnlyList<string> Images, IReadOnlyList<string> Videos, IReadOnlyList<string> Audios)
{
    /// <summary>Modalities present, for statistics.</summary>
    public string Modalities => string.Join("+", new[] { Images.Count > 0 ? "image" : null, Videos.Count > 0 ? "video" : null, Audios.Count > 0 ? "audio" : null }
        .Where(m => m is not null).DefaultIfEmpty("text"));
}

/// <summary>A sample that cannot be used, with the reason.</summary>
/// <param name="Location">Source of the row.</param>
/// <param name="Reason">Why it is rejected.</param>
public sealed record InvalidSample(SampleLocation Location, string Reason)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Location}: {Reason}";
}

/// <summary>Thrown under the "fail" policy for the first bad sample.</summary>
public sealed class InvalidSampleException(InvalidSample sample) : Exception(sample.ToString())
{
    /// <summary>The offending sample.</summary>
    public InvalidSample Sample { get; } = sample;
}
