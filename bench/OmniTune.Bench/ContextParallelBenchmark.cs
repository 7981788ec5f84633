using System.Diagnostics;
using OmniTune.Distributed;
using OmniTune.Distributed.Context;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Text;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>
/// Under <c>mpirun -np 2</c>: one long synthetic video sample (TMRoPE positions of frames × rows × columns of merged
/// patches, default 16,384 tokens) through a tiny-width text decoder, forward, loss and backward, at CP 1 (each rank the
/// whole sequence) and CP 2 (each rank two of four load-balanced chunks, keys and values all-gathered): step time, time
/// in the context-parallel collectives, and the peak memory a step adds above the resident level, per rank. With
/// <c>--ring</c> also the ring exchange (<see cref="RingAttention"/>), after checking that it computes the same attention.
/// </summary>
static class ContextParallelBenchmark
{
    public static void Run(int layers, int seq, int steps, bool ring, TextWriter log)
    {
        using IProcessGroup world = ProcessGroups.World();
        if (world.Size != 2) throw new ArgumentException("--only context-parallel runs under mpirun -np 2");
        TextWriter output = world.Rank == 0 ? log : TextWriter.Null;
        var text = new Qwen25OmniTextConfig
        {
            HiddenSize = 128,
            IntermediateSize = 256,
            NumHiddenLayers = layers,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            VocabSize = 4096,
            RopeScaling = new RopeScalingConfig { MropeSection = [2, 3, 3] },
        };
        var config = TextDecoderBenchmark.DecoderOnly(text);
        // A video of frames of 16 × 16 merged patches, one temporal step of 2 per frame (TMRoPE's t, h, w).
        const int side = 16;
        Tensor index = arange(seq, ScalarType.Int64);
        Tensor positions = stack([index.div(side * side, rounding_mode: RoundingMode.floor) * 2, index.remainder(side * side).div(side, rounding_mode: RoundingMode.floor),
            index.remainder(side)]).unsqueeze(1).contiguous();   // [3, 1, S]
        Tensor ids = randint(0, text.VocabSize, [1, seq], generator: new Generator(3));
        output.WriteLine($"one synthetic video sample of {seq} tokens ({seq / (side * side)} frames of {side}x{side}) on 2 ranks: text decoder hidden {text.HiddenSize}, " +
                         $"{layers} layers, heads {text.NumAttentionHeads}/{text.NumKeyValueHeads}, vocab {text.VocabSize}, fp32, {get_num_threads()} thread(s) per rank");
        {
            // The ring is measured only if it computes what the kept all-gather computes.
            using var scope = NewDisposeScope();
            var split = new ContextSplit(world, 2048);
            var g = new Generator(11);
            Tensor q = randn([1, 4, 1024, 32], generator: g), k = randn([1, 2, 1024, 32], generator: g), v = randn([1, 2, 1024, 32], generator: g);
            double worst = (RingAttention.Attend(split, q, k, v, 256) - split.Attend(q, k, v, null, (f, x, c) => f(x, c), 256)).abs().max().item<float>();
            output.WriteLine($"ring vs all-gather attention on 2,048 tokens: largest difference {worst:E1}");
            if (!(worst < 1e-4)) throw new InvalidOperationException($"the ring attention differs from the all-gather one by {worst}");
        }
        var configurations = new List<(string Name, int Cp, bool Ring)> { ("CP 1 (whole sequence on each rank)", 1, false), ("CP 2, keys/values all-gathered (OmniTune's)", 2, false) };
        if (ring) configurations.Add(("CP 2, ring exchange (measured, not kept)", 2, true));
        foreach (var (name, cp, byRing) in configurations)
        {
            using var group = new TimedProcessGroup(cp == 1 ? new SingleRankGroup("bench.cp") : world);
            using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
            double Step()
            {
                var clock = Stopwatch.StartNew();
                using var scope = NewDisposeScope();
                ContextSplit? split = cp > 1 ? new ContextSplit(group, seq) : null;
                Tensor h = model.TextModel.Embed(ids);
                if (split is not null) h = split.Take(h, 1);
                using var pass = split is null
                    ? model.TextModel.Prepare(positions, (Tensor?)null, h.dtype)
                    : model.TextModel.Prepare(split.Take(positions, 2), AttentionMask.Partial((q, k, v) => byRing ? RingAttention.Attend(split, q, k, v) : split.Attend(q, k, v, null, OmniTune.Models.Common.ActivationCheckpoint.Run)), h.dtype);
                h = model.TextModel.Norm(model.TextModel.Layers(h, pass, 0, layers));
                var (loss, _) = StepLoss.ForMicroBatch(h, model.Head, text.VocabSize, ids, LossMode.Default, 1, 0, context: split);
                loss.backward();
                model.zero_grad();
                return clock.Elapsed.TotalMilliseconds;
            }
            var m = ParallelMeasurement.Of(world, group, Step, steps);
            output.WriteLine($"RESULT {name}: step {m.StepMs:F0} ms, context-parallel communication {m.CommunicationMs:F0} ms, " +
                             $"peak memory above resident {m.PeakMiB0:F0} / {m.PeakMiB1:F0} MiB (rank 0 / 1)");
            world.Barrier();
        }
    }
}
