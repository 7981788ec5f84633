using System.Globalization;
using OmniTune.Bench;
using OmniTune.Core.Native;
using OmniTune.Core.Tensors;
using OmniTune.Models.Qwen25Omni.Positions;
using static TorchSharp.torch;

// Usage: dotnet run --project bench/OmniTune.Bench -c Release -- [--only text|train|thinker|vision|audio|preprocess|data|recompute|convert|allreduce|tensor-parallel|context-parallel [--ring] (the last three under mpirun)] [--layers 8] [--seq 1024]
//        [--batch 1] [--steps 3] [--threads N] [--vision-depth 4] [--image 448] [--audio-layers 4] [--audio-seconds 30] [--text-tokens 256 (thinker)]
CachingAllocator.Use();   // as omnitune: jemalloc where installed (OMNITUNE_ALLOCATOR=glibc for glibc's)
MallocTuning.Apply();
var options = ParseOptions(args);
if (options.GetValueOrDefault("only") == "allreduce")
{
    AllReduceBenchmark.Run(Console.Out);
    return 0;
}
if (options.GetValueOrDefault("only") == "tensor-parallel")
{
    set_num_threads(1);
    TensorParallelBenchmark.Run(int.Parse(options.GetValueOrDefault("layers", "4"), CultureInfo.InvariantCulture),
        int.Parse(options.GetValueOrDefault("seq", "2048"), CultureInfo.InvariantCulture), int.Parse(options.GetValueOrDefault("steps", "3"), CultureInfo.InvariantCulture), Console.Out);
    return 0;
}
if (options.GetValueOrDefault("only") == "context-parallel")
{
    set_num_threads(1);
    ContextParallelBenchmark.Run(int.Parse(options.GetValueOrDefault("layers", "2"), CultureInfo.InvariantCulture),
        int.Parse(options.GetValueOrDefault("seq", "16384"), CultureInfo.InvariantCulture), int.Parse(options.GetValueOrDefault("steps", "1"), CultureInfo.InvariantCulture),
        options.ContainsKey("ring"), Console.Out);
    return 0;
}
int Get(string key, int fallback) => options.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
set_num_threads(Get("threads", Environment.ProcessorCount));
string only = options.GetValueOrDefault("only", "all");
int steps = Get("steps", 3);

Console.WriteLine($"OmniTune bench: {Environment.ProcessorCount} logical CPUs, torch threads {get_num_threads()}, fp32, allocator {CachingAllocator.Describe()}");
if (only == "preprocess")
{
    PreprocessingBenchmark.Run(Console.Out);
    return 0;
}
if (only == "recompute")
{
    RecomputeBenchmark.Run(Get("layers", 8), Get("seq", 1024), Console.Out);
    return 0;
}
if (only == "convert")
{
    ConversionBenchmark.Run(Get("layers", 2), Console.Out);
    return 0;
}
if (only == "data")
{
    DataBenchmark.Run(Console.Out);
    return 0;
}
double gemm4096 = GemmRate.Measure(4096, 3);
double gemmReference = GemmRate.Reference();
Console.WriteLine($"fp32 GEMM: {gemm4096:F1} GFLOP/s (4096³), {gemmReference:F1} GFLOP/s ({GemmRate.ReferenceSize}³); MFU below is against the " +
                  $"{GemmRate.ReferenceSize}³ rate, as finetune's (ThinkerFlops counts the model FLOPs of both)");
string Mfu(double gflops) => $"MFU {100 * gflops / gemmReference:F1} %";

