using System.Diagnostics;
using OmniTune.Distributed;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Loop;
using OmniTune.Training.Parallel;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>
/// Under <c>mpirun -np 2</c>: a text-decoder training step (forward, vocabulary-parallel loss, backward) at TP 1 (each rank
/// the whole model), TP 2 and TP 2 with sequence parallel — step time, the share spent in the tensor-parallel group's
/// collectives, and the peak memory a step adds above the resident level (activations and gradients), per rank.
/// </summary>
static class TensorParallelBenchmark
{
    public static void Run(int layers, int seq, int steps, TextWriter log)
    {
        using IProcessGroup world = ProcessGroups.World();
        if (world.Size != 2) throw new ArgumentException("--only tensor-parallel runs under mpirun -np 2");
        TextWriter output = world.Rank == 0 ? log : TextWriter.Null;
        var text = TextDecoderBenchmark.BenchConfig(layers) with { VocabSize = 32768 };
        var config = TextDecoderBenchmark.DecoderOnly(text);
        output.WriteLine($"text decoder training step on 2 ranks: hidden {text.HiddenSize}, {layers} layers, heads {text.NumAttentionHeads}/{text.NumKeyValueHeads}, " +
                         $"intermediate {text.IntermediateSize}, vocab {text.VocabSize}, batch 1 × seq {seq}, {get_num_threads()} thread(s) per rank");
        foreach (var (name, tp, sequenceParallel) in new[] { ("TP 1 (whole model on each rank)", 1, false), ("TP 2", 2, false), ("TP 2 + sequence parallel", 2, true) })
        {
            using var group = new TimedProcessGroup(tp == 1 ? new SingleRankGroup("bench.tp") : world);
            using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
            if (tp > 1) ThinkerTensorParallel.ParallelizeTextDecoder(model, group, sequenceParallel);
            Tensor ids = randint(0, text.VocabSize, [1, seq], generator: new Generator(3));
            Tensor positions = arange(seq).expand(3, 1, seq).contiguous();
            double Step()
            {
                var clock = Stopwatch.StartNew();
                using var scope = NewDisposeScope();
                Tensor h = model.TextModel.Embed(ids);
                if (sequenceParallel) h = TensorParallelRegion.Scatter(h, group, 1);
                using var pass = model.TextModel.Prepare(positions, (Tensor?)null, h.dtype);
                h = model.TextModel.Layers(h, pass, 0, layers);
                var (losses, mask) = StepLoss.TokenLosses(model.Head(model.TextModel.Norm(h)), ids, group);
                ((losses * mask).sum() / mask.sum()).backward();
                model.zero_grad();
                return clock.Elapsed.TotalMilliseconds;
            }
            var m = ParallelMeasurement.Of(world, group, Step, steps);
            output.WriteLine($"RESULT {name}: step {m.StepMs:F0} ms, tensor-parallel communication {m.CommunicationMs:F0} ms " +
                             $"({100 * m.CommunicationMs / m.StepMs:F1} %), peak memory above resident {m.PeakMiB0:F0} / {m.PeakMiB1:F0} MiB (rank 0 / 1)");
            world.Barrier();
        }
    }
}
