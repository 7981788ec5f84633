using OmniTune.Data.Media;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

public sealed class MediaCacheTests
{
    static readonly ProcessorSettings Settings = new();

    static void AssertSameValues(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.equal(actual).all().item<bool>(), "the cached values differ from a fresh processing");
    }

    /// <summary>
    /// A second load of an image, a video and an audio clip comes from memory, with the values, grid, seconds per grid and
    /// frames that processing the file again gives; the tensors handed out are the caller's (disposing one leaves the
    /// cache whole); a file rewritten in place is processed again.
    /// </summary>
    [Fact]
    public void Second_loads_come_from_memory_equal_to_fresh_processing_and_a_changed_file_is_processed_again()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string image = MediaFixtures.Image(dir.Path, "a.png", 64, 48);
        string video = MediaFixtures.Video(dir.Path, "clip.mp4", seconds: 2, width: 128, height: 96, fps: 10);
        string audio = MediaFixtures.Tone(dir.Path, "tone.wav", 1.5);
        using var cache = new MediaCache(64L << 20);

        VisionInput firstImage = cache.Image(image, Settings), firstVideo = cache.Video(video, Settings);
        AudioInput firstAudio = cache.Audio(audio, Settings);
        Assert.Equal((0L, 3L), cache.Counts);
        firstImage.PixelValues.Dispose();   // the caller's own tensor

        VisionInput againImage = cache.Image(image, Settings), againVideo = cache.Video(video, Settings);
        AudioInput againAudio = cache.Audio(audio, Settings);
        Assert.Equal((3L, 3L), cache.Counts);
        AssertSameValues(ImagePreprocessor.Process(image, Settings).PixelValues, againImage.PixelValues);
        VisionInput freshVideo = VideoPreprocessor.Process(video, Settings);
        AssertSameValues(freshVideo.PixelValues, againVideo.PixelValues);
        Assert.Equal(freshVideo.Grid, againVideo.Grid);
        Assert.Equal(freshVideo.SecondsPerGrid, againVideo.SecondsPerGrid);
        Assert.Equal(firstVideo.Grid, againVideo.Grid);
        AssertSameValues(WhisperFeatures.FromFile(audio, Settings).Features, againAudio.Features);
        Assert.Equal(firstAudio.Frames, againAudio.Frames);

        MediaFixtures.Image(dir.Path, "a.png", 112, 112);   // rewritten: another length, size and grid
        File.SetLastWriteTimeUtc(image, DateTime.UtcNow.AddMinutes(1));
        VisionInput changed = cache.Image(image, Settings);
        Assert.Equal((3L, 4L), cache.Counts);
        Assert.Equal(ImagePreprocessor.Process(image, Settings).Grid, changed.Grid);
        Assert.NotEqual(againImage.Grid, changed.Grid);
    }

    [Fact]
    public void Media_larger_than_the_bound_are_processed_each_time_and_kept_nowhere()
    {
        using var dir = new TempFolder();
        string image = MediaFixtures.Image(dir.Path, "a.png", 64, 48);
        using var cache = new MediaCache(1024);   // the image is 16 patch rows of 1,176 floats: 74 KiB
        cache.Image(image, Settings);
        cache.Image(image, Settings);
        Assert.Equal((0L, 2L), cache.Counts);
        Assert.Throws<ArgumentOutOfRangeException>(() => new MediaCache(0));
    }
}
