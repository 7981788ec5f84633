using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Media;

/// <summary>
/// Token counts of media without full preprocessing: image grids from the decoded size, video grids from ffprobe,
/// audio frame counts from the decoded length. The same arithmetic as the processors, so a collator that processes the
/// media later gets the same grids (and checks it).
/// </summary>
public static class MediaSummary
{
    /// <summary>
    /// Grid of an image file. The whole image is decoded (and dropped) so that a file training cannot decode — truncated,
    /// corrupt, above the decode limit — is rejected here, by <c>data check</c> and by the encoder alike.
    /// </summary>
    public static GridThw ImageGrid(string path, ProcessorSettings s)
    {
        RgbImage image = ImageDecoder.Decode(path, s.ImageDecodeMaxPixels, s.ExifTranspose);
        return ImagePreprocessor.GridFor(image.Width, image.Height, s, path);
    }

    /// <summary>Grid and seconds per grid of a video file (ffprobe only).</summary>
    public static (GridThw Grid, double SecondsPerGrid) VideoGrid(string path, ProcessorSettings s)
    {
        FFmpeg.Probe probe = FFmpeg.ProbeFile(path);
        if (!probe.HasVideo) throw new MediaException(path, "has no video stream");
        int[] indices = VideoPreprocessor.SampleIndices(probe.FrameCount, probe.Duration, s.VideoFps, s.VideoMaxLen);
        int frames = indices.Length + (indices.Length % 2);
        var steps = ImagePreprocessor.RegularizeSteps(probe.Width, probe.Height, s.VideoMaxPixels, s.VideoMinPixels);
        var (w, h) = steps.Count == 0 ? (probe.Width, probe.Height) : steps[^1];
        (int fh, int fw) size;
        try
        {
            size = SmartResize.Compute(h, w, s.Factor, s.ProcessorVideoMinPixels, s.ProcessorVideoMaxPixels);
        }
        catch (ArgumentException e)
        {
            throw new MediaException(path, e.Message, e);
        }
        double fps = probe.Duration > 0 ? indices.Length / probe.Duration : s.VideoFps;
        return (new GridThw(frames / s.TemporalPatchSize, size.fh / s.PatchSize, size.fw / s.PatchSize), (float)(s.TemporalPatchSize / fps));
    }

    /// <summary>An error naming the video when use_audio_in_video needs its audio track and it has none.</summary>
    public static void RequireAudioTrack(string path)
    {
        if (!FFmpeg.ProbeFile(path).HasAudio) throw new MediaException(path, "use_audio_in_video takes the audio from this video, but it has no audio track");
    }

    /// <summary>Valid log-mel frames of an audio file (or a video's track): ceil(samples / hop), capped at the 300 s window.</summary>
    public static int AudioFrames(string path, ProcessorSettings s, bool trackOfVideo = false)
    {
        if (trackOfVideo) RequireAudioTrack(path);
        float[] samples = FFmpeg.DecodeAudio(path, s.AudioSamplingRate);
        if (samples.Length == 0) throw new MediaException(path, "audio has no samples (zero length)");
        int length = Math.Min(samples.Length, s.ChunkLengthSeconds * s.AudioSamplingRate);
        return (length + s.HopLength - 1) / s.HopLength;
    }
}
