using System.Diagnostics;
using OmniTune.Core.Native;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>Forward+backward throughput of the thinker's text decoder with the LM head and loss.</summary>
static class TextDecoderBenchmark
{
    public sealed record Result(double TokensPerSecond, double ModelGflopPerStep, double SecondsPerStep, double AchievedGflops, double PeakGiB = 0, double ResidentGiB = 0,
        double BackwardPeakGiB = 0, double OptimizerPeakGiB = 0);

    /// <summary>The bench configuration of issue 2: hidden 1024, 8 layers, 16/4 heads, the real 151,936 vocab.</summary>
    /// <summary>A thinker around <paramref name="text"/> with one-layer encoders of width 64 (the benches that time the decoder alone).</summary>
    public static Qwen25OmniThinkerConfig DecoderOnly(Qwen25OmniTextConfig text) => new()
    {
        Text = text,
        Vision = new Qwen25OmniVisionConfig { Depth = 1, HiddenSize = 64, IntermediateSize = 64, NumHeads = 2, OutHiddenSize = text.HiddenSize, FullAttBlockIndexes = [0] },
        Audio = new Qwen25OmniAudioConfig { EncoderLayers = 1, DModel = 64, EncoderAttentionHeads = 2, EncoderFfnDim = 64, OutputDim = text.HiddenSize },
    };

    public static Qwen25OmniTextConfig BenchConfig(int layers) => new()
    {
        VocabSize = 151936,
        HiddenSize = 1024,
        IntermediateSize = 2816,
        NumHiddenLayers = layers,
        NumAttentionHeads = 16,
        NumKeyValueHeads = 4,
        RopeScaling = new RopeScalingConfig { MropeSection = [8, 12, 12] },
    };

    public static Result Run(Qwen25OmniTextConfig text, int batch, int seq, int warmup, int steps, TextWriter log, bool optimizerStep = false)
    {
        var thinker = DecoderOnly(text);   // the decoder alone, as bench/pytorch-eager.py builds it (7B-wide towers would hold 5 GB)
        using var model = new Qwen25OmniThinkerForConditionalGeneration(thinker, tiedLmHead: false);
        var parameters = model.TextModel.parameters().Concat(model.named_parameters().Where(p => p.name == "lm_head.weight").Select(p => p.parameter)).ToList();
        foreach (var (_, p) in model.named_parameters()) p.requires_grad = parameters.Contains(p);
        using var optimizer = optimizerStep ? new OmniTune.Training.Optimization.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(parameters)], 1e-5, 0.9, 0.999, 1e-8, 0) : null;
        Tensor ids = randint(0, text.VocabSize, [batch, seq], generator: new Generator(2));
        Tensor positions = model.PositionIds(new ThinkerInputs { InputIds = ids }).Positions;
        double seconds = 0;
        long resident = 0, backwardPeak = 0, optimizerPeak = 0;
        for (int i = 0; i < warmup + steps; i++)
        {
            if (i == warmup)
            {
                GC.Collect();
                resident = ProcessMemory.Rss();
                ProcessMemory.ResetPeak();
            }
            if (i > warmup && optimizer is not null) ProcessMemory.ResetPeak();   // each phase's peak is measured from its start
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            // The trainer's loss: final hidden states, then the LM head and cross-entropy in chunks of positions.
            Tensor hidden = model.TextModel.Forward(model.TextModel.Embed(ids), positions, null);
            var (loss, value) = StepLoss.ForMicroBatch(hidden, model.Head, text.VocabSize, ids, LossMode.Default, 1, 0, headWeight: model.HeadWeight);
            loss.backward();
            if (optimizer is not null && i >= warmup)
            {
                // Where the peak is: forward+backward (activations, then the gradients) or the update (its temporaries).
                backwardPeak = Math.Max(backwardPeak, ProcessMemory.Peak());
                ProcessMemory.ResetPeak();
            }
            optimizer?.step();
            if (optimizer is not null && i >= warmup) optimizerPeak = Math.Max(optimizerPeak, ProcessMemory.Peak());
            model.zero_grad();
            double elapsed = clock.Elapsed.TotalSeconds;
            if (i >= warmup) seconds += elapsed;
            log.WriteLine($"  {(i < warmup ? "warm-up" : "step")} {i + 1}: {elapsed * 1000:F0} ms (loss {value:F3})");
        }
        double perStep = seconds / steps;
        double gflop = batch * ThinkerFlops.TextDecoder(text, seq) / 1e9;
        const double GiB = 1 << 30;
        long peak = Math.Max(ProcessMemory.Peak(), Math.Max(backwardPeak, optimizerPeak));
        return new Result(batch * seq / perStep, gflop, perStep, gflop / perStep, peak / GiB, resident / GiB, backwardPeak / GiB, optimizerPeak / GiB);
    }
}
