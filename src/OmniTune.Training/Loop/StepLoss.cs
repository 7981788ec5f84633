using OmniTune.Distributed;
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
    /// </summary>
    public static (Tensor Losses, Tensor Mask) TokenLosses(Tensor logits, Tensor labels, IProcessGroup? vocabulary = null)
    {
        using var scope = NewDisposeScope();
        long v = logits.shape[^1];
        Tensor shiftedLogits = logits.narrow(1, 0, logits.shape[1] - 1).to(ScalarType.Float32);
        Tensor shiftedLabels = labels.narrow(1, 1, labels.shape[1] - 1);
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
    /// is the head's output width on this rank; <paramref name="positions"/> overrides the chunk length. A sequence that
    /// fits one chunk takes the plain path.
    /// </summary>
    public static (Tensor Losses, Tensor Mask) TokenLosses(Tensor hidden, Func<Tensor, Tensor> head, long width, Tensor labels, IProcessGroup? vocabulary = null,
        long? positions = null)
    {
        long b = hidden.shape[0], s = hidden.shape[1];
        long chunk = positions ?? Math.Max(1, ChunkLogits / Math.Max(1, b * width));
        if (chunk >= s - 1) return TokenLosses(head(hidden), labels, vocabulary);
        using var scope = NewDisposeScope();
        Tensor shiftedHidden = hidden.narrow(1, 0, s - 1);
        Tensor shiftedLabels = labels.narrow(1, 1, s - 1);
        var parts = new List<Tensor>();
        for (long start = 0; start < s - 1; start += chunk)
        {
            long n = Math.Min(chunk, s - 1 - start);
            Tensor part = shiftedLabels.narrow(1, start, n).contiguous();
            parts.Add(ActivationCheckpoint.Run((x, c) => ChunkLosses(head(x), c[0], vocabulary), shiftedHidden.narrow(1, start, n), [part]));
        }
        Tensor losses = cat(parts.ToArray(), 1);
        Tensor mask = shiftedLabels.ne(-100).to(ScalarType.Float32);
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
    /// <see cref="ForMicroBatch(Tensor, Tensor, LossMode, int, long, IProcessGroup?)"/> from the final hidden states, with the
    /// chunked LM head and loss (<see cref="TokenLosses(Tensor, Func{Tensor, Tensor}, long, Tensor, IProcessGroup?, long?)"/>).
    /// </summary>
    public static (Tensor Backward, double Logged) ForMicroBatch(Tensor hidden, Func<Tensor, Tensor> head, long width, Tensor labels, LossMode mode,
        int microBatches, long stepTokens, IProcessGroup? vocabulary = null, long? positions = null)
    {
        using var scope = NewDisposeScope();
        var (losses, mask) = TokenLosses(hidden, head, width, labels, vocabulary, positions);
        var (loss, logged) = Reduce(losses, mask, mode, microBatches, stepTokens);
        return (loss.MoveToOuterDisposeScope(), logged);
    }

    /// <summary>
    /// The micro-batch's loss to back-propagate (already divided so that summing over the step's micro-batches gives the
    /// step loss) and its contribution to the logged loss.
    /// </summary>
    public static (Tensor Backward, double Logged) ForMicroBatch(Tensor logits, Tensor labels, LossMode mode, int microBatches, long stepTokens,
        IProcessGroup? vocabulary = null)
    {
        using var scope = NewDisposeScope();
        var (losses, mask) = TokenLosses(logits, labels, vocabulary);
        var (loss, logged) = Reduce(losses, mask, mode, microBatches, stepTokens);
        return (loss.MoveToOuterDisposeScope(), logged);
    }

    static (Tensor Loss, double Logged) Reduce(Tensor losses, Tensor mask, LossMode mode, int microBatches, long stepTokens)
    {
        Tensor loss = mode switch
        {
            LossMode.Default => (losses * mask).sum() / mask.sum().clamp_min(1) / microBatches,
            LossMode.PerSample => ((losses * mask).sum(1) / mask.sum(1).clamp_min(1)).mean() / microBatches,
            LossMode.PerToken => (losses * mask).sum() / Math.Max(1, stepTokens),
            _ => throw new ArgumentOutOfRangeException(nameof(mode)),
        };
        return (loss, loss.item<float>());
    }
}
