using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Vision;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class VisionEncoderTests
{
    [Fact]
    public void The_window_index_of_grid_1_10_10_matches_the_reference()
    {
        var w = VisionWindowIndex.For([new GridThw(1, 10, 10)], 112, 2, 14);
        Assert.Equal([0L, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 4, 9, 14, 19, 20, 21, 22, 23, 24], w.WindowIndex);
        Assert.Equal([0, 64, 80, 96, 100], w.CumulativeWindowSeqlens());
        Assert.Equal([100], w.FullSegments);
    }

    [Fact]
    public void The_window_index_of_a_476_by_644_image_has_30_windows()
    {
        var w = VisionWindowIndex.For([new GridThw(1, 34, 46)], 112, 2, 14);
        int[] cu = w.CumulativeWindowSeqlens();
        Assert.Equal(30, w.WindowSegments.Length);
        Assert.Equal([0, 64, 128, 192, 256, 320, 368, 432], cu[..8]);
        Assert.Equal(1564, cu[^1]);
        Assert.Equal(Enumerable.Range(0, 391).Select(i => (long)i), w.WindowIndex.Order());
    }

    [Fact]
    public void Full_attention_segments_are_per_temporal_group()
    {
        var w = VisionWindowIndex.For([new GridThw(2, 4, 6), new GridThw(1, 10, 10)], 112, 2, 14);
        Assert.Equal([24, 24, 100], w.FullSegments);
        Assert.Equal(w.WindowSegments.Sum(), w.FullSegments.Sum());
    }

    [Fact]
    public void Rotary_positions_follow_the_merge_block_order()
    {
        long[] p = VisionRotaryEmbedding.PatchPositions([new GridThw(1, 4, 6)], 2);
        long[] expected = [0, 0, 0, 1, 1, 0, 1, 1, 0, 2, 0, 3, 1, 2, 1, 3, 0, 4, 0, 5, 1, 4, 1, 5,
                           2, 0, 2, 1, 3, 0, 3, 1, 2, 2, 2, 3, 3, 2, 3, 3, 2, 4, 2, 5, 3, 4, 3, 5];
        Assert.Equal(expected, p);
    }

    static Tensor Pixels(GridThw grid, int seed, int patchDim) => randn([grid.Patches, patchDim], generator: new Generator((ulong)seed));

    [Theory]
    [InlineData(1, 2, 2)]
    [InlineData(1, 6, 10)]
    [InlineData(2, 4, 6)]
    [InlineData(3, 14, 8)]
    [InlineData(1, 34, 46)]
    public void Token_counts_and_shapes_follow_the_grid(int t, int h, int w)
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        using var noGrad = no_grad();
        var grid = new GridThw(t, h, w);
        Tensor output = model.Visual.Forward(Pixels(grid, 1, config.Vision.PatchDim), [grid]);
        Assert.Equal([grid.Tokens(2), config.Text.HiddenSize], output.shape);
        Assert.False(output.isnan().any().item<bool>());
    }

    [Fact]
    public void Window_attention_equals_full_attention_when_one_window_covers_the_image()
    {
        var config = TinyThinker.Config();
        using var windowed = TinyThinker.Create(config with { Vision = config.Vision with { FullAttBlockIndexes = [] } }, seed: 3);
        using var full = TinyThinker.Create(config with { Vision = config.Vision with { FullAttBlockIndexes = [0, 1] } }, seed: 3);
        using var noGrad = no_grad();
        var small = new GridThw(2, 8, 6);   // merged 4×3 fits one 4×4 window
        Tensor pixels = Pixels(small, 2, config.Vision.PatchDim);
        TensorAssert.Close(full.Visual.Forward(pixels, [small]), windowed.Visual.Forward(pixels, [small]), 1e-5);
        var large = new GridThw(1, 12, 12);  // merged 6×6 needs four windows
        Tensor more = Pixels(large, 4, config.Vision.PatchDim);
        double diff = (full.Visual.Forward(more, [large]) - windowed.Visual.Forward(more, [large])).abs().max().item<float>();
        Assert.True(diff > 1e-4, "windows larger than the image should change nothing, smaller ones should");
    }

    [Fact]
    public void Encoding_images_together_equals_encoding_each_alone()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        using var noGrad = no_grad();
        GridThw a = new(1, 10, 10), b = new(2, 4, 6);
        Tensor pa = Pixels(a, 5, config.Vision.PatchDim), pb = Pixels(b, 6, config.Vision.PatchDim);
        Tensor together = model.Visual.Forward(cat([pa, pb]), [a, b]);
        TensorAssert.Close(cat([model.Visual.Forward(pa, [a]), model.Visual.Forward(pb, [b])]), together, 1e-5);
    }

    [Fact]
    public void Pixel_rows_that_disagree_with_the_grids_are_an_error()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        var error = Assert.Throws<ArgumentException>(() => model.Visual.Forward(zeros(10, config.Vision.PatchDim), [new GridThw(1, 4, 4)]));
        Assert.Contains("16", error.Message);
    }
}