if (only is "all" or "text")
{
    var config = TextDecoderBenchmark.BenchConfig(Get("layers", 8));
    int batch = Get("batch", 1), seq = Get("seq", 1024);
    Console.WriteLine($"text decoder fwd+bwd: hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, " +
                      $"intermediate {config.IntermediateSize}, vocab {config.VocabSize}, batch {batch} × seq {seq}");
    var r = TextDecoderBenchmark.Run(config, batch, seq, warmup: 1, steps, Console.Out);
    Console.WriteLine($"RESULT text-decoder: {r.TokensPerSecond:F0} tokens/s, {r.SecondsPerStep * 1000:F0} ms/step, " +
                      $"{r.ModelGflopPerStep:F1} model GFLOP/step, {r.AchievedGflops:F1} GFLOP/s, {Mfu(r.AchievedGflops)}, peak RSS {r.PeakGiB:F2} GiB (resident before the step {r.ResidentGiB:F2} GiB)");
}
if (only is "train")
{
    var config = TextDecoderBenchmark.BenchConfig(Get("layers", 8));
    int batch = Get("batch", 1), seq = Get("seq", 1024);
    Console.WriteLine($"text decoder training step (fwd+bwd+AdamW): hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocab {config.VocabSize}, batch {batch} × seq {seq}");
    var r = TextDecoderBenchmark.Run(config, batch, seq, warmup: 1, steps, Console.Out, optimizerStep: true);
    Console.WriteLine($"RESULT train-step: {r.TokensPerSecond:F0} tokens/s, {r.SecondsPerStep * 1000:F0} ms/step, {r.AchievedGflops:F1} GFLOP/s, {Mfu(r.AchievedGflops)} (AdamW step included in the time, not in the FLOPs), " +
                      $"peak RSS {r.PeakGiB:F2} GiB (resident before the step {r.ResidentGiB:F2} GiB; peak in forward+backward {r.BackwardPeakGiB:F2} GiB, in the AdamW step {r.OptimizerPeakGiB:F2} GiB)");
}
if (only is "thinker")
{
    int side = Get("image", 448) / 14, frames = Get("audio-seconds", 10) * 100, text = Get("text-tokens", 256);
    var config = ThinkerBenchmark.Config(Get("layers", 2), Get("vision-depth", 2), Get("audio-layers", 2));
    var grid = new GridThw(1, side, side);
    Console.WriteLine($"thinker fwd+bwd (everything trains): 7B widths, {config.Text.NumHiddenLayers} decoder layers, {config.Vision.Depth} ViT blocks, {config.Audio.EncoderLayers} audio layers, " +
                      $"vocab {config.Text.VocabSize}; one {side * 14}×{side * 14} image ({grid.Patches} patches), {frames / 100} s of audio, {text} text tokens");
    var r = ThinkerBenchmark.Run(config, grid, frames, text, warmup: 1, steps, Console.Out);
    Console.WriteLine($"RESULT thinker: {r.Tokens} tokens, {r.TokensPerSecond:F0} tokens/s, {r.SecondsPerStep * 1000:F0} ms/step, {r.ModelGflopPerStep:F1} model GFLOP/step, " +
                      $"{r.AchievedGflops:F1} GFLOP/s, {Mfu(r.AchievedGflops)}, peak RSS {r.PeakGiB:F2} GiB");
}
if (only is "all" or "vision")
{
    int depth = Get("vision-depth", 4), side = Get("image", 448) / 14;
    var grid = new GridThw(1, side, side);
    Console.WriteLine($"vision encoder fwd+bwd: 7B widths, {depth} blocks (last full attention), one {side * 14}×{side * 14} image = {grid.Patches} patches");
    var r = EncoderBenchmarks.Vision(depth, grid, warmup: 1, steps, Console.Out);
    Console.WriteLine($"RESULT vision-encoder: {r.UnitsPerSecond:F0} {r.Unit}/s, {r.SecondsPerStep * 1000:F0} ms/step, " +
                      $"{r.ModelGflopPerStep:F1} model GFLOP/step, {r.AchievedGflops:F1} GFLOP/s, {Mfu(r.AchievedGflops)}");
}
if (only is "all" or "audio")
{
    int layers = Get("audio-layers", 4), frames = Get("audio-seconds", 30) * 100;
    Console.WriteLine($"audio encoder fwd+bwd: 7B widths, {layers} layers, one audio of {frames} mel frames ({frames / 100} s)");
    var r = EncoderBenchmarks.Audio(layers, frames, warmup: 1, steps, Console.Out);
    Console.WriteLine($"RESULT audio-encoder: {r.UnitsPerSecond:F0} {r.Unit}/s ({r.UnitsPerSecond / 100:F1} audio s/s), {r.SecondsPerStep * 1000:F0} ms/step, " +
                      $"{r.ModelGflopPerStep:F1} model GFLOP/step, {r.AchievedGflops:F1} GFLOP/s, {Mfu(r.AchievedGflops)}");
}
return 0;

static Dictionary<string, string> ParseOptions(string[] args)
{
    var result = new Dictionary<string, string>(StringComparer.Ordinal);
    for (int i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) continue;
        bool valued = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
        result[args[i][2..]] = valued ? args[++i] : "true";   // a switch (--ring) has no value
    }
    return result;
}
