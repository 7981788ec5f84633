using OmniTune.Models.Qwen25Omni.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>
/// Conv3d patch embedding (no bias). Its kernel equals its stride equals the whole patch, so it is computed as one
/// matmul of the patch rows with the flattened kernel (reference §4.2).
/// </summary>
public sealed class VisionPatchEmbed : nn.Module
{
    readonly Conv3d proj;

    /// <summary>Creates the embedding (key patch_embed.proj.weight).</summary>
    public VisionPatchEmbed(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("patch_embed")
    {
        var kernel = (config.TemporalPatchSize, config.PatchSize, config.PatchSize);
        proj = nn.Conv3d(config.InChannels, config.HiddenSize, kernel, stride: kernel, bias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>[N, C·T·P·P] → [N, D], input cast to the weight dtype.</summary>
    public Tensor Forward(Tensor pixelRows)
    {
        using var scope = NewDisposeScope();
        Tensor weight = proj.weight!;
        return pixelRows.to(weight.dtype).matmul(weight.reshape(weight.shape[0], -1).t()).MoveToOuterDisposeScope();
    }
}
