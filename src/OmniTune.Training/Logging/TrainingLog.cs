using System.Globalization;
using System.Text.Json;
using ScottPlot;

namespace OmniTune.Training.Logging;

/// <summary>One logged iteration.</summary>
/// <param name="Iteration">Completed iteration.</param>
/// <param name="TrainIters">Planned iterations.</param>
/// <param name="ConsumedSamples">Samples so far.</param>
/// <param name="MillisecondsPerIteration">Mean time of the iterations since the last line.</param>
/// <param name="LearningRate">Rate the iteration trained with.</param>
/// <param name="GlobalBatchSize">Samples per step.</param>
/// <param name="TokensPerSample">Mean padded length of the micro-batches.</param>
/// <param name="Loss">Mean step loss since the last line.</param>
/// <param name="GradNorm">Gradient norm before clipping.</param>
/// <param name="SkippedIterations">Skipped (non-finite) steps so far.</param>
/// <param name="TokensPerSecond">Real (unpadded) tokens per second.</param>
/// <param name="Mfu">Model FLOP utilisation against the measured GEMM rate.</param>
/// <param name="ResidentMemoryGiB">This process's resident memory when the line was written (rank 0's, under MPI).</param>
public sealed record StepRecord(int Iteration, int TrainIters, long ConsumedSamples, double MillisecondsPerIteration, double LearningRate,
    int GlobalBatchSize, double TokensPerSample, double Loss, double GradNorm, int SkippedIterations, double TokensPerSecond, double Mfu,
    double ResidentMemoryGiB);

/// <summary>A validation result in the metrics file (told apart from step records by <see cref="Kind"/>).</summary>
/// <param name="Iteration">Iteration after which it ran.</param>
/// <param name="Loss">Mean validation loss.</param>
public sealed record ValidationRecord(int Iteration, double Loss)
{
    /// <summary>The <see cref="Kind"/> of validation records.</summary>
    public const string KindName = "validation";

    /// <summary>Always "validation".</summary>
    public string Kind => KindName;
}

