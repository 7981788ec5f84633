using OmniTune.Distributed;
using OmniTune.Distributed.Context;
using OmniTune.Distributed.TensorParallel;
using OmniTune.Models.Common;
using OmniTune.Training.Arguments;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Training.Loop;

/// <summary>
/// The loss of one micro-batch as it enters backward, for the three averaging modes (mindspeed_mm.md §7), and the value
/// it contributes to the logged step loss.
/// </summary>
public static class StepLoss
{
    /// <summary>
    /// Per-token cross-entropy [B, S−1] (0 where ignored) and the mask of counted tokens. With a <paramref name="vocabulary"/>
    /// group of several ranks the logits are this rank's slice of the vocabulary (a vocabulary-parallel LM head).
    /// <paramref name="aligned"/>: the labels are already the next tokens of each position ([B, S], nothing to shift).
    /// </summary>
    public static (Tensor Losses, Tensor Mask) TokenLosses(Tensor logits, Tensor labels, IProcessGroup? vocabulary = null, bool aligned = false)
    {
        using var scope = NewDisposeScope();
        long v = logits.shape[^1];
        int shift = aligned ? 0 : 1;
        Tensor shiftedLogits = logits.narrow(1, 0, logits.shape[1] - shift).to(ScalarType.Float32);
        Tensor shiftedLabels = labels.narrow(1, shift, labels.shape[1] - shift);
        Tensor losses = (vocabulary is { Size: > 1 }
                ? VocabParallelCrossEntropy.Losses(shiftedLogits.reshape(-1, v), shiftedLabels.reshape(-1), vocabulary)
                : nn.functional.cross_entropy(shiftedLogits.reshape(-1, v), shiftedLabels.reshape(-1), ignore_index: -100, reduction: nn.Reduction.None))
            .reshape(shiftedLabels.shape);
        Tensor mask = shiftedLabels.ne(-100).to(ScalarType.Float32);
        return (losses.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    /// <summary>Tokens with a label in a label tensor (after the shift).</summary>
    public static long CountedTokens(Tensor labels)
    {
        using var scope = NewDisposeScope();
        return labels.narrow(1, 1, labels.shape[1] - 1).ne(-100).sum().item<long>();
    }

    /// <summary>Logits per chunk of the chunked LM head and loss: the [B, positions, V] chunk is the largest tensor it makes (256 MiB in fp32).</summary>
    public const long ChunkLogits = 1L << 26;

    /// <summary>
    /// Per-token cross-entropy [B, S−1] and the mask of counted tokens from the final (normed) hidden states [B, S, H]:
    /// the LM head and the loss run on chunks of positions, each recomputed in backward, so the full [tokens, vocabulary]
    /// logits and their gradient never exist at once (7B vocabulary, 8k tokens: 5 GB in fp32). <paramref name="width"/>
    /// is the head's output width on this rank; <paramref name="positions"/> overrides the chunk length. With
    /// <paramref name="headWeight"/> (the head is that bias-free linear map, nothing hooked on it, the vocabulary whole)
    /// head and loss are one fused function (<see cref="LinearCrossEntropy"/>: no per-chunk weight gradient, no saved
    /// logits); otherwise each chunk is an activation checkpoint of <paramref name="head"/> and the loss, and a sequence
    /// that fits one chunk takes the plain path. <paramref name="aligned"/>: the labels are already each position's next token.
    /// </summary>
    public static (Tensor Losses, Tensor Mask) TokenLosses(Tensor hidden, Func<Tensor, Tensor> head, long width, Tensor labels, IProcessGroup? vocabulary = null,
        long? positions = null, bool aligned = false, Tensor? headWeight = null)
    {
        long b = hidden.shape[0], s = hidden.shape[1];
        int shift = aligned ? 0 : 1;
        long chunk = positions ?? Math.Max(1, ChunkLogits / Math.Max(1, b * width));
        bool fused = headWeight is not null && vocabulary is not { Size: > 1 };
        if (!fused && chunk >= s - shift) return TokenLosses(head(hidden), labels, vocabulary, aligned);
        using var scope = NewDisposeScope();
        Tensor shiftedHidden = hidden.narrow(1, 0, s - shift);
        Tensor shiftedLabels = labels.narrow(1, shift, s - shift);
        Tensor mask = shiftedLabels.ne(-100).to(ScalarType.Float32);
        if (fused)
        {
            Tensor rows = LinearCrossEntropy.Losses(shiftedHidden.reshape(-1, hidden.shape[2]), headWeight!, shiftedLabels.reshape(-1), chunk * b);
            return (rows.reshape(shiftedLabels.shape).MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
        }
        var parts = new List<Tensor>();
        for (long start = 0; start < s - shift; start += chunk)
        {
            long n = Math.Min(chunk, s - shift - start);
            Tensor part = shiftedLabels.narrow(1, start, n).contiguous();
            parts.Add(ActivationCheckpoint.Run((x, c) => ChunkLosses(head(x), c[0], vocabulary), shiftedHidden.narrow(1, start, n), [part]));
        }
        Tensor losses = cat(parts.ToArray(), 1);
        return (losses.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    /// <summary>Per-token cross-entropy [B, n] of logits [B, n, V] against labels [B, n] (no shift; 0 where ignored).</summary>
    static Tensor ChunkLosses(Tensor logits, Tensor labels, IProcessGroup? vocabulary)
    {
        long v = logits.shape[^1];
        Tensor flat = logits.reshape(-1, v).to(ScalarType.Float32);
        Tensor losses = vocabulary is { Size: > 1 }
            ? VocabParallelCrossEntropy.Losses(flat, labels.reshape(-1), vocabulary)
            : nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index: -100, reduction: nn.Reduction.None);
        return losses.reshape(labels.shape);
    }

    /// <summary>
    /// <see cref="ForMicroBatch(Tensor, Tensor, LossMode, int, long, IProcessGroup?, ContextSplit?, Tensor?)"/> from the final hidden states, with the
    /// chunked LM head and loss (<see cref="TokenLosses(Tensor, Func{Tensor, Tensor}, long, Tensor, IProcessGroup?, long?, bool, Tensor?)"/>).
    /// </summary>
    public static (Tensor Backward, double Logged) ForMicroBatch(Tensor hidden, Func<Tensor, Tensor> head, long width, Tensor labels, LossMode mode,
        int microBatches, long stepTokens, IProcessGroup? vocabulary = null, long? positions = null, ContextSplit? context = null, Tensor? segments = null,
        Tensor? headWeight = null)
    {
        using var scope = NewDisposeScope();
        var (local, counted) = OfRank(labels, context);
        var (losses, mask) = TokenLosses(hidden, head, width, local, vocabulary, positions, aligned: context is not null, headWeight);
        var (loss, logged) = Reduce(losses, mask, mode, microBatches, stepTokens, counted, Samples(segments, context));
        return (loss.MoveToOuterDisposeScope(), logged);
    }

    /// <summary>
    /// Context parallel: the labels of this rank's tokens, shifted before the split (each position's next token, wherever
    /// that token lives), and the mask of every counted token of the whole sequence, whose counts divide the loss.
    /// </summary>
    static (Tensor Labels, Tensor? Counted) OfRank(Tensor labels, ContextSplit? context)
    {
        if (context is null) return (labels, null);
        long b = labels.shape[0], s = labels.shape[1];
        Tensor next = cat([labels.narrow(1, 1, s - 1), full(b, 1, -100L, ScalarType.Int64, labels.device)], 1);
        return (context.Take(next, 1), next.ne(-100).to(ScalarType.Float32));
    }

    /// <summary>
    /// The micro-batch's loss to back-propagate (already divided so that summing over the step's micro-batches gives the
    /// step loss) and its contribution to the logged loss.
    /// </summary>
    public static (Tensor Backward, double Logged) ForMicroBatch(Tensor logits, Tensor labels, LossMode mode, int microBatches, long stepTokens,
        IProcessGroup? vocabulary = null, ContextSplit? context = null, Tensor? segments = null)
    {
        using var scope = NewDisposeScope();
        var (local, counted) = OfRank(labels, context);
        var (losses, mask) = TokenLosses(logits, local, vocabulary, aligned: context is not null);
        var (loss, logged) = Reduce(losses, mask, mode, microBatches, stepTokens, counted, Samples(segments, context));
        return (loss.MoveToOuterDisposeScope(), logged);
    }

    /// <summary>
    /// Packed rows: the sample number of each target token (the token a position predicts) — this rank's positions, and
    /// the whole sequence's under context parallel (shifted before the split, like the labels) — and the number of samples.
    /// </summary>
    static PackedSamples? Samples(Tensor? segments, ContextSplit? context)
    {
        if (segments is null) return null;
        long b = segments.shape[0], s = segments.shape[1];
        Tensor next = cat([segments.narrow(1, 1, s - 1), zeros(b, 1, segments.dtype, segments.device)], 1).to(ScalarType.Int64);
        long count = segments.amax([1L]).to(ScalarType.Int64).sum().item<long>();
        long most = segments.max().to(ScalarType.Int64).item<long>();
        return context is null
            ? new PackedSamples(next.narrow(1, 0, s - 1), next.narrow(1, 0, s - 1), count, most)
            : new PackedSamples(context.Take(next, 1), next, count, most);
    }

    /// <summary>Sample numbers of this rank's target tokens, of the whole sequence's, the samples of the micro-batch and the largest number in a row.</summary>
    sealed record PackedSamples(Tensor Local, Tensor Whole, long Count, long Most);

    /// <summary>
    /// The micro-batch loss from per-token losses; <paramref name="counted"/> (context parallel: the whole sequence's
    /// counted tokens) gives the denominators when this rank holds only part of the tokens, so the group's partial losses
    /// sum to the loss of one process.
    /// </summary>
    static (Tensor Loss, double Logged) Reduce(Tensor losses, Tensor mask, LossMode mode, int microBatches, long stepTokens, Tensor? counted = null,
        PackedSamples? packed = null)
    {
        Tensor all = counted ?? mask;
        Tensor loss = mode switch
        {
            LossMode.Default => (losses * mask).sum() / all.sum().clamp_min(1) / microBatches,
            LossMode.PerSample when packed is not null => PerPackedSample(losses * mask, all, packed) / microBatches,
            LossMode.PerSample => ((losses * mask).sum(1) / all.sum(1).clamp_min(1)).mean() / microBatches,
            LossMode.PerToken => (losses * mask).sum() / Math.Max(1, stepTokens),
            _ => throw new ArgumentOutOfRangeException(nameof(mode)),
        };
        return (loss, loss.item<float>());
    }

    /// <summary>
    /// The per-sample mean over packed rows: each sample's token mean (its counted tokens from the whole sequence), averaged
    /// over the micro-batch's samples — what the same samples give one per row.
    /// </summary>
    static Tensor PerPackedSample(Tensor counted, Tensor all, PackedSamples packed)
    {
        long b = counted.shape[0], width = packed.Most + 1;
        Tensor sums = zeros(b, width, counted.dtype, counted.device).scatter_add_(1, packed.Local, counted);
        Tensor tokens = zeros(b, width, all.dtype, all.device).scatter_add_(1, packed.Whole, all);
        return (sums.narrow(1, 1, width - 1) / tokens.narrow(1, 1, width - 1).clamp_min(1)).sum() / Math.Max(1, packed.Count);
    }
}
