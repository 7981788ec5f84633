using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Positions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Models.Qwen25Omni.Vision;

/// <summary>
/// The Qwen2.5-VL-style vision encoder of the thinker (HF <c>Qwen2_5OmniVisionEncoder</c>, keys <c>visual.*</c>):
/// patch embedding, window-permuted blocks with 2-D rotary (full attention per frame group in
/// <c>fullatt_block_indexes</c>), patch merger, inverse permutation (reference §4).
/// </summary>
public sealed class Qwen25OmniVisionEncoder : nn.Module
{
    readonly VisionPatchEmbed patch_embed;
    readonly ModuleList<Qwen25OmniVisionBlock> blocks;
    readonly Qwen25OmniPatchMerger merger;
    readonly Qwen25OmniVisionConfig config;
    readonly HashSet<int> fullAttention;

    /// <summary>Creates the encoder.</summary>
    public Qwen25OmniVisionEncoder(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype) : base("visual")
    {
        this.config = config;
        fullAttention = [.. config.FullAttBlockIndexes];
        patch_embed = new VisionPatchEmbed(config, device, dtype);
        blocks = new ModuleList<Qwen25OmniVisionBlock>();
        for (int i = 0; i < config.Depth; i++) blocks.Add(new Qwen25OmniVisionBlock(config, device, dtype));
        merger = new Qwen25OmniPatchMerger(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>Activation recompute of the blocks while training (none when null).</summary>
    public Common.RecomputeSettings? Recompute { get; set; }

    /// <summary>pixel rows [N, C·T·P·P] with their grids → merged tokens [N/m², out] in placeholder order.</summary>
    public Tensor Forward(Tensor pixelValues, IReadOnlyList<GridThw> grids)
    {
        using var scope = NewDisposeScope();
        long n = pixelValues.shape[0];
        long expected = grids.Sum(g => g.Patches);
        if (n != expected) throw new ArgumentException($"pixel values have {n} patch rows but the grids describe {expected}");
        int m = config.SpatialMergeSize, unit = m * m;
        Tensor x = patch_embed.Forward(pixelValues);

        var windows = VisionWindowIndex.For(grids, config.WindowSize, m, config.PatchSize);
        Tensor order = tensor(windows.WindowIndex, device: x.device);
        Tensor Permute(Tensor t) => t.reshape(n / unit, unit, -1).index_select(0, order).reshape(n, -1);
        x = Permute(x);
        Tensor angles = Permute(VisionRotaryEmbedding.Angles(grids, m, config.HeadDim, x.device));
        Tensor emb = cat([angles, angles], -1).unsqueeze(1);   // [N, 1, hd]
        Tensor cos = emb.cos(), sin = emb.sin();

        x = Common.RecomputeSettings.Run(Recompute, blocks.Count, x, [cos, sin],
            (i, h, c) => blocks[i].Forward(h, c[0], c[1], fullAttention.Contains(i) ? windows.FullSegments : windows.WindowSegments));
        Tensor merged = merger.Forward(x);
        Tensor inverse = order.argsort();
        return merged.index_select(0, inverse).MoveToOuterDisposeScope();
    }
}
