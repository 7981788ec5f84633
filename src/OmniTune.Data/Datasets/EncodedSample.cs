using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Datasets;

/// <summary>A media file of an encoded sample with the token-count facts computed at encoding time.</summary>
/// <param name="Path">Resolved file path.</param>
/// <param name="Grid">Image or video grid (default for audio).</param>
/// <param name="SecondsPerGrid">Video seconds per temporal group.</param>
/// <param name="Frames">Audio log-mel frames.</param>
public sealed record MediaItem(string Path, GridThw Grid = default, double SecondsPerGrid = 0, int Frames = 0);

/// <summary>One supervised training sample: token ids, labels (−100 where not trained) and its media.</summary>
/// <param name="Location">Dataset file and row.</param>
/// <param name="InputIds">Token ids.</param>
/// <param name="Labels">Training targets, −100 on prompts (unless train_on_prompt) and masked history.</param>
/// <param name="Images">Images in placeholder order.</param>
/// <param name="Videos">Videos in placeholder order.</param>
/// <param name="Audios">Audios in placeholder order (video tracks included with use_audio_in_video).</param>
/// <param name="Truncated">Whether the cutoff removed tokens.</param>
public sealed record EncodedSample(SampleLocation Location, int[] InputIds, int[] Labels, MediaItem[] Images, MediaItem[] Videos,
    MediaItem[] Audios, bool Truncated)
{
    /// <summary>Modalities present, for statistics.</summary>
    public string Modalities => string.Join("+", new[] { Images.Length > 0 ? "image" : null, Videos.Length > 0 ? "video" : null, Audios.Length > 0 ? "audio" : null }
        .Where(m => m is not null).DefaultIfEmpty("text"));

    /// <summary>Tokens that carry a label.</summary>
    public int TrainedTokens => Labels.Count(l => l != -100);

    /// <summary>
    /// A packed row (data.json <c>packing</c>): the token counts of the samples concatenated into it, in order (their media
    /// in the same order); null for one sample.
    /// </summary>
    public int[]? PackedLengths { get; init; }

    /// <summary>Token counts of the samples in this row: <see cref="PackedLengths"/>, or the one sample's length.</summary>
    public int[] Parts => PackedLengths ?? [InputIds.Length];
}
