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
/// No fake media are added: OmniTune's trainer does not need every tower in every step. Packed rows
/// (<see cref="SequencePacking"/>): under <see cref="PackingMode.Plain"/> a row is one sequence (mask 1, positions over
/// the row, as LLaMA-Factory computes them); under <see cref="PackingMode.Neat"/> the attention mask holds each token's
/// sample number 1, 2, … (LLaMA-Factory's neat-packing form; the decoder attends within a sample only) and each sample's
/// TMRoPE positions are computed as if it were alone. Either way <see cref="TrainingBatch.Segments"/> numbers the samples
/// for the per-sample loss. With a <see cref="MediaCache"/> each file is decoded and processed once while the cache holds it.
/// </summary>
public sealed class BatchCollator(ProcessorSettings settings, RopeIndexSettings rope, int padTokenId, int padToMultipleOf = 8, PackingMode packing = PackingMode.None,
    MediaCache? media = null)
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
        var imageInputs = images.Select(x => Checked(x.Sample, x.Item, media?.Image(x.Item.Path, settings) ?? ImagePreprocessor.Process(x.Item.Path, settings))).ToList();
        var videoInputs = videos.Select(x => Checked(x.Sample, x.Item, media?.Video(x.Item.Path, settings) ?? VideoPreprocessor.Process(x.Item.Path, settings))).ToList();
        var audioInputs = audios.Select(x =>
        {
            AudioInput a = media?.Audio(x.Item.Path, settings) ?? WhisperFeatures.FromFile(x.Item.Path, settings);
            if (a.Frames != x.Item.Frames)
                throw new MediaException(x.Item.Path, $"gives {a.Frames} audio frames now but {x.Item.Frames} when {x.Sample.Location} was encoded: the file changed; rebuild the cache");
            return a;
        }).ToList();

        var grids = (Images: imageInputs.Select(i => i.Grid).ToList(), Videos: videoInputs.Select(v => v.Grid).ToList(),
            Seconds: videoInputs.Select(v => v.SecondsPerGrid).ToList(), Audio: audioInputs.Select(a => a.Frames).ToList());
        bool packed = samples.Any(s => s.PackedLengths is not null);
        int[][] segments = samples.Select(s => Segments(s, length)).ToArray();
        long[][][] positions;
        if (packed && packing == PackingMode.Neat)
        {
            positions = PerSamplePositions(samples, grids, length);
            mask = segments;   // the sample number of each token: attention stays inside each sample
        }
        else
        {
            positions = RopeIndex.Compute(new RopeIndexInputs(ids, mask, grids.Images, grids.Videos, grids.Seconds, grids.Audio, settings.UseAudioInVideo), rope).Positions;
        }
        var inputs = new ThinkerInputs
        {
            InputIds = tensor(ids.SelectMany(r => r).ToArray(), [samples.Count, length]),
            AttentionMask = tensor(mask.SelectMany(r => r.Select(v => (long)v)).ToArray(), [samples.Count, length]),
            PositionIds = tensor(positions.SelectMany(r => r.SelectMany(x => x)).ToArray(), [3, samples.Count, length]),
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
        return new TrainingBatch(inputs, tensor(labels, [samples.Count, length]), samples.Select(s => s.Location).ToList(), samples.Sum(s => s.InputIds.Length))
        {
            Segments = packed ? tensor(segments.SelectMany(r => r.Select(v => (long)v)).ToArray(), [samples.Count, length]) : null,
        };
    }

    /// <summary>Each token's sample number in the row (1, 2, … for packed samples; 1 for a lone one), 0 on padding.</summary>
    static int[] Segments(EncodedSample sample, int length)
    {
        var row = new int[length];
        int at = 0, number = 0;
        foreach (int part in sample.Parts)
        {
            number++;
            for (int i = 0; i < part; i++) row[at++] = number;
        }
        return row;
    }

    /// <summary>
    /// Neat packing: TMRoPE positions of every sample of every row computed as if each were alone (its media are the next
    /// ones in batch order), then laid side by side in its row; padding gets position 1, as Hugging Face gives it.
    /// </summary>
    long[][][] PerSamplePositions(IReadOnlyList<EncodedSample> samples, (List<GridThw> Images, List<GridThw> Videos, List<double> Seconds, List<int> Audio) grids, int length)
    {
        var parts = new List<long[]>();
        foreach (var sample in samples)
        {
            int at = 0;
            foreach (int part in sample.Parts)
            {
                parts.Add(sample.InputIds.Skip(at).Take(part).Select(v => (long)v).ToArray());
                at += part;
            }
        }
        int longest = parts.Max(p => p.Length);
        long[][] partIds = parts.Select(p => p.Concat(Enumerable.Repeat((long)padTokenId, longest - p.Length)).ToArray()).ToArray();
        int[][] partMask = parts.Select(p => Enumerable.Range(0, longest).Select(i => i < p.Length ? 1 : 0).ToArray()).ToArray();
        var each = RopeIndex.Compute(new RopeIndexInputs(partIds, partMask, grids.Images, grids.Videos, grids.Seconds, grids.Audio, settings.UseAudioInVideo), rope).Positions;
        var positions = new long[3][][];
        for (int r = 0; r < 3; r++)
        {
            positions[r] = new long[samples.Count][];
            int index = 0;
            for (int b = 0; b < samples.Count; b++)
            {
                positions[r][b] = Enumerable.Repeat(1L, length).ToArray();
                int at = 0;
                foreach (int part in samples[b].Parts)
                {
                    Array.Copy(each[r][index++], 0, positions[r][b], at, part);
                    at += part;
                }
            }
        }
        return positions;
    }

    static VisionInput Checked(EncodedSample sample, MediaItem item, VisionInput processed)
    {
        if (processed.Grid != item.Grid)
            throw new MediaException(item.Path, $"gives grid {processed.Grid} now but {item.Grid} when {sample.Location} was encoded: the file changed; rebuild the cache");
        return processed;
    }
}
