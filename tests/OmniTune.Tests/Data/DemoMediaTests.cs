using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

/// <summary>LLaMA-Factory's demo media (../shared/assets/llamafactory-demo) against the numbers of llamafactory_data.md §4.10.</summary>
public sealed class DemoMediaTests
{
    const string Folder = "assets/llamafactory-demo/mllm_demo_data";
    static readonly ProcessorSettings Settings = new();

    static string Media(string name) => Path.Combine(RepositoryPaths.Shared, Folder, name);

    [SharedAssetFact(Folder)]
    public void Demo_images_give_the_reference_grids()
    {
        Assert.Equal(new GridThw(1, 12, 22), ImagePreprocessor.Process(Media("1.jpg"), Settings).Grid);
        Assert.Equal(new GridThw(1, 14, 22), ImagePreprocessor.Process(Media("2.jpg"), Settings).Grid);
        Assert.Equal(new GridThw(1, 12, 22), ImagePreprocessor.Process(Media("3.jpg"), Settings).Grid);
    }

    [SharedAssetFact(Folder)]
    public void Demo_videos_give_the_reference_grids_and_seconds_per_grid()
    {
        var first = VideoPreprocessor.Process(Media("1.mp4"), Settings);
        Assert.Equal(new GridThw(10, 14, 24), first.Grid);
        Assert.Equal(1.023158, first.SecondsPerGrid, 5);
        Assert.Equal(new GridThw(6, 14, 24), VideoPreprocessor.Process(Media("3.mp4"), Settings).Grid);
        var fourth = VideoPreprocessor.Process(Media("4.mp4"), Settings);
        Assert.Equal(new GridThw(5, 16, 16), fourth.Grid);
        Assert.Equal(1.0, fourth.SecondsPerGrid, 5);
        Assert.Equal(new GridThw(9, 16, 22), VideoPreprocessor.Process(Media("2.avi"), Settings).Grid);
    }

    [SharedAssetFact(Folder)]
    public void Demo_audio_gives_the_reference_frame_and_token_counts()
    {
        var wav = WhisperFeatures.FromFile(Media("2.wav"), Settings);
        Assert.Equal((291, 73), (wav.Frames, AudioLengths.Tokens(wav.Frames)));
        var flac = WhisperFeatures.FromFile(Media("3.flac"), Settings);
        Assert.Equal((586, 146), (flac.Frames, AudioLengths.Tokens(flac.Frames)));
        // Resampled MP3s (48 and 44.1 kHz): librosa.load's length rule, ⌈n · 16000 / rate⌉ samples (64,512 and 80,000).
        Assert.Equal(404, WhisperFeatures.FromFile(Media("1.mp3"), Settings).Frames);
        Assert.Equal(500, WhisperFeatures.FromFile(Media("4.mp3"), Settings).Frames);
        // 4.mp4 carries no audio track (the demo pairs it with 4.mp3): asking for its audio is a clear error.
        Assert.Contains("has no audio stream", Assert.Throws<MediaException>(() => WhisperFeatures.FromFile(Media("4.mp4"), Settings)).Message);
    }

    /// <summary>
    /// MindSpeed-MM loads audio with librosa.load(sr=16000): soundfile decode, channel mean, soxr HQ, fix_length.
    /// bench/audio-resampling.py replays it (Debian's python3-soundfile and libsoxr0); ffmpeg's own resampler was off by up
    /// to 0.45 on 1.mp3 (rms 0.054 for a signal of rms 0.13), OmniTune's soxr path by 2.7e-6 (the MP3 decoders differ).
    /// </summary>
    [SharedAssetFact(Folder)]
    public void Resampled_demo_audio_matches_librosa_load_in_length_and_values()
    {
        using var dir = new TempFolder();
        foreach (string name in new[] { "1.mp3", "4.mp3" })
        {
            string reference = Path.Combine(dir.Path, name + ".f32");
            var (code, _, error) = ChildProcess.Run("/usr/bin/python3", [Path.Combine(RepositoryPaths.Root, "bench", "audio-resampling.py"), "--raw", reference, Media(name)]);
            Assert.True(code == 0, $"the librosa replay failed (tools/setup.sh installs python3-soundfile and python3-numpy): {error}");
            byte[] bytes = File.ReadAllBytes(reference);
            var expected = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, expected, 0, bytes.Length);
            float[] actual = FFmpeg.DecodeAudio(Media(name), 16000);
            Assert.Equal(expected.Length, actual.Length);
            float worst = expected.Zip(actual, (x, y) => Math.Abs(x - y)).Max();
            Assert.True(worst < 1e-5f, $"{name}: largest difference from librosa.load {worst}");
        }
    }
}
