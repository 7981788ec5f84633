using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Thinker;
using static TorchSharp.torch;

namespace OmniTune.Data.Datasets;

/// <summary>
/// Collates encoded samples into a micro-batch (llamafactory_data.md §6): ids padded on the right with the pad id to
/// the longest rounded up to a multiple of 8, attention mask 0 and labels −100 there; the media processed and
/// concatenated in sample order (checked against the grids computed at encoding); TMRoPE position ids computed here.
/// No fake media are added: OmniTune's trainer does not need every tower in every step.
/// </summary>
public sealed class BatchCollator(ProcessorSettings settings, RopeIndexSettings rope, int padTokenId, int padToMultipleOf = 8)
{
    /// <summary>Collates <paramref name="samples"/>.</summary>
    public TrainingBatch Collate(IReadOnlyList<EncodedSample> samples)
    {
        // Decoding and preprocessing make many intermediate tensors; only the batch's own leave this scope.
        using var scope = NewDisposeScope();
        return CollateInScope(samples).DetachFromDisposeScope();
    }

    TrainingBatch CollateInScope(IReadOnlyList<EncodedSample> samples)
    {
        int longest = samples.Max(s => s.InputIds.Length);
        int length = (longest + padToMultipleOf - 1) / padToMultipleOf * padToMultipleOf;
        var ids = new long[samples.Count][];
        var mask = new int[samples.Count][];
        var labels = new long[samples.Count * length];
        for (int b = 0; b < samples.Count; b++)
        {
            var s = samples[b];
            ids[b] = Enumerable.Repeat((long)padTokenId, length).ToArray();
            mask[b] = new int[length];
            for (int i = 0; i < length; i++)
            {
                bool real = i < s.InputIds.Length;
                if (real) ids[b][i] = s.InputIds[i];
                mask[b][i] = real ? 1 : 0;
                labels[b * length + i] = real ? s.Labels[i] : SupervisedEncoder.IgnoreIndex;
            }
        }
        var images = samples.SelectMany(s => s.Images.Select(m => (Sample: s, Item: m))).ToList();
        var videos = samples.SelectMany(s => s.Videos.Select(m => (Sample: s, Item: m))).ToList();
        var audios = samples.SelectMany(s => s.Audios.Select(m => (Sample: s, Item: m))).ToList();
        var imageInputs = images.Select(x => Checked(x.Sample, x.Item, ImagePreprocessor.Process(x.Item.Path, settings))).ToList();
        var videoInputs = videos.Select(x => Checked(x.Sample, x.Item, VideoPreprocessor.Process(x.Item.Path, settings))).ToList();
        var audioInputs = audios.Select(x =>
        {
            AudioInput a = WhisperFeatures.FromFile(x.Item.Path, settings);
            if (a.Frames != x.Item.Frames)
                throw new MediaException(x.Item.Path, $"gives {a.Frames} audio frames now but {x.Item.Frames} when {x.Sample.Location} was encoded: the file changed; rebuild the cache");
            return a;
        }).ToList();

        var positions = RopeIndex.Compute(new RopeIndexInputs(ids, mask, imageInputs.Select(i => i.Grid).ToList(), videoInputs.Select(v => v.Grid).ToList(),
            videoInputs.Select(v => v.SecondsPerGrid).ToList(), audioInputs.Select(a => a.Frames).ToList(), settings.UseAudioInVideo), rope);
        var inputs = new ThinkerInputs
        {
            InputIds = tensor(ids.SelectMany(r => r).ToArray(), [samples.Count, length]),
            AttentionMask = tensor(mask.SelectMany(r => r.Select(v => (long)v)).ToArray(), [samples.Count, length]),
            PositionIds = tensor(positions.Positions.SelectMany(r => r.SelectMany(x => x)).ToArray(), [3, samples.Count, length]),
            PixelValues = imageInputs.Count == 0 ? null : cat(imageInputs.Select(i => i.PixelValues).ToArray()),
            ImageGrids = imageInputs.Select(i => i.Grid).ToList(),
            PixelValuesVideos = videoInputs.Count == 0 ? null : cat(videoInputs.Select(v => v.PixelValues).ToArray()),
            VideoGrids = videoInputs.Select(v => v.Grid).ToList(),
            VideoSecondsPerGrid = videoInputs.Select(v => v.SecondsPerGrid).ToList(),
            UseAudioInVideo = settings.UseAudioInVideo,
        };
        if (audioInputs.Count > 0)
        {
            var (features, featureMask) = ThinkerInputsBuilder.PadAudio(audioInputs);
            inputs = inputs with { InputFeatures = features, FeatureAttentionMask = featureMask };
        }
        foreach (var v in imageInputs.Concat(videoInputs)) v.PixelValues.Dispose();
        foreach (var a in audioInputs) a.Features.Dispose();
        return new TrainingBatch(inputs, tensor(labels, [samples.Count, length]), samples.Select(s => s.Location).ToList(), samples.Sum(s => s.InputIds.Length));
    }

    static VisionInput Checked(EncodedSample sample, MediaItem item, VisionInput processed)
    {
        if (processed.Grid != item.Grid)
            throw new MediaException(item.Path, $"gives grid {processed.Grid} now but {item.Grid} when {sample.Location} was encoded: the file changed; rebuild the cache");
        return processed;
    }
}
