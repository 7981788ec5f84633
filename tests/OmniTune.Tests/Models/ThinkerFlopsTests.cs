using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Models.Qwen25Omni.Vision;

namespace OmniTune.Tests.Models;

/// <summary>The one FLOPs model against the matmul weights the model really holds (2 FLOPs per multiply-add, training = 3× forward).</summary>
public sealed class ThinkerFlopsTests
{
    [Fact]
    public void Each_tower_counts_every_matmul_weight_of_the_model_once_per_token_and_the_attention_square()
    {
        var config = TinyQwen25Omni.Config(TinyTokenizerBuilder.Build()).Thinker;
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false);
        long Weights(Func<string, bool> which) => model.named_parameters().Where(p => p.name.EndsWith(".weight", StringComparison.Ordinal) && p.parameter.dim() >= 2 && which(p.name))
            .Sum(p => p.parameter.numel());

        // Decoder: every linear of the layers and the head, per token; QKᵀ and PV over the full s × s square.
        long text = Weights(n => n.StartsWith("model.layers.", StringComparison.Ordinal) || n == "lm_head.weight");
        long q = (long)config.Text.NumAttentionHeads * config.Text.HeadDim;
        Assert.Equal(3 * (2.0 * text * 10 + 4.0 * 10 * 10 * q * config.Text.NumHiddenLayers), ThinkerFlops.TextDecoder(config.Text, 10), 6);

        // Vision: patch embedding, block linears, attention inside each segment, merger.
        var grid = new GridThw(2, 8, 12);
        var segments = VisionWindowIndex.For([grid], config.Vision.WindowSize, config.Vision.SpatialMergeSize, config.Vision.PatchSize);
        double attention = Enumerable.Range(0, config.Vision.Depth).Sum(b =>
            (config.Vision.FullAttBlockIndexes.Contains(b) ? segments.FullSegments : segments.WindowSegments).Sum(s => 4.0 * s * s * config.Vision.HiddenSize));
        int unit = config.Vision.SpatialMergeSize * config.Vision.SpatialMergeSize;
        double vision = 2.0 * grid.Patches * (Weights(n => n.StartsWith("visual.patch_embed.", StringComparison.Ordinal)) + Weights(n => n.StartsWith("visual.blocks.", StringComparison.Ordinal)))
                        + attention + 2.0 * grid.Patches / unit * Weights(n => n.StartsWith("visual.merger.", StringComparison.Ordinal));
        Assert.Equal(vision, ThinkerFlops.Vision(config.Vision, grid, training: false), 6);
        Assert.Equal(3 * vision, ThinkerFlops.Vision(config.Vision, grid), 6);   // a trained encoder runs backward too

        // Audio: conv1 on the mel frames, conv2 and the layers on the frames after it (inside each chunk), the projection on the tokens.
        const int frames = 250;
        int[] chunks = Qwen25OmniAudioEncoder.ChunkLengths(frames, config.Audio.NWindow);
        long afterConv = chunks.Sum(AudioLengths.AfterConv);
        double audio = 2.0 * frames * Weights(n => n == "audio_tower.conv1.weight") + 2.0 * afterConv * Weights(n => n == "audio_tower.conv2.weight")
                       + 2.0 * afterConv * Weights(n => n.StartsWith("audio_tower.layers.", StringComparison.Ordinal))
                       + config.Audio.EncoderLayers * chunks.Sum(c => 4.0 * AudioLengths.AfterConv(c) * AudioLengths.AfterConv(c) * config.Audio.DModel)
                       + 2.0 * AudioLengths.Tokens(frames) * Weights(n => n == "audio_tower.proj.weight");
        Assert.Equal(audio, ThinkerFlops.Audio(config.Audio, frames, training: false), 6);

        Assert.Equal(ThinkerFlops.TextDecoder(config.Text, 7) + ThinkerFlops.TextDecoder(config.Text, 3) + vision + 3 * audio,
            ThinkerFlops.MicroBatch(config, [7, 3], [grid], [frames], visionTrains: false, audioTrains: true), 6);
    }
}
