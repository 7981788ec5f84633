using OmniTune.Cli.Demo;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Training;

public sealed class DemoTests
{
    [Fact]
    public void The_multimodal_demo_runs_end_to_end_with_few_steps()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        var log = new StringWriter();
        DemoResult result = MultimodalDemo.Run(dir.Path, steps: 16, seed: 0, log);
        Assert.Equal(11, result.Total);
        Assert.True(result.LastLoss < result.FirstLoss, $"loss {result.FirstLoss} -> {result.LastLoss}");
        Assert.Contains("[5/5]", log.ToString());
        Assert.True(File.Exists(Path.Combine(dir.Path, "checkpoints", "iter_0000016", "mp_rank_00", "model.safetensors")));
    }
}
