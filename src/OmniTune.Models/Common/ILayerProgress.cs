using static TorchSharp.torch;

namespace OmniTune.Models.Common;

/// <summary>
/// Watches a tower's layers while it trains (the trainer's overlapped gradient reduction: a layer's gradients are final
/// once backward has passed its input in every pass of the micro-batch). <see cref="RecomputeSettings.Run(RecomputeSettings?, int, int, Tensor, Tensor[], Func{int, Tensor, Tensor[], Tensor}, ILayerProgress?)"/>
/// calls it; the model files only hand theirs over.
/// </summary>
public interface ILayerProgress
{
    /// <summary>A pass over layers [<paramref name="from"/>, <paramref name="to"/>) starts with gradients on (once per pass: not again when a segment is recomputed).</summary>
    void PassStarted(int from, int to);

    /// <summary>Sees <paramref name="layer"/>'s input and returns what the layer takes (an identity whose backward reports the layer).</summary>
    Tensor LayerInput(int layer, Tensor hidden);
}
