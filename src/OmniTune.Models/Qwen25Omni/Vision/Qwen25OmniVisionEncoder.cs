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

    /// <summary>Creates the encoder; <paramref name="parts"/> (all when null) says which parts are built on <paramref name="device"/>.</summary>
    public Qwen25OmniVisionEncoder(Qwen25OmniVisionConfig config, Device? device, ScalarType dtype, Thinker.ThinkerParts? parts = null) : base("visual")
    {
        this.config = config;
        fullAttention = [.. config.FullAttBlockIndexes];
        patch_embed = new VisionPatchEmbed(config, Thinker.ThinkerParts.Place(parts?.PatchEmbed ?? true, device), dtype);
        blocks = new ModuleList<Qwen25OmniVisionBlock>();
        for (int i = 0; i < config.Depth; i++)
            blocks.Add(new Qwen25OmniVisionBlock(config, Thinker.ThinkerParts.Place(parts?.VisionBlocks.Contains(i) ?? true, device), dtype));
        merger = new Qwen25OmniPatchMerger(config, Thinker.ThinkerParts.Place(parts?.Merger ?? true, device), dtype);
        RegisterComponents();
    }

    /// <summary>Activation recompute of the blocks while training (none when null).</summary>
    public Common.RecomputeSettings? Recompute { get; set; }

    /// <summary>Optional: watches the blocks in training (the trainer's overlapped gradient reduction).</summary>
    public Common.ILayerProgress? Progress { get; set; }

    /// <summary>Number of blocks.</summary>
    public int Depth => blocks.Count;

    /// <summary>pixel rows [N, C·T·P·P] with their grids → merged tokens [N/m², out] in placeholder order.</summary>
    public Tensor Forward(Tensor pixelValues, IReadOnlyList<GridThw> grids)
    {
        using var scope = NewDisposeScope();
        using var pass = Prepare(grids, pixelValues.device);
        Tensor x = Embed(pixelValues, pass);
        x = Blocks(x, pass, 0, blocks.Count);
        return Merge(x, pass).MoveToOuterDisposeScope();
    }

    /// <summary>What the blocks need besides the hidden rows, from the grids alone: window order, rotary tables, segments.</summary>
    public VisionPass Prepare(IReadOnlyList<GridThw> grids, Device device)
    {
        using var scope = NewDisposeScope();
        int m = config.SpatialMergeSize, unit = m * m;
        long n = grids.Sum(g => g.Patches);
        var windows = VisionWindowIndex.For(grids, config.WindowSize, m, config.PatchSize);
        Tensor order = tensor(windows.WindowIndex, device: device);
        Tensor angles = VisionRotaryEmbedding.Angles(grids, m, config.HeadDim, device).reshape(n / unit, unit, -1).index_select(0, order).reshape(n, -1);
        Tensor emb = cat([angles, angles], -1).unsqueeze(1);   // [N, 1, hd]
        return new VisionPass(n, unit, windows, order.DetachFromDisposeScope(), emb.cos().DetachFromDisposeScope(), emb.sin().DetachFromDisposeScope());
    }

    /// <summary>Patch embedding of pixel rows [N, C·T·P·P] → hidden rows [N, D] in window order.</summary>
    public Tensor Embed(Tensor pixelValues, VisionPass pass)
    {
        long n = pixelValues.shape[0];
        if (n != pass.Patches) throw new ArgumentException($"pixel values have {n} patch rows but the grids describe {pass.Patches}");
        return pass.Permute(patch_embed.Forward(pixelValues));
    }

    /// <summary>Blocks [<paramref name="from"/>, <paramref name="to"/>) on hidden rows in window order.</summary>
    public Tensor Blocks(Tensor x, VisionPass pass, int from, int to) =>
        Common.RecomputeSettings.Run(Recompute, from, to, x, [pass.Cos, pass.Sin],
            (i, h, c) => blocks[i].Forward(h, c[0], c[1], fullAttention.Contains(i) ? pass.Windows.FullSegments : pass.Windows.WindowSegments), Progress);

    /// <summary>Patch merger and the inverse window order: hidden rows [N, D] → tokens [N/m², out] in placeholder order.</summary>
    public Tensor Merge(Tensor x, VisionPass pass)
    {
        using var scope = NewDisposeScope();
        Tensor merged = merger.Forward(x);
        return merged.index_select(0, pass.Order.argsort()).MoveToOuterDisposeScope();
    }
}

/// <summary>The grid-derived tensors one vision forward uses (window order, rotary cos/sin); owns them.</summary>
/// <param name="Patches">Patch rows N.</param>
/// <param name="Unit">Rows per merged token (m²).</param>
/// <param name="Windows">Window permutation and attention segments.</param>
/// <param name="Order">Window order of the merge units.</param>
/// <param name="Cos">Rotary cos [N, 1, hd] in window order.</param>
/// <param name="Sin">Rotary sin [N, 1, hd] in window order.</param>
public sealed record VisionPass(long Patches, int Unit, VisionWindowIndex Windows, Tensor Order, Tensor Cos, Tensor Sin) : IDisposable
{
    /// <summary>Rows [N, D] from patch order into window order.</summary>
    public Tensor Permute(Tensor t) => t.reshape(Patches / Unit, Unit, -1).index_select(0, Order).reshape(Patches, -1);

    /// <inheritdoc/>
    public void Dispose()
    {
        Order.Dispose();
        Cos.Dispose();
        Sin.Dispose();
    }
}
