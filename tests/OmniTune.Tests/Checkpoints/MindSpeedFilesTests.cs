using System.Text.Json;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Cli;
using OmniTune.Core.Safetensors;
using OmniTune.Tests.Core;
using OmniTune.Tests.Testing;
using OmniTune.Tests.Training;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Loop;

namespace OmniTune.Tests.Checkpoints;

/// <summary>
/// MindSpeed-MM's own files: a converted release (TP 2 × PP 2 × VPP 2) and a Megatron training checkpoint (PP 2,
/// iteration 5, with args / optimizer / RNG state and <c>_extra_state</c> entries), both written by the real torch.save
/// (tests/fixtures/pytorch, from tools/pt-fixtures.py), read, converted and rewritten by OmniTune.
/// </summary>
public sealed class MindSpeedFilesTests : IClassFixture<TrainingFixture>
{
    static readonly string Release = Path.Combine(PyTorchFileTests.Fixtures, "mindspeed-release");
    static readonly string Training = Path.Combine(PyTorchFileTests.Fixtures, "mindspeed-training");
    static readonly ParallelLayout ReleaseLayout = new([[1, 0], [0, 1]], [[2, 0]], [[2, 0]], TpSize: 2);

    readonly TrainingFixture fixture;

    public MindSpeedFilesTests(TrainingFixture fixture) => this.fixture = fixture;

    static int Run(params string[] args)
    {
        var (o, e) = (Console.Out, Console.Error);
        var error = new StringWriter();
        Console.SetOut(TextWriter.Null);
        Console.SetError(error);
        try
        {
            return Program.Main(args);
        }
        finally
        {
            Console.SetOut(o);
            Console.SetError(e);
            LastError = error.ToString();
        }
    }

    static string LastError { get; set; } = "";

