using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Data.Text;

namespace OmniTune.Data.Datasets;

/// <summary>
/// LLaMA-Factory's supervised encoding (llamafactory_data.md §5): media token counts, placeholder expansion, the
/// <c>qwen2_omni</c> template per turn, truncation to the cutoff with <c>infer_seqlen</c>, labels −100 on prompts
/// (unless train_on_prompt) and on earlier turns (mask_history). Unlike LLaMA-Factory, a sample whose truncation would
/// cut through a media span is rejected with that reason instead of failing later in training.
/// </summary>
public sealed class SupervisedEncoder
{
    /// <summary>Label of tokens that are not trained.</summary>
    public const int IgnoreIndex = -100;

    readonly Qwen25OmniProcessor processor;
    readonly int cutoff;
    readonly bool trainOnPrompt, maskHistory;
    readonly int[] placeholderIds;

    /// <summary>Creates an encoder for sequences of at most <paramref name="cutoff"/> tokens.</summary>
    public SupervisedEncoder(Qwen25OmniProcessor processor, int cutoff, bool trainOnPrompt, bool maskHistory)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cutoff, 1);
        if (trainOnPrompt && maskHistory) throw new ArgumentException("mask_history and train_on_prompt cannot both be set");
        this.processor = processor;
        this.cutoff = cutoff;
        this.trainOnPrompt = trainOnPrompt;
        this.maskHistory = maskHistory;
        var t = processor.Tokenizer;
        placeholderIds = [t.TokenToId("<|IMAGE|>"), t.TokenToId("<|VIDEO|>"), t.TokenToId("<|AUDIO|>")];
    }

    /// <summary>LLaMA-Factory's infer_seqlen: how much of a (source, target) pair fits in <paramref name="budget"/>.</summary>
    public static (int Source, int Target) InferSeqlen(int source, int target, int budget)
    {
        int maxTarget = 2 * target < budget ? budget
            : 2 * source < budget ? budget - source
            : (int)(budget * ((double)target / (source + target)));
        int newTarget = Math.Min(maxTarget, target);
        int newSource = Math.Min(Math.Max(budget - newTarget, 0), source);
        return (newSource, newTarget);
    }

    /// <summary>Encodes one converted sample, or says why it cannot be used.</summary>
    public (EncodedSample? Sample, InvalidSample? Problem) Encode(ConvertedSample sample)
    {
        try
        {
            return (EncodeOrThrow(sample), null);
        }
        catch (Exception e) when (e is MediaException or ArgumentException or InvalidDataException)
        {
            return (null, new InvalidSample(sample.Location, e.Message));
        }
    }

    EncodedSample EncodeOrThrow(ConvertedSample sample)
    {
        ProcessorSettings s = processor.Settings;
        // LLaMA-Factory's rule: with use_audio_in_video a sample's video and audio spans are interleaved only when it lists
        // both; a video without a listed audio keeps a plain video span (its sound track is not taken: LLaMA-Factory never does).
        IReadOnlyList<ChatMessage> messages = sample.Messages;
        var audioPaths = sample.Audios;
        MultimodalPlaceholders.Validate(messages, sample.Images.Count, sample.Videos.Count, audioPaths.Count);

        var images = sample.Images.Select(p => new MediaItem(p, MediaSummary.ImageGrid(p, s))).ToArray();
        var videos = sample.Videos.Select(p =>
        {
            var (grid, spg) = MediaSummary.VideoGrid(p, s);
            return new MediaItem(p, grid, spg);
        }).ToArray();
        var audios = audioPaths.Select(p => new MediaItem(p, Frames: MediaSummary.AudioFrames(p, s))).ToArray();

        var expanded = MultimodalPlaceholders.Expand(messages, images.Select(i => i.Grid).ToList(), videos.Select(v => (v.Grid, v.SecondsPerGrid)).ToList(),
            audios.Select(a => a.Frames).ToList(), s.UseAudioInVideo, s.MergeSize);
        var pairs = processor.Template.EncodeMultiturn(expanded, sample.System, sample.Tools);
        int expectedPlaceholders = pairs.Sum(p => p.Source.Count(placeholderIds.Contains) + p.Target.Count(placeholderIds.Contains));
        int fullLength = pairs.Sum(p => p.Source.Count + p.Target.Count);

        var (ids, labels) = Truncate(pairs);
        int keptPlaceholders = ids.Count(placeholderIds.Contains);
        if (keptPlaceholders != expectedPlaceholders)
            throw new ArgumentException($"{fullLength} tokens exceed the sequence length {cutoff} and truncation would cut through a media span " +
                                        $"({keptPlaceholders} of {expectedPlaceholders} media tokens kept); raise --seq-length or shorten the sample");
        if (labels.All(l => l == IgnoreIndex))
            throw new ArgumentException($"no trained token is left after truncation to {cutoff} tokens");
        return new EncodedSample(sample.Location, ids.ToArray(), labels.ToArray(), images, videos, audios, ids.Count < fullLength);
    }

    (List<int> Ids, List<int> Labels) Truncate(List<(List<int> Source, List<int> Target)> pairs)
    {
        var ids = new List<int>();
        var labels = new List<int>();
        int total = 0;
        var ordered = maskHistory ? Enumerable.Reverse(pairs).ToList() : pairs;
        for (int k = 0; k < ordered.Count; k++)
        {
            if (total >= cutoff) break;
            var (source, target) = ordered[k];
            var (sl, tl) = InferSeqlen(source.Count, target.Count, cutoff - total);
            var src = source.GetRange(0, sl);
            var tgt = target.GetRange(0, tl);
            total += sl + tl;
            var srcLabels = trainOnPrompt ? src : Enumerable.Repeat(IgnoreIndex, sl).ToList();
            var tgtLabels = maskHistory && k != 0 ? Enumerable.Repeat(IgnoreIndex, tl).ToList() : tgt;
            if (maskHistory)
            {
                ids.InsertRange(0, src.Concat(tgt));
                labels.InsertRange(0, srcLabels.Concat(tgtLabels));
            }
            else
            {
                ids.AddRange(src.Concat(tgt));
                labels.AddRange(srcLabels.Concat(tgtLabels));
            }
        }
        return (ids, labels);
    }
}
