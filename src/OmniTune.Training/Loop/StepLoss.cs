using OmniTune.Distributed;
using OmniTune.Distributed.TensorParallel;
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

    /// <summary>
    /// The micro-batch's loss to back-propagate (already divided so that summing over the step's micro-batches gives the
    /// step loss) and its contribution to the logged loss.
    /// </summary>
    public static (Tensor Backward, double Logged) ForMicroBatch(Tensor logits, Tensor labels, LossMode mode, int microBatches, long stepTokens,
        IProcessGroup? vocabulary = null)
    {
        using var scope = NewDisposeScope();
        var (losses, mask) = TokenLosses(logits, labels, vocabulary);
        Tensor loss = mode switch
        {
            LossMode.Default => (losses * mask).sum() / mask.sum().clamp_min(1) / microBatches,
            LossMode.PerSample => ((losses * mask).sum(1) / mask.sum(1).clamp_min(1)).mean() / microBatches,
            LossMode.PerToken => (losses * mask).sum() / Math.Max(1, stepTokens),
            _ => throw new ArgumentOutOfRangeException(nameof(mode)),
        };
        double logged = loss.item<float>();
        return (loss.MoveToOuterDisposeScope(), logged);
    }
}
