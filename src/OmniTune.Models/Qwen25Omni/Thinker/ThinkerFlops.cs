using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Vision;

namespace OmniTune.Models.Qwen25Omni.Thinker;

/// <summary>
/// The one model-FLOPs count of the thinker, used by the bench and by <c>finetune</c>'s MFU: every matmul of the work a
/// step must do (2 FLOPs per multiply-add), a training pass being 3× the forward (backward = 2×). Attention counts the
/// full s × s square of QKᵀ and PV (4·s²·width per layer forward), not halved for the causal mask — Megatron-LM's
/// <c>num_floating_point_operations</c> convention (its 12·s²·h per layer). Padding is not counted: MFU measures useful work.
/// </summary>
public static class ThinkerFlops
{
    /// <summary>Training FLOPs of the text decoder (linear layers, attention, LM head) on one row of <paramref name="tokens"/> tokens.</summary>
    public static double TextDecoder(Qwen25OmniTextConfig c, long tokens)
    {
        double h = c.HiddenSize, kv = (double)c.NumKeyValueHeads * c.HeadDim, q = (double)c.NumAttentionHeads * c.HeadDim;
        double perLayer = h * q + 2 * h * kv + q * h + 3 * h * c.IntermediateSize;
        double matmulParams = c.NumHiddenLayers * perLayer + (double)c.VocabSize * h;   // the embedding lookup is not a matmul
        double t = tokens;
        return 6 * matmulParams * t + 12.0 * t * t * q * c.NumHiddenLayers;
    }

    /// <summary>
    /// FLOPs of the vision encoder and merger on one image or video of <paramref name="grid"/>: patch embedding, every block
    /// (attention inside its windows, or over each frame in the full-attention blocks), the merger. 3× the forward when
    /// <paramref name="training"/> (gradients flow), else the forward (a frozen encoder).
    /// </summary>
    public static double Vision(Qwen25OmniVisionConfig c, GridThw grid, bool training = true)
    {
        double d = c.HiddenSize, n = grid.Patches, unit = c.SpatialMergeSize * c.SpatialMergeSize;
        var windows = VisionWindowIndex.For([grid], c.WindowSize, c.SpatialMergeSize, c.PatchSize);
        double forward = 2 * n * c.PatchDim * d;
        for (int b = 0; b < c.Depth; b++)
        {
            int[] segments = c.FullAttBlockIndexes.Contains(b) ? windows.FullSegments : windows.WindowSegments;
            forward += 2 * n * (4 * d * d + 3 * d * c.IntermediateSize);
            forward += segments.Sum(s => 4.0 * s * s * d);   // QKᵀ and PV inside each segment
        }
        forward += 2 * (n / unit) * (unit * d * unit * d + unit * d * c.OutHiddenSize);
        return (training ? 3 : 1) * forward;
    }

    /// <summary>FLOPs of the audio encoder on one audio of <paramref name="frames"/> mel frames (convolutions, layers within their chunks, projection).</summary>
    public static double Audio(Qwen25OmniAudioConfig c, int frames, bool training = true)
    {
        double d = c.DModel;
        int[] chunks = Qwen25OmniAudioEncoder.ChunkLengths(frames, c.NWindow);
        double tokens = chunks.Sum(AudioLengths.AfterConv);
        double forward = 2 * frames * c.NumMelBins * 3 * d + 2 * tokens * d * 3 * d;
        forward += c.EncoderLayers * (2 * tokens * (4 * d * d + 2 * d * c.EncoderFfnDim) + chunks.Sum(ch => 4.0 * AudioLengths.AfterConv(ch) * AudioLengths.AfterConv(ch) * d));
        forward += 2 * AudioLengths.Tokens(frames) * d * c.OutputDim;
        return (training ? 3 : 1) * forward;
    }

    /// <summary>
    /// Training FLOPs of one micro-batch: the decoder on each row's real tokens, the vision encoder on each image and video,
    /// the audio encoder on each audio; a frozen encoder counts its forward only.
    /// </summary>
    public static double MicroBatch(Qwen25OmniThinkerConfig c, IEnumerable<long> rowTokens, IEnumerable<GridThw> visionGrids, IEnumerable<int> audioFrames,
        bool visionTrains, bool audioTrains) =>
        rowTokens.Sum(t => TextDecoder(c.Text, t)) + visionGrids.Sum(g => Vision(c.Vision, g, visionTrains)) + audioFrames.Sum(f => Audio(c.Audio, f, audioTrains));
}
