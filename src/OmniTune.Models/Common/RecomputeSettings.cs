using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Megatron's full recompute for one tower (mindspeed_mm.md §9): <c>uniform</c> checkpoints consecutive groups of
/// <see cref="NumLayers"/> layers, <c>block</c> checkpoints the first <see cref="NumLayers"/> layers one by one.
/// </summary>
/// <param name="Method">"uniform" or "block".</param>
/// <param name="NumLayers">Group size (uniform) or number of checkpointed layers (block).</param>
public sealed record RecomputeSettings(string Method, int NumLayers)
{
    /// <summary>Segments (first layer, layer count, checkpointed) covering <paramref name="layers"/> layers.</summary>
    public List<(int Start, int Count, bool Checkpointed)> Plan(int layers)
    {
        var plan = new List<(int, int, bool)>();
        if (Method == "uniform")
        {
            for (int i = 0; i < layers; i += NumLayers) plan.Add((i, Math.Min(NumLayers, layers - i), true));
        }
        else
        {
            for (int i = 0; i < layers; i++) plan.Add((i, 1, i < NumLayers));
        }
        return plan;
    }

    /// <summary>
    /// Runs <paramref name="layers"/> layers on <paramref name="x"/> following <paramref name="settings"/> (plainly when null
    /// or not training). <paramref name="layer"/> gets the layer index, the hidden states and <paramref name="context"/> —
    /// the constant tensors it needs, handed over again when a segment is recomputed.
    /// </summary>
    public static Tensor Run(RecomputeSettings? settings, int layers, Tensor x, Tensor[] context, Func<int, Tensor, Tensor[], Tensor> layer) =>
        Run(settings, 0, layers, x, context, layer);

    /// <summary>
    /// Runs layers [<paramref name="from"/>, <paramref name="to"/>) (a pipeline stage's share of a tower; the recompute
    /// plan counts from the first of them, as Megatron plans per stage). <paramref name="progress"/>, when given, is told
    /// of the pass (with gradients on) and sees each layer's input, in the first forward or in the recompute.
    /// </summary>
    public static Tensor Run(RecomputeSettings? settings, int from, int to, Tensor x, Tensor[] context, Func<int, Tensor, Tensor[], Tensor> layer,
        ILayerProgress? progress = null)
    {
        if (progress is not null)
        {
            if (is_grad_enabled()) progress.PassStarted(from, to);
            var inner = layer;
            layer = (i, h, c) => inner(i, progress.LayerInput(i, h), c);
        }
        if (settings is null || !is_grad_enabled())
        {
            for (int i = from; i < to; i++) x = layer(i, x, context);
            return x;
        }
        foreach (var (start, count, checkpointed) in settings.Plan(to - from))
        {
            Tensor Segment(Tensor h, Tensor[] c)
            {
                for (int i = from + start; i < from + start + count; i++) h = layer(i, h, c);
                return h;
            }
            x = checkpointed ? ActivationCheckpoint.Run(Segment, x, context) : Segment(x, context);
        }
        return x;
    }
}