/// <summary>
/// Step lines in MindSpeed-MM's format (with <c>elapsed time per iteration (ms):</c> and <c>tokens per sample:</c>, so
/// existing scripts keep working) plus tokens/s and MFU, a JSONL metrics file, TensorBoard scalars (--tensorboard-dir)
/// and a loss-curve PNG at the end.
/// </summary>
public sealed class TrainingLog : IDisposable
{
    readonly TextWriter console;
    readonly StreamWriter? jsonl;
    readonly bool logTps;
    readonly List<(int Iteration, double Loss)> losses = [];
    readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    /// <summary>Creates the log; metrics go to <paramref name="metricsFile"/> when given.</summary>
    public TrainingLog(TextWriter console, string? metricsFile, bool logTps, string? tensorboardDir = null)
    {
        if (tensorboardDir is not null)
        {
            Directory.CreateDirectory(tensorboardDir);
            tensorboard = TorchSharp.torch.utils.tensorboard.SummaryWriter(tensorboardDir);
        }
        this.console = console;
        this.logTps = logTps;
        if (metricsFile is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(metricsFile))!);
            jsonl = new StreamWriter(metricsFile, append: true);
        }
    }

    /// <summary>Losses logged so far.</summary>
    public IReadOnlyList<(int Iteration, double Loss)> Losses => losses;

    /// <summary>Writes one line.</summary>
    public void Step(StepRecord r)
    {
        losses.Add((r.Iteration, r.Loss));
        string I(double v, string f) => v.ToString(f, CultureInfo.InvariantCulture);
        string line = $" [{DateTime.Now:yyyy-MM-dd HH:mm:ss}] iteration {r.Iteration,8}/{r.TrainIters,8} | consumed samples: {r.ConsumedSamples,12} | " +
                      $"elapsed time per iteration (ms): {I(r.MillisecondsPerIteration, "F1")} | learning rate: {I(r.LearningRate, "E6")} | " +
                      $"global batch size: {r.GlobalBatchSize,5} | " + (logTps ? $"tokens per sample: {I(r.TokensPerSample, "E6")} | " : "") +
                      $"loss: {I(r.Loss, "E6")} | loss scale: 1.0 | grad norm: {I(r.GradNorm, "F3")} | number of skipped iterations: {r.SkippedIterations,3} | " +
                      $"tokens/s: {I(r.TokensPerSecond, "F1")} | MFU: {I(100 * r.Mfu, "F1")} % |";
        console.WriteLine(line);
        jsonl?.WriteLine(JsonSerializer.Serialize(r));
        jsonl?.Flush();
        if (tensorboard is not null)
        {
            tensorboard.add_scalar("lm loss", (float)r.Loss, r.Iteration);
            tensorboard.add_scalar("learning-rate", (float)r.LearningRate, r.Iteration);
            tensorboard.add_scalar("grad-norm", (float)r.GradNorm, r.Iteration);
            tensorboard.add_scalar("tokens-per-second", (float)r.TokensPerSecond, r.Iteration);
            tensorboard.add_scalar("resident-memory-GiB", (float)r.ResidentMemoryGiB, r.Iteration);
        }
    }

    /// <summary>The validation loss after <paramref name="iteration"/>, Megatron's way (value and perplexity), in the JSONL and TensorBoard too.</summary>
    public void Validation(int iteration, double loss)
    {
        string I(double v) => v.ToString("E6", CultureInfo.InvariantCulture);
        string rule = new('-', 100);
        console.WriteLine(rule);
        console.WriteLine($" validation loss at iteration {iteration} | lm loss value: {I(loss)} | lm loss PPL: {I(Math.Exp(Math.Min(loss, 20)))} |");
        console.WriteLine(rule);
        jsonl?.WriteLine(JsonSerializer.Serialize(new ValidationRecord(iteration, loss)));
        jsonl?.Flush();
        tensorboard?.add_scalar("lm loss validation", (float)loss, iteration);
    }

    /// <summary>
    /// Draws the loss curve into a PNG: the whole run as <paramref name="metricsFile"/> records it (a resumed run's
    /// earlier iterations included, each once), else the loss of every step of this process from
    /// <paramref name="firstIteration"/> on.
    /// </summary>
    public static void SavePlot(string path, string metricsFile, int firstIteration, IReadOnlyList<double> stepLosses)
    {
        var points = File.Exists(metricsFile) ? ReadLosses(metricsFile) : [];
        if (points.Count == 0) points = stepLosses.Select((loss, i) => (firstIteration + i, loss)).ToList();
        if (points.Count == 0) return;
        var plot = new Plot();
        var line = plot.Add.Scatter(points.Select(p => (double)p.Iteration).ToArray(), points.Select(p => p.Loss).ToArray());
        line.MarkerSize = 0;
        line.LegendText = "training";
        var validation = File.Exists(metricsFile) ? ReadLosses(metricsFile, ValidationRecord.KindName) : [];
        if (validation.Count > 0)
        {
            var second = plot.Add.Scatter(validation.Select(p => (double)p.Iteration).ToArray(), validation.Select(p => p.Loss).ToArray());
            second.LegendText = "validation";
            plot.ShowLegend();
        }
        plot.Title("OmniTune training loss");
        plot.XLabel("iteration");
        plot.YLabel("loss");
        plot.SavePng(path, 800, 500);
    }

    /// <summary>
    /// (iteration, loss) of every training record of a metrics file (or of every validation record, with
    /// <paramref name="kind"/> "validation"), the last record of an iteration winning.
    /// </summary>
    public static List<(int Iteration, double Loss)> ReadLosses(string metricsFile, string? kind = null)
    {
        var byIteration = new SortedDictionary<int, double>();
        foreach (string line in File.ReadLines(metricsFile))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var document = JsonDocument.Parse(line);
            JsonElement root = document.RootElement;
            string? lineKind = root.TryGetProperty(nameof(ValidationRecord.Kind), out JsonElement k) ? k.GetString() : null;
            if (lineKind != kind) continue;
            byIteration[root.GetProperty(nameof(StepRecord.Iteration)).GetInt32()] = root.GetProperty(nameof(StepRecord.Loss)).GetDouble();
        }
        return byIteration.Select(kv => (kv.Key, kv.Value)).ToList();
    }

    /// <inheritdoc/>
    public void Dispose() => jsonl?.Dispose();
}
