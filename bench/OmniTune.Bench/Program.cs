using System.Globalization;
using OmniTune.Bench;
using OmniTune.Core.Native;
using static TorchSharp.torch;

// Usage: dotnet run --project bench/OmniTune.Bench -c Release -- [text] [--layers 8] [--seq 1024] [--batch 1] [--steps 3] [--threads N]
MallocTuning.Apply();
var options = ParseOptions(args);
int threads = options.TryGetValue("threads", out var t) ? int.Parse(t, CultureInfo.InvariantCulture) : Environment.ProcessorCount;
set_num_threads(threads);
int Get(string key, int fallback) => options.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

Console.WriteLine($"OmniTune bench: {Environment.ProcessorCount} logical CPUs, torch threads {get_num_threads()}, fp32");
double gemm4096 = GemmRate.Measure(4096, 3);
double gemm1024 = GemmRate.Measure(1024, 5);
Console.WriteLine($"fp32 GEMM: {gemm4096:F1} GFLOP/s (4096³), {gemm1024:F1} GFLOP/s (1024³); MFU below is against the 4096³ rate");

var config = TextDecoderBenchmark.BenchConfig(Get("layers", 8));
int batch = Get("batch", 1), seq = Get("seq", 1024);
Console.WriteLine($"text decoder fwd+bwd: hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, " +
                  $"intermediate {config.IntermediateSize}, vocab {config.VocabSize}, batch {batch} × seq {seq}");
var result = TextDecoderBenchmark.Run(config, batch, seq, warmup: 1, steps: Get("steps", 3), Console.Out);
Console.WriteLine($"RESULT text-decoder: {result.TokensPerSecond:F0} tokens/s, {result.SecondsPerStep * 1000:F0} ms/step, " +
                  $"{result.ModelGflopPerStep:F1} model GFLOP/step, {result.AchievedGflops:F1} GFLOP/s, MFU {100 * result.AchievedGflops / gemm4096:F1} %");
return 0;

static Dictionary<string, string> ParseOptions(string[] args)
{
    var result = new Dictionary<string, string>(StringComparer.Ordinal);
    for (int i = 0; i + 1 < args.Length; i++)
    {
        if (args[i].StartsWith("--", StringComparison.Ordinal)) result[args[i][2..]] = args[++i];
    }
    return result;
}
