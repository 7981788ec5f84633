using OmniTune.Models.Qwen25Omni.Positions;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>
/// 2-D rotary positions of the vision encoder (reference §4.3): each patch gets (row, column) in the 2×2-merge-block
/// order; half the rotary frequencies encode the row, half the column. Applied in float32.
/// </summary>
public static class VisionRotaryEmbedding
{
    /// <summary>(row, column) of every patch in processor order, for all grids.</summary>
    public static long[] PatchPositions(IReadOnlyList<GridThw> grids, int mergeSize)
    {
        var positions = new List<long>();
        foreach (GridThw g in grids)
        {
            var one = new List<long>();
            for (int hb = 0; hb < g.H / mergeSize; hb++)
            {
                for (int wb = 0; wb < g.W / mergeSize; wb++)
                {
                    for (int mh = 0; mh < mergeSize; mh++)
                    {
                        for (int mw = 0; mw < mergeSize; mw++)
                        {
                            one.Add((hb * mergeSize) + mh);
                            one.Add((wb * mergeSize) + mw);
                        }
                    }
                }
            }
            for (int t = 0; t < g.T; t++) positions.AddRange(one);
        }
        return positions.ToArray();
    }

    /// <summary>Rotary angles [N, head_dim/2] (row frequencies then column frequencies) for the patches of <paramref name="grids"/>.</summary>
    public static Tensor Angles(IReadOnlyList<GridThw> grids, int mergeSize, int headDim, Device device)
    {
        using var scope = NewDisposeScope();
        int dim = headDim / 2;
        Tensor exponent = arange(0, dim, 2, ScalarType.Int64, device).to(ScalarType.Float32) / dim;
        Tensor inverse = 1.0 / full_like(exponent, 10000.0).pow(exponent);                          // [dim/2]
        Tensor positions = tensor(PatchPositions(grids, mergeSize), device: device).reshape(-1, 2);   // [N, 2]
        Tensor angles = positions.to(ScalarType.Float32).unsqueeze(-1) * inverse;                    // [N, 2, dim/2]
        return angles.reshape(positions.shape[0], -1).MoveToOuterDisposeScope();                      // [N, dim]
    }

    /// <summary>Applies the rotation to x [N, heads, hd] in float32 and returns it in x's dtype; cos/sin are [N, 1, hd].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        Tensor h = x.to(ScalarType.Float32);
        long half = h.shape[^1] / 2;
        Tensor rotated = cat([-h.narrow(-1, half, half), h.narrow(-1, 0, half)], -1);
        return (h * cos + rotated * sin).to(x.dtype).MoveToOuterDisposeScope();
    }
}
