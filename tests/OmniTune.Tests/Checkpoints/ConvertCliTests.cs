using OmniTune.Checkpoints.Conversion;
using OmniTune.Cli;
using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using OmniTune.Tests.Training;
using OmniTune.Training.Loop;

namespace OmniTune.Tests.Checkpoints;

public sealed class ConvertCliTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public ConvertCliTests(TrainingFixture fixture) => this.fixture = fixture;

    static int Run(params string[] args)
    {
        var (o, e) = (Console.Out, Console.Error);
        Console.SetOut(TextWriter.Null);
        Console.SetError(TextWriter.Null);
        try
        {
            return Program.Main(args);
        }
        finally
        {
            Console.SetOut(o);
            Console.SetError(e);
        }
    }

    [Fact]
    public void The_mm_convert_spelling_round_trips_and_the_trainer_loads_the_mm_checkpoint_like_the_hf_folder()
    {
        using var dir = new TempFolder();
        string mm = Path.Combine(dir.Path, "mm"), back = Path.Combine(dir.Path, "back");
        Assert.Equal(0, Run("mm-convert", "Qwen2_5_OmniConverter", "hf_to_mm", "--cfg.mm_dir", mm, "--cfg.hf_config.hf_dir", fixture.Model,
            "--cfg.parallel_config.llm_pp_layers", "[[1,1]]", "--cfg.parallel_config.vit_pp_layers", "[[2,0]]", "--cfg.parallel_config.audio_pp_layers", "[[2,0]]",
            "--cfg.parallel_config.tp_size", "2"));
        Assert.True(File.Exists(Path.Combine(mm, "release", "mp_rank_01_001", MmCheckpoint.PtFileName)));
        Assert.Equal(0, Run("mm-convert", "Qwen2_5_OmniConverter", "mm_to_hf", "--cfg.save_hf_dir", back, "--cfg.mm_dir", mm, "--cfg.hf_config.hf_dir", fixture.Model,
            "--cfg.parallel_config.llm_pp_layers", "[1,1]", "--cfg.parallel_config.vit_pp_layers", "[2,0]", "--cfg.parallel_config.audio_pp_layers", "[2,0]",
            "--cfg.parallel_config.tp_size", "2"));
        using (var a = SafetensorsCheckpoint.Open(fixture.Model))
        using (var b = SafetensorsCheckpoint.Open(back))
        {
            Assert.Equal(a.Keys, b.Keys);
            Assert.All(a.Keys, k => Assert.True(CheckpointBytes.Of(a.Read(k)).AsSpan().SequenceEqual(CheckpointBytes.Of(b.Read(k))), k));
        }
        var err = new StringWriter();
        var old = Console.Error;
        Console.SetError(err);
        int g;
        try
        {
            g = Program.Main(["generate", "--model", mm, "--prompt", "Hello", "--max-new-tokens", "3"]);
        }
        finally
        {
            Console.SetError(old);
        }
        Assert.True(g == 0, err.ToString());
        var fromHf = Trainer.Run(fixture.Args("--train-iters", "1", "--load", fixture.Model), TextWriter.Null);
        var fromMm = Trainer.Run(fixture.Args("--train-iters", "1", "--load", mm, "--save", Path.Combine(dir.Path, "save")), TextWriter.Null);
        Assert.Equal(fromHf.StepLosses, fromMm.StepLosses);
        Assert.NotEqual(0, Run("convert", "hf-to-mm", "--hf-dir", fixture.Model, "--mm-dir", Path.Combine(dir.Path, "bad"), "--tp-size", "3"));
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "bad")));
    }
}
