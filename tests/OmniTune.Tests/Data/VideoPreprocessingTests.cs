using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

public sealed class VideoPreprocessingTests
{
    static readonly ProcessorSettings Settings = new();

    [Fact]
    public void Frame_sampling_matches_llama_factory_for_the_demo_clip()
    {
        Assert.Equal([0, 13, 26, 40, 53, 67, 80, 94, 107, 121, 134, 147, 161, 174, 188, 201, 215, 228, 242],
            VideoPreprocessor.SampleIndices(243, 9.72, 2.0, 128));
        Assert.Equal([0, 16, 33, 49, 66, 82, 99, 115, 132, 149], VideoPreprocessor.SampleIndices(150, 5.0, 2.0, 128));
        Assert.Equal([0], VideoPreprocessor.SampleIndices(3, 0.1, 2.0, 128));
        Assert.Equal(4, VideoPreprocessor.SampleIndices(1000, 100, 2.0, 4).Length);
    }

    [Fact]
    public void A_synthesized_video_gives_its_grid_and_seconds_per_grid_and_its_audio_track()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string video = MediaFixtures.Video(dir.Path, "clip.mp4", seconds: 2, width: 128, height: 96, fps: 10);
        VisionInput input = VideoPreprocessor.Process(video, Settings with { UseAudioInVideo = true });
        // 20 frames over 2 s at 2 fps → 4 frames; 128×96 → 84×140 (smart_resize rounds 96/28 to 3) → grid (2, 6, 10)
        Assert.Equal(new GridThw(2, 6, 10), input.Grid);
        Assert.Equal(1.0, input.SecondsPerGrid, 5);
        Assert.Equal([120L, 1176], input.PixelValues.shape);
        AudioInput audio = WhisperFeatures.FromFile(video, Settings);
        Assert.InRange(audio.Frames, 195, 205);
    }

    /// <summary>
    /// Asking ffmpeg for the sampled frames only (its select filter) gives the frames, bytes and ordinals, that decoding
    /// every frame and keeping those gives — on a clip whose frames all differ (testsrc draws a moving pattern).
    /// </summary>
    [Fact]
    public void Selected_frames_equal_the_same_frames_of_a_full_decode()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string video = MediaFixtures.Video(dir.Path, "clip.mp4", seconds: 3, width: 64, height: 48, fps: 10, audio: false);
        int[] wanted = [0, 7, 8, 19, 29];
        var all = new Dictionary<int, byte[]>();
        FFmpeg.DecodeVideoFrames(video, 64, 48, (ordinal, frame) => all[ordinal] = frame.Pixels);
        Assert.Equal(30, all.Count);
        Assert.NotEqual(all[7], all[8]);
        var selected = new List<(int Ordinal, byte[] Pixels)>();
        FFmpeg.DecodeVideoFrames(video, 64, 48, (ordinal, frame) => selected.Add((ordinal, frame.Pixels)), [29, 0, 8, 7, 19, 7]);
        Assert.Equal(wanted, selected.Select(f => f.Ordinal));
        Assert.All(selected, f => Assert.Equal(all[f.Ordinal], f.Pixels));
    }

    [Fact]
    public void A_one_frame_video_is_padded_to_a_temporal_pair()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string video = MediaFixtures.Video(dir.Path, "one.mp4", seconds: 0.1, fps: 10, audio: false);
        VisionInput input = VideoPreprocessor.Process(video, Settings);
        Assert.Equal(1, input.Grid.T);
    }

    [Fact]
    public void Bad_videos_give_errors_naming_the_file_and_the_reason()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string silent = MediaFixtures.Video(dir.Path, "silent.mp4", seconds: 1, audio: false);
        var error = Assert.Throws<MediaException>(() => MediaSummary.AudioFrames(silent, Settings, trackOfVideo: true));
        Assert.Equal(silent, error.FilePath);
        Assert.Contains("has no audio track", error.Message);
        Assert.Contains("no audio stream", Assert.Throws<MediaException>(() => WhisperFeatures.FromFile(silent, Settings)).Message);
        string missing = dir.File("missing.mp4");
        Assert.Contains("file not found", Assert.Throws<MediaException>(() => VideoPreprocessor.Process(missing, Settings)).Message);
        string bogus = dir.File("bogus.mp4");
        File.WriteAllBytes(bogus, new byte[4096]);
        Assert.Equal(bogus, Assert.Throws<MediaException>(() => VideoPreprocessor.Process(bogus, Settings)).FilePath);
        string tone = MediaFixtures.Tone(dir.Path, "tone.wav", 1);
        Assert.Contains("no video stream", Assert.Throws<MediaException>(() => VideoPreprocessor.Process(tone, Settings)).Message);
    }
}
