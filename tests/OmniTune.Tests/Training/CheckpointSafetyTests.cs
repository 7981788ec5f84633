using System.Text.Json;
using System.Text.Json.Nodes;
using OmniTune.Core.Native;
using OmniTune.Tests.Testing;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Loop;

namespace OmniTune.Tests.Training;

/// <summary>Checkpoints are never lost or mixed: replacement, foreign runs, crashes, damaged files.</summary>
public sealed class CheckpointSafetyTests : IClassFixture<TrainingFixture>
{
    readonly TrainingFixture fixture;

    public CheckpointSafetyTests(TrainingFixture fixture) => this.fixture = fixture;

    static int[] MetricsIterations(string root) =>
        File.ReadAllLines(Path.Combine(root, CheckpointStore.MetricsFile)).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("Iteration").GetInt32()).ToArray();

    [Fact]
    public async Task Replacing_a_folder_never_leaves_its_path_missing_or_incomplete()
    {
        // A watcher polls the target while it is replaced 20 times: deleting the old folder before moving the new one in
        // (the earlier code) leaves a gap in which a kill -9 would leave the tracker naming nothing.
        using var dir = new TempFolder();
        string target = Path.Combine(dir.Path, "iter_0000010");
        void Fill(string folder, int generation)
        {
            Directory.CreateDirectory(folder);
            for (int i = 0; i < 300; i++) File.WriteAllText(Path.Combine(folder, $"f{i}"), "x");
            File.WriteAllText(Path.Combine(folder, "complete"), generation.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        Fill(target, 0);
        int gaps = 0;
        bool done = false;
        var watcher = Task.Run(() =>
        {
            while (!Volatile.Read(ref done))
            {
                if (!File.Exists(Path.Combine(target, "complete"))) gaps++;
            }
        });
        for (int generation = 1; generation <= 20; generation++)
        {
            string next = $"{target}.tmp-{generation}";
            Fill(next, generation);
            AtomicDirectory.Replace(next, target);
        }
        Volatile.Write(ref done, true);
        await watcher;
        Assert.Equal(0, gaps);
        Assert.Equal("20", File.ReadAllText(Path.Combine(target, "complete")));
        Assert.Single(Directory.GetDirectories(dir.Path));
    }

    [Fact]
    public void A_folder_set_aside_by_an_interrupted_replacement_is_put_back_when_the_tracker_names_it()
    {
        using var dir = new TempFolder();
        string aside = CheckpointStore.IterationFolder(dir.Path, 4) + AtomicDirectory.ReplacedSuffix + "0123";
        Directory.CreateDirectory(aside);
        File.WriteAllText(Path.Combine(dir.Path, CheckpointStore.Tracker), "4");
        Assert.Equal(4, CheckpointStore.ResolveIteration(dir.Path, null));
        Assert.True(Directory.Exists(CheckpointStore.IterationFolder(dir.Path, 4)));
        Assert.False(Directory.Exists(aside));
    }

    [Fact]
    public void Resaving_an_iteration_that_exists_replaces_it_and_the_log_keeps_each_iteration_once()
    {
        using var dir = new TempFolder();
        Trainer.Run(fixture.Args("--train-iters", "4", "--save", dir.Path, "--save-interval", "2"), TextWriter.Null);
        var log = new StringWriter();
        var again = Trainer.Run(fixture.Args("--train-iters", "4", "--save", dir.Path, "--save-interval", "2", "--load", dir.Path, "--ckpt-step", "2"), log);
        Assert.Contains("kept the 2 lines up to iteration 2", log.ToString());
        Assert.Equal(2, again.StepLosses.Count);
        Assert.Equal("4", File.ReadAllText(Path.Combine(dir.Path, CheckpointStore.Tracker)));
        Assert.Equal([1, 2, 3, 4], MetricsIterations(dir.Path));
        Assert.Equal(4, CheckpointStore.ReadState(CheckpointStore.IterationFolder(dir.Path, 4)).Iteration);
        Assert.Equal(["iter_0000002", "iter_0000004"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_new_run_refuses_a_save_folder_holding_another_run_unless_asked_to_overwrite_it()
    {
        using var dir = new TempFolder();
        Trainer.Run(fixture.Args("--train-iters", "3", "--save", dir.Path), TextWriter.Null);
        var error = Assert.Throws<ArgumentException>(() => Trainer.Run(fixture.Args("--train-iters", "2", "--save", dir.Path), TextWriter.Null));
        Assert.Contains($"--save {dir.Path} holds another run (iter_0000003", error.Message);
        Assert.Contains("--overwrite-output-dir", error.Message);
        Assert.Equal("3", File.ReadAllText(Path.Combine(dir.Path, CheckpointStore.Tracker)));   // untouched
        Trainer.Run(fixture.Args("--train-iters", "2", "--save", dir.Path, "--overwrite-output-dir"), TextWriter.Null);
        Assert.Equal("2", File.ReadAllText(Path.Combine(dir.Path, CheckpointStore.Tracker)));
        Assert.Equal([1, 2], MetricsIterations(dir.Path));
        Assert.False(Directory.Exists(CheckpointStore.IterationFolder(dir.Path, 3)));
    }

    [Fact]
    public void Resuming_after_a_crash_truncates_the_metrics_to_the_checkpoint_and_removes_stale_temporaries()
    {
        using var dir = new TempFolder();
        var straight = Trainer.Run(fixture.Args("--train-iters", "4", "--save", Path.Combine(dir.Path, "straight")), TextWriter.Null);
        string root = Path.Combine(dir.Path, "crashed");
        Trainer.Run(fixture.Args("--train-iters", "3", "--save", root, "--save-interval", "2"), TextWriter.Null);
        // As a kill during the save of iteration 3 leaves it: metrics up to 3, tracker at 2, a half-written temporary.
        Directory.Delete(CheckpointStore.IterationFolder(root, 3), recursive: true);
        Directory.CreateDirectory(CheckpointStore.IterationFolder(root, 3) + ".tmp-0123abcd");
        File.WriteAllText(Path.Combine(root, CheckpointStore.Tracker), "2");
        File.AppendAllText(Path.Combine(root, CheckpointStore.MetricsFile), "{\"Iteration\":4,\"Lo");   // a line cut by the kill
        var resumed = Trainer.Run(fixture.Args("--train-iters", "4", "--save", root, "--load", root), TextWriter.Null);
        Assert.Equal([1, 2, 3, 4], MetricsIterations(root));
        Assert.Empty(Directory.GetDirectories(root, "*.tmp-*"));
        Assert.Equal(straight.StepLosses.Skip(2), resumed.StepLosses);
        var plotted = OmniTune.Training.Logging.TrainingLog.ReadLosses(Path.Combine(root, CheckpointStore.MetricsFile));
        Assert.Equal([1, 2, 3, 4], plotted.Select(p => p.Iteration));
    }

    [Fact]
    public void Damaged_optimizer_state_trainer_state_and_rng_state_are_errors_naming_the_file()
    {
        using var dir = new TempFolder();
        string source = Path.Combine(dir.Path, "source");
        Trainer.Run(fixture.Args("--train-iters", "2", "--save", source), TextWriter.Null);
        string Damaged(string name, Action<string> damage)
        {
            string copy = Path.Combine(dir.Path, name);
            CopyFolder(source, copy);
            damage(CheckpointStore.IterationFolder(copy, 2));
            return copy;
        }
        string Error(string root) =>
            Assert.Throws<InvalidDataException>(() => Trainer.Run(fixture.Args("--train-iters", "3", "--load", root), TextWriter.Null)).Message;

        string truncated = Damaged("truncated", folder =>
        {
            string file = Path.Combine(folder, CheckpointStore.OptimizerFile);
            using var stream = File.Open(file, FileMode.Open);
            stream.SetLength(stream.Length / 2);
        });
        Assert.Contains(Path.Combine(CheckpointStore.IterationFolder(truncated, 2), CheckpointStore.OptimizerFile), Error(truncated));
        Assert.Contains("truncated or damaged", Error(truncated));

        string garbage = Damaged("garbage", folder => File.WriteAllText(Path.Combine(folder, CheckpointStore.StateFile), "{\"Iteration\": 2, garbage"));
        Assert.Contains(Path.Combine(CheckpointStore.IterationFolder(garbage, 2), CheckpointStore.StateFile), Error(garbage));

        foreach (var (name, rng) in new[] { ("rng-short", Convert.ToBase64String(new byte[100])), ("rng-text", "not base64 at all!") })
        {
            string root = Damaged(name, folder =>
            {
                string file = Path.Combine(folder, CheckpointStore.StateFile);
                var state = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
                state["RngState"] = rng;
                File.WriteAllText(file, state.ToJsonString());
            });
            string message = Error(root);
            Assert.Contains(Path.Combine(CheckpointStore.IterationFolder(root, 2), CheckpointStore.StateFile), message);
            Assert.Contains("rng_state", message);
        }

        // Same length, other bytes: the reader itself fails, and the message still names the file.
        string scrambled = Damaged("scrambled", folder =>
        {
            string file = Path.Combine(folder, CheckpointStore.OptimizerFile);
            byte[] bytes = File.ReadAllBytes(file);
            new Random(3).NextBytes(bytes.AsSpan(0, Math.Min(64, bytes.Length)));
            File.WriteAllBytes(file, bytes);
        });
        Assert.Contains(Path.Combine(CheckpointStore.IterationFolder(scrambled, 2), CheckpointStore.OptimizerFile), Error(scrambled));
    }

    static void CopyFolder(string from, string to)
    {
        foreach (string directory in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(directory.Replace(from, to, StringComparison.Ordinal));
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to, StringComparison.Ordinal));
    }
}
