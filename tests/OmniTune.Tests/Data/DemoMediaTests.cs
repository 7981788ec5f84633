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
        // Resampled MP3s: the decoder's padding handling may move the count by a frame (reference §4.8).
        Assert.InRange(WhisperFeatures.FromFile(Media("1.mp3"), Settings).Frames, 402, 405);
        Assert.InRange(WhisperFeatures.FromFile(Media("4.mp3"), Settings).Frames, 499, 506);
        // 4.mp4 carries no audio track (the demo pairs it with 4.mp3): asking for its audio is a clear error.
        Assert.Contains("has no audio stream", Assert.Throws<MediaException>(() => WhisperFeatures.FromFile(Media("4.mp4"), Settings)).Message);
    }
}
