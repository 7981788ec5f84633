using OmniTune.Data.Media;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Data.Processing;

/// <summary>Builds the thinker's inputs for one encoded conversation (batch of one, no padding).</summary>
public static class ThinkerInputsBuilder
{
    /// <summary>Ids of all turns concatenated, with the conversation's media; labels −100 on sources, ids on targets.</summary>
    public static (ThinkerInputs Inputs, Tensor Labels) FromConversation(EncodedConversation conversation, bool useAudioInVideo)
    {
        var ids = new List<long>();
        var labels = new List<long>();
        foreach (var (source, target) in conversation.Pairs)
        {
            ids.AddRange(source.Select(i => (long)i));
            labels.AddRange(Enumerable.Repeat(-100L, source.Count));
            ids.AddRange(target.Select(i => (long)i));
            labels.AddRange(target.Select(i => (long)i));
        }
        var inputs = new ThinkerInputs
        {
            InputIds = tensor(ids.ToArray()).unsqueeze(0),
            AttentionMask = ones(1, ids.Count, ScalarType.Int64),
            PixelValues = conversation.Images.Count == 0 ? null : cat(conversation.Images.Select(x => x.PixelValues).ToArray()),
            ImageGrids = conversation.Images.Select(x => x.Grid).ToList(),
            PixelValuesVideos = conversation.Videos.Count == 0 ? null : cat(conversation.Videos.Select(x => x.PixelValues).ToArray()),
            VideoGrids = conversation.Videos.Select(x => x.Grid).ToList(),
            VideoSecondsPerGrid = conversation.Videos.Select(x => x.SecondsPerGrid).ToList(),
            UseAudioInVideo = useAudioInVideo,
        };
        if (conversation.Audios.Count > 0)
        {
            var (features, mask) = PadAudio(conversation.Audios);
            inputs = inputs with { InputFeatures = features, FeatureAttentionMask = mask };
        }
        return (inputs, tensor(labels.ToArray()).unsqueeze(0));
    }

    /// <summary>Audio features padded to the longest: [A, mel, F_max] and the frame mask [A, F_max].</summary>
    public static (Tensor Features, Tensor Mask) PadAudio(IReadOnlyList<AudioInput> audios)
    {
        int longest = audios.Max(a => a.Frames);
        long bins = audios[0].Features.shape[0];
        Tensor features = zeros(audios.Count, bins, longest);
        Tensor mask = zeros(audios.Count, longest, ScalarType.Int64);
        for (int i = 0; i < audios.Count; i++)
        {
            features[i].narrow(1, 0, audios[i].Frames).copy_(audios[i].Features);
            mask[i].narrow(0, 0, audios[i].Frames).fill_(1);
        }
        return (features, mask);
    }
}
