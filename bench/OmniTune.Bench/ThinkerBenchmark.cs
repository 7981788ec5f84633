using System.Diagnostics;
using OmniTune.Core.Native;
using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Arguments;
using OmniTune.Training.Loop;
using static TorchSharp.torch;

namespace OmniTune.Bench;

/// <summary>
/// Forward+backward of the whole thinker at 7B widths with fewer layers on one conversation — text, one image, one
/// audio clip — as <c>finetune</c> runs it: embeddings with the encoders' features spliced in, TMRoPE positions, the
/// decoder, the fused LM head and loss. Everything trains; the FLOPs are <see cref="ThinkerFlops.MicroBatch"/>'s.
/// </summary>
static class ThinkerBenchmark
{
    public sealed record Result(long Tokens, double TokensPerSecond, double ModelGflopPerStep, double SecondsPerStep, double AchievedGflops, double PeakGiB);

    /// <summary>7B widths (decoder 3584, ViT and audio 1280, vocabulary 152,064) with the given depths.</summary>
    public static Qwen25OmniThinkerConfig Config(int textLayers, int visionDepth, int audioLayers) => new()
    {
        Text = new Qwen25OmniTextConfig { NumHiddenLayers = textLayers },
        Vision = EncoderBenchmarks.VisionConfig(visionDepth),
        Audio = EncoderBenchmarks.AudioConfig(audioLayers),
    };

    public static Result Run(Qwen25OmniThinkerConfig config, GridThw grid, int frames, int textTokens, int warmup, int steps, TextWriter log)
    {
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        var generator = new Generator(3);
        long imageTokens = grid.Tokens(config.Vision.SpatialMergeSize), audioTokens = AudioLengths.Tokens(frames);
        // text, <vision_start> image <vision_end>, <audio_start> audio <audio_end>, text: the processor's layout of one turn.
        var ids = new List<long>();
        void Text(int n) => ids.AddRange(randint(0, 150_000, [n], generator: generator).data<long>().ToArray());
        Text(textTokens / 2);
        ids.Add(config.VisionStartTokenId);
        ids.AddRange(Enumerable.Repeat((long)config.ImageTokenId, (int)imageTokens));
        ids.Add(config.VisionEndTokenId);
        ids.Add(config.AudioStartTokenId);
        ids.AddRange(Enumerable.Repeat((long)config.AudioTokenId, (int)audioTokens));
        ids.Add(config.AudioEndTokenId);
        Text(textTokens - textTokens / 2);
        Tensor inputIds = tensor(ids.ToArray()).unsqueeze(0);
        var inputs = new ThinkerInputs
        {
            InputIds = inputIds,
            PixelValues = randn([grid.Patches, config.Vision.PatchDim], generator: generator),
            ImageGrids = [grid],
            InputFeatures = randn([1, config.Audio.NumMelBins, frames], generator: generator),
            FeatureAttentionMask = ones([1, frames], ScalarType.Int64),
        };
        Tensor positions = model.PositionIds(inputs).Positions;
        Tensor media = inputIds.eq(config.ImageTokenId).logical_or(inputIds.eq(config.AudioTokenId));
        Tensor labels = inputIds.masked_fill(media, -100);   // the media placeholders are not predicted
        double seconds = 0;
        for (int i = 0; i < warmup + steps; i++)
        {
            if (i == warmup)
            {
                GC.Collect();
                ProcessMemory.ResetPeak();
            }
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            Tensor hidden = model.TextModel.Forward(model.Embed(inputs), positions, null);
            var (loss, value) = StepLoss.ForMicroBatch(hidden, model.Head, config.Text.VocabSize, labels, LossMode.Default, 1, 0, headWeight: model.HeadWeight);
            loss.backward();
            model.zero_grad();
            double elapsed = clock.Elapsed.TotalSeconds;
            if (i >= warmup) seconds += elapsed;
            log.WriteLine($"  {(i < warmup ? "warm-up" : "step")} {i + 1}: {elapsed * 1000:F0} ms (loss {value:F3})");
        }
        double perStep = seconds / steps;
        double gflop = ThinkerFlops.MicroBatch(config, [ids.Count], [grid], [frames], visionTrains: true, audioTrains: true) / 1e9;
        return new Result(ids.Count, ids.Count / perStep, gflop, perStep, gflop / perStep, ProcessMemory.Peak() / (double)(1 << 30));
    }
}