    /// <summary>Every rank tensor of <paramref name="root"/> is what expected.json (written by torch) says, key for key.</summary>
    static void AssertRanksAsExpected(string root, string expectedJson)
    {
        using var expected = JsonDocument.Parse(File.ReadAllText(expectedJson));
        string folder = MmCheckpoint.IterationFolder(root);
        foreach (JsonProperty rank in expected.RootElement.EnumerateObject())
        {
            using var file = MmRankFile.Open(MmRankFile.Find(Path.Combine(folder, rank.Name))!);
            Assert.Equal(rank.Value.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), file.Names.Order(StringComparer.Ordinal));
            foreach (JsonProperty tensor in rank.Value.EnumerateObject())
                Assert.Equal(PyTorchFileTests.Describe(tensor.Value), PyTorchFileTests.Describe(file.Read(tensor.Name)));
        }
    }

    [Fact]
    public void A_release_written_by_torch_save_is_read_with_its_layout_and_round_trips_bit_exactly()
    {
        using var dir = new TempFolder();
        string hf = Path.Combine(dir.Path, "hf"), again = Path.Combine(dir.Path, "mm");
        AssertRanksAsExpected(Release, Path.Combine(Release, "expected.json"));
        using (var checkpoint = new MmCheckpoint(Release))
        {
            Assert.Equal(MmFileFormat.PyTorch, checkpoint.Format);
            Assert.Null(checkpoint.Iteration);
            Assert.Equal(ReleaseLayout.Normalized().ToJson(), checkpoint.Layout.Normalized().ToJson());
            CheckpointConverter.ToHf(checkpoint, hf, null);
        }
        using (var source = new HfTensorSource(hf)) CheckpointConverter.ToMm(source, ReleaseLayout, again);
        AssertRanksAsExpected(again, Path.Combine(Release, "expected.json"));   // the same tensors under the same keys, bit for bit
    }

    [Fact]
    public void A_megatron_training_checkpoint_converts_with_the_config_of_the_hugging_face_folder()
    {
        using var dir = new TempFolder();
        string fromRelease = Path.Combine(dir.Path, "from-release"), fromTraining = Path.Combine(dir.Path, "from-training");
        AssertRanksAsExpected(Training, Path.Combine(Training, "expected.json"));
        var missing = Assert.Throws<FileNotFoundException>(() => new MmCheckpoint(Training));
        Assert.Contains("--hf-dir", missing.Message, StringComparison.Ordinal);
        using (var checkpoint = new MmCheckpoint(Release)) CheckpointConverter.ToHf(checkpoint, fromRelease, null);

        // MindSpeed's own spelling, with the original Hugging Face folder: its config serves the checkpoint, its shards are mirrored.
        Assert.True(0 == Run("mm-convert", "Qwen2_5_OmniConverter", "mm_to_hf", "--cfg.save_hf_dir", fromTraining, "--cfg.mm_dir", Training,
            "--cfg.hf_config.hf_dir", fromRelease, "--cfg.parallel_config.llm_pp_layers", "[1,1]", "--cfg.parallel_config.vit_pp_layers", "[2,0]",
            "--cfg.parallel_config.audio_pp_layers", "[0,2]"), LastError);
        Assert.Equal(CheckpointBytes.Read(fromRelease), CheckpointBytes.Read(fromTraining));   // the same model, saved in two layouts by torch

        using var located = CheckpointLocator.Locate(Training, configFallback: fromRelease).Weights();
        var training = Assert.IsType<MmCheckpoint>(located);
        Assert.Equal(5, training.Iteration);
        Assert.Equal(new ParallelLayout([[1, 1]], [[2, 0]], [[0, 2]]).Normalized().ToJson(), training.Layout.Normalized().ToJson());
    }

    [Fact]
    public void Finetune_loads_a_megatron_training_checkpoint_and_says_what_it_leaves()
    {
        using var dir = new TempFolder();
        string hf = Path.Combine(dir.Path, "hf");
        using (var checkpoint = new MmCheckpoint(Release)) CheckpointConverter.ToHf(checkpoint, hf, null);
        var log = new StringWriter();
        var fromMindSpeed = Trainer.Run(fixture.Args("--train-iters", "1", "--load", Training), log);
        var fromHf = Trainer.Run(fixture.Args("--train-iters", "1", "--load", hf), TextWriter.Null);
        Assert.Equal(fromHf.StepLosses, fromMindSpeed.StepLosses);
        Assert.Contains("MindSpeed-MM (Megatron) training checkpoint", log.ToString(), StringComparison.Ordinal);
        Assert.Contains("optimizer", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Folders_of_neither_kind_say_what_was_expected()
    {
        using var dir = new TempFolder();
        string noTracker = Path.Combine(dir.Path, "empty");
        Directory.CreateDirectory(noTracker);
        Assert.Contains("release", Assert.Throws<FileNotFoundException>(() => MmCheckpoint.IterationFolder(noTracker)).Message, StringComparison.Ordinal);
        string badTracker = Path.Combine(dir.Path, "bad");
        Directory.CreateDirectory(badTracker);
        File.WriteAllText(Path.Combine(badTracker, MmCheckpoint.Tracker), "latest");
        Assert.Contains("neither \"release\" nor an iteration", Assert.Throws<InvalidDataException>(() => MmCheckpoint.IterationFolder(badTracker)).Message, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(badTracker, MmCheckpoint.Tracker), "12");
        Assert.Contains("iter_0000012", Assert.Throws<DirectoryNotFoundException>(() => MmCheckpoint.IterationFolder(badTracker)).Message, StringComparison.Ordinal);
        Assert.NotEqual(0, Run("convert", "mm-to-hf", "--mm-dir", noTracker, "--save-hf-dir", Path.Combine(dir.Path, "out")));
        Assert.Contains("not a checkpoint", LastError, StringComparison.Ordinal);
        Assert.NotEqual(0, Run("convert", "mm-to-hf", "--mm-dir", badTracker, "--save-hf-dir", Path.Combine(dir.Path, "out")));
        Assert.Contains("iter_0000012 does not exist", LastError, StringComparison.Ordinal);   // the locator passes the tracker's own error on
        Directory.CreateDirectory(Path.Combine(badTracker, "iter_0000012"));
        Assert.NotEqual(0, Run("convert", "mm-to-hf", "--mm-dir", badTracker, "--save-hf-dir", Path.Combine(dir.Path, "out")));
        Assert.Contains("no mp_rank_*/model_optim_rng.pt", LastError, StringComparison.Ordinal);
    }

    [PythonTorchFact]
    public void What_hf_to_mm_writes_torch_load_reads_as_mindspeeds_own_dicts()
    {
        using var dir = new TempFolder();
        string hf = Path.Combine(dir.Path, "hf"), mm = Path.Combine(dir.Path, "mm");
        using (var checkpoint = new MmCheckpoint(Release)) CheckpointConverter.ToHf(checkpoint, hf, null);
        Assert.True(0 == Run("convert", "hf-to-mm", "--hf-dir", hf, "--mm-dir", mm, "--llm-pp-layers", "[[1,0],[0,1]]", "--vit-pp-layers", "[[2,0]]",
            "--audio-pp-layers", "[[2,0]]", "--tp-size", "2"), LastError);
        var (code, output, error) = ChildProcess.Run(PyTorchFileTests.Python, [PyTorchFileTests.Script, "describe", Path.Combine(mm, "release")]);
        Assert.True(code == 0, error);
        using var ours = JsonDocument.Parse(output);
        using var theirs = JsonDocument.Parse(File.ReadAllText(Path.Combine(Release, "expected.json")));
        foreach (JsonProperty rank in theirs.RootElement.EnumerateObject())
        {
            JsonElement file = ours.RootElement.GetProperty(rank.Name + "/model_optim_rng.pt");
            Assert.Equal(["checkpoint_version", "model0", "model1"], file.GetProperty("keys").EnumerateArray().Select(k => k.GetString()));
            Assert.Equal(3.0, file.GetProperty("checkpoint_version").GetDouble());
            Assert.Equal("dict", file.GetProperty("model0.type").GetString());
            var loaded = new[] { "model0", "model1" }.SelectMany(c => file.GetProperty(c).EnumerateObject().Select(p => (Name: c + "." + p.Name, p.Value))).ToList();
            Assert.Equal(rank.Value.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), loaded.Select(l => l.Name).Order(StringComparer.Ordinal));
            foreach (var (name, value) in loaded) Assert.Equal(PyTorchFileTests.Describe(rank.Value.GetProperty(name)), PyTorchFileTests.Describe(value));
        }
    }
}
