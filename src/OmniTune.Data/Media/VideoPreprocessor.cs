namespace OmniTune.Data.Media;

/// <summary>
/// A video as LLaMA-Factory samples it and the Qwen2.5-Omni video processor processes it (llamafactory_data.md §4.7):
/// n = min(frames, video_maxlen, max(1, floor(duration · video_fps))) frames at trunc(linspace(0, frames − 1, n)),
/// decoded in order with ffmpeg; an odd count repeats the last frame; each frame regularised with the video pixel
/// bounds, then smart_resize + Pillow bicubic; second_per_grid = temporal_patch_size / (n / duration).
/// </summary>
public static class VideoPreprocessor
{
    /// <summary>Frame indices LLaMA-Factory samples from a stream of <paramref name="total"/> frames lasting <paramref name="duration"/> s.</summary>
    public static int[] SampleIndices(long total, double duration, double fps, int maxLen)
    {
        if (total <= 0) return Enumerable.Range(0, maxLen).ToArray();   // unknown length: the first maxlen frames
        long n = Math.Max(1, (long)Math.Floor(duration * fps));
        n = Math.Min(Math.Min(total, maxLen), n);
        if (n == 1) return [0];
        double step = (double)(total - 1) / (n - 1);
        return Enumerable.Range(0, (int)n).Select(i => i == n - 1 ? (int)(total - 1) : (int)(i * step)).ToArray();
    }

    /// <summary>Loads and processes one video file.</summary>
    public static VisionInput Process(string path, ProcessorSettings s)
    {
        FFmpeg.Probe probe = FFmpeg.ProbeFile(path);
        if (!probe.HasVideo) throw new MediaException(path, "has no video stream");
        int[] indices = SampleIndices(probe.FrameCount, probe.Duration, s.VideoFps, s.VideoMaxLen);
        var wanted = indices.ToHashSet();
        var frames = new List<RgbImage>();
        FFmpeg.DecodeVideoFrames(path, probe.Width, probe.Height, (ordinal, frame) =>
        {
            // MindSpeed-MM's plugin pre-resizes video frames with NEAREST (resample=True), images with the default filter.
            if (wanted.Contains(ordinal)) frames.Add(ImagePreprocessor.Regularize(frame, s.VideoMaxPixels, s.VideoMinPixels, nearest: true));
        }, wanted);
        if (frames.Count == 0) throw new MediaException(path, "none of the sampled frames could be decoded");
        double fpsPerVideo = probe.Duration > 0 ? indices.Length / probe.Duration : s.VideoFps;
        if (frames.Count % 2 == 1) frames.Add(frames[^1]);
        var fitted = frames.Select(f => ImagePreprocessor.Fit(f, s.ProcessorVideoMinPixels, s.ProcessorVideoMaxPixels, s, path)).ToList();
        var (rows, grid) = VisionPatches.From(fitted, s);
        double secondsPerGrid = (float)(s.TemporalPatchSize / fpsPerVideo);
        return new VisionInput(rows, grid, secondsPerGrid);
    }
}
