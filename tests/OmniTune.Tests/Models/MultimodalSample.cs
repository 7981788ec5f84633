using System.Text;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

/// <summary>
/// A hand-built chat sample with an audio clip, an image and a video with its audio track, laid out exactly as the
/// Omni processor would (placeholders expanded from the grids and audio lengths), with answer-only labels.
/// </summary>
public sealed class MultimodalSample
{
    public required ThinkerInputs Inputs { get; init; }

    public required Tensor Labels { get; init; }

    public static MultimodalSample Build(Qwen25OmniThinkerConfig c, int seed, string answer = "A red circle and a tone.")
    {
        int m = c.Vision.SpatialMergeSize;
        var g = new Generator((ulong)seed);
        GridThw image = new(1, 4, 4), video = new(2, 4, 4);
        int clipFrames = 120, trackFrames = 300;
        var ids = new List<long>();
        void Bytes(string s) => ids.AddRange(Encoding.UTF8.GetBytes(s).Select(b => (long)ByteLevelAlphabet.IdOf[b]));
        void Repeat(long id, long n) => ids.AddRange(Enumerable.Repeat(id, (int)n));

        ids.Add(c.BosTokenId);
        Bytes("user\n");
        ids.Add(c.AudioStartTokenId); Repeat(c.AudioTokenId, AudioLengths.Tokens(clipFrames)); ids.Add(c.AudioEndTokenId);
        ids.Add(c.VisionStartTokenId); Repeat(c.ImageTokenId, image.Tokens(m)); ids.Add(c.VisionEndTokenId);
        ids.Add(c.VisionStartTokenId); ids.Add(c.AudioStartTokenId);
        foreach (var (isVideo, count) in AudioInVideoInterleave.Layout(video, 1.0, AudioLengths.Tokens(trackFrames), m, c.PositionIdPerSeconds, c.SecondsPerChunk))
            Repeat(isVideo ? c.VideoTokenId : c.AudioTokenId, count);
        ids.Add(c.AudioEndTokenId); ids.Add(c.VisionEndTokenId);
        Bytes("What do you see and hear?");
        ids.Add(c.EosTokenId);
        Bytes("\n");
        ids.Add(c.BosTokenId);
        Bytes("assistant\n");
        int promptLength = ids.Count;
        Bytes(answer);
        ids.Add(c.EosTokenId);

        long[] labels = ids.Select((id, i) => i < promptLength ? CausalLmLoss.IgnoreIndex : id).ToArray();
        Tensor features = zeros(2, c.Audio.NumMelBins, trackFrames);
        features[0].narrow(1, 0, clipFrames).copy_(randn([c.Audio.NumMelBins, clipFrames], generator: g));
        features[1].copy_(randn([c.Audio.NumMelBins, trackFrames], generator: g));
        Tensor featureMask = zeros(2, trackFrames, ScalarType.Int64);
        featureMask[0].narrow(0, 0, clipFrames).fill_(1);
        featureMask[1].fill_(1);
        return new MultimodalSample
        {
            Inputs = new ThinkerInputs
            {
                InputIds = tensor(ids.ToArray()).unsqueeze(0),
                AttentionMask = ones(1, ids.Count, ScalarType.Int64),
                PixelValues = randn([image.Patches, c.Vision.PatchDim], generator: g),
                ImageGrids = [image],
                PixelValuesVideos = randn([video.Patches, c.Vision.PatchDim], generator: g),
                VideoGrids = [video],
                VideoSecondsPerGrid = [1.0],
                InputFeatures = features,
                FeatureAttentionMask = featureMask,
                UseAudioInVideo = true,
            },
            Labels = tensor(labels).unsqueeze(0),
        };
    }
}
