using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Text;

/// <summary>
/// TMRoPE cos/sin tables for the text decoder (reference §3.5). Frequency j takes its position from row
/// t, h or w according to <c>mrope_section</c>; both halves of the head use the same layout.
/// </summary>
public sealed class MultimodalRotaryEmbedding : IDisposable
{
    readonly Tensor inverseFrequencies;
    readonly Tensor rowOfFrequency;

    /// <summary>Builds the inverse frequencies with torch ops so they are bit-identical to PyTorch's.</summary>
    public MultimodalRotaryEmbedding(Qwen25OmniTextConfig config, Device? device = null)
    {
        int headDim = config.HeadDim;
        using (var scope = NewDisposeScope())
        {
            // inv_freq = 1 / θ^(arange(0, hd, 2) / hd), exponent in float32.
            Tensor exponent = arange(0, headDim, 2, ScalarType.Int64, device).to(ScalarType.Float32) / headDim;
            Tensor theta = full_like(exponent, config.RopeTheta);
            inverseFrequencies = (1.0 / theta.pow(exponent)).MoveToOuterDisposeScope();
        }
        int[] sections = config.RopeScaling.MropeSection;
        var rows = new long[headDim / 2];
        for (int j = 0, row = 0, end = sections[0]; j < rows.Length; j++)
        {
            while (j >= end && row < sections.Length - 1) end += sections[++row];
            rows[j] = row;
        }
        rowOfFrequency = tensor(rows, ScalarType.Int64, device);
    }

    /// <summary>
    /// cos and sin of shape [B, 1, S, hd] in <paramref name="dtype"/> for position ids [3, B, S].
    /// </summary>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        // [3, B, S] -> [B, S, 3] -> pick the row of each frequency -> [B, S, hd/2]
        Tensor positions = positionIds.to(ScalarType.Float32).permute(1, 2, 0).index_select(-1, rowOfFrequency.to(positionIds.device));
        Tensor freqs = positions * inverseFrequencies.to(positionIds.device);
        Tensor emb = cat([freqs, freqs], -1).unsqueeze(1);   // [B, 1, S, hd]
        Tensor cos = emb.cos().to(dtype), sin = emb.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
        Tensor rotated = cat([-x2, x1], -1);
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        inverseFrequencies.Dispose();
        rowOfFrequency.Dispose();
    }
}
