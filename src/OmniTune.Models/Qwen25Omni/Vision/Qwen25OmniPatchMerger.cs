using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>RMSNorm per patch, concatenation of each m×m block, Linear → GELU → Linear to the LLM width.</summary>
public sealed class Qwen25OmniPatchMerger : nn.Module
{
    readonly RmsNorm ln_q;
    readonly Sequential mlp;
    readonly long mergedWidth;

    /// <summary>Creates the merger (keys ln_q, mlp.0, mlp.2).</summary>
    public Qwen25OmniPatchMerger(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("merger")
    {
        mergedWidth = (long)config.HiddenSize * config.SpatialMergeSize * config.SpatialMergeSize;
        ln_q = new RmsNorm("ln_q", config.HiddenSize, 1e-6, device, dtype);
        mlp = nn.Sequential(
            ("0", nn.Linear(mergedWidth, mergedWidth, hasBias: true, device: device, dtype: dtype)),
            ("1", nn.GELU()),
            ("2", nn.Linear(mergedWidth, config.OutHiddenSize, hasBias: true, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>x [N, D] → [N/m², out].</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return mlp.forward(ln_q.Forward(x).view(-1, mergedWidth)).MoveToOuterDisposeScope();
    }
}
