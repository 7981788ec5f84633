using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>
/// Position ids [3, B, S] for text-only input, as get_rope_index's 1-D branch computes them: cumsum of the padding
/// mask minus one, padding positions set to 1, the same row three times.
/// </summary>
public static class TextPositionIds
{
    /// <summary>Positions for ids [B, S] with an optional padding mask [B, S].</summary>
    public static Tensor For(Tensor inputIds, Tensor? paddingMask)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], s = inputIds.shape[1];
        Tensor positions = paddingMask is null
            ? arange(s, ScalarType.Int64, inputIds.device).unsqueeze(0).expand(b, s)
            : paddingMask.to(ScalarType.Int64).cumsum(-1, ScalarType.Int64).sub(1).masked_fill(paddingMask.eq(0), 1);
        return positions.unsqueeze(0).expand(3, b, s).contiguous().MoveToOuterDisposeScope();
    }
}
