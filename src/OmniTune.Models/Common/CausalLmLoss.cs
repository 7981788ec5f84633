using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Next-token cross-entropy as Hugging Face's ForCausalLMLoss: logits in float32, the label of position s is token
/// s+1, label −100 is ignored (reference §3.8).
/// </summary>
public static class CausalLmLoss
{
    /// <summary>Label value that contributes nothing to the loss.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Sum of token losses and the number of counted tokens, for logits [B, S, V] and labels [B, S].</summary>
    public static (Tensor Sum, Tensor Count) SumAndCount(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        long v = logits.shape[^1];
        // Shift: predict token s+1 from position s. [B, S-1, V] -> [B·(S-1), V]
        Tensor shiftedLogits = logits.narrow(1, 0, logits.shape[1] - 1).reshape(-1, v).to(ScalarType.Float32);
        Tensor shiftedLabels = labels.narrow(1, 1, labels.shape[1] - 1).reshape(-1);
        Tensor sum = nn.functional.cross_entropy(shiftedLogits, shiftedLabels, ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);
        Tensor count = shiftedLabels.ne(IgnoreIndex).sum();
        return (sum.MoveToOuterDisposeScope(), count.MoveToOuterDisposeScope());
    }

    /// <summary>Mean loss over counted tokens (0 when no token counts, instead of NaN).</summary>
    public static Tensor Mean(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var (sum, count) = SumAndCount(logits, labels);
        return (sum / count.clamp_min(1).to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }
}
