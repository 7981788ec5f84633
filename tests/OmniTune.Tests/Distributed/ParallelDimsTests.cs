using OmniTune.Distributed;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Distributed;

public sealed class ParallelDimsTests
{
    [Fact]
    public void Ranks_are_laid_out_in_megatron_order_with_tensor_parallel_fastest()
    {
        var dims = new ParallelDims(world: 16, tp: 2, cp: 1, pp: 2);
        Assert.Equal(4, dims.Dp);
        Assert.Equal(new ParallelCoordinates(1, 0, 0, 0), dims.Of(1));
        Assert.Equal(new ParallelCoordinates(0, 0, 1, 0), dims.Of(2));
        Assert.Equal(new ParallelCoordinates(1, 0, 3, 1), dims.Of(15));
        Assert.Equal([0, 1], dims.GroupOf("tp", 0));
        Assert.Equal([1, 3, 5, 7], dims.GroupOf("dp", 3));
        Assert.Equal([3, 11], dims.GroupOf("pp", 3));
        for (int r = 0; r < 16; r++) Assert.Equal(r, dims.RankOf(dims.Of(r)));
        // Data and context parallel together: the ranks holding the same parameters (same tp rank and stage).
        var context = new ParallelDims(16, tp: 2, cp: 2, pp: 2);   // dp 2
        Assert.Equal([1, 3, 5, 7], context.GroupOf("dp_cp", 5));
        Assert.Equal([9, 13], context.GroupOf("dp", 9));
        Assert.Equal([8, 10, 12, 14], context.GroupOf("dp_cp", 12));
    }

    [Fact]
    public void Sizes_that_do_not_divide_the_world_are_rejected()
    {
        Assert.Contains("not divisible by TP 3", Assert.Throws<ArgumentException>(() => new ParallelDims(8, tp: 3)).Message);
        Assert.Throws<ArgumentException>(() => new ParallelDims(8, tp: 2).GroupOf("ep", 0));
    }

    [Fact]
    public void A_single_rank_group_makes_collectives_identities()
    {
        using var group = new SingleRankGroup("decoder.dp");
        using var t = TorchSharp.torch.ones(3);
        group.AllReduce(t);
        Assert.Equal([1f, 1, 1], t.data<float>().ToArray());
        Assert.Equal((0, 1), (group.Rank, group.Size));
    }

    [WithoutNcclFact]
    public void Nccl_without_the_library_says_how_to_get_it()
    {
        Assert.Contains("libnccl.so.2 not found", Assert.Throws<DllNotFoundException>(NcclLibrary.Load).Message);
    }

    [WithoutNcclFact]
    public void An_nccl_group_without_the_library_fails_before_touching_its_bootstrap_group()
    {
        using var bootstrap = new SingleRankGroup("decoder.dp");
        var e = Assert.Throws<DllNotFoundException>(() => NcclProcessGroup.Create(bootstrap, "decoder.dp.nccl", deviceIndex: 0));
        Assert.Contains("libnccl.so.2 not found", e.Message);
    }

    [Theory]
    [InlineData(TorchSharp.torch.ScalarType.Float32, 7)]
    [InlineData(TorchSharp.torch.ScalarType.BFloat16, 9)]
    [InlineData(TorchSharp.torch.ScalarType.Float16, 6)]
    [InlineData(TorchSharp.torch.ScalarType.Int64, 4)]
    public void Nccl_data_types_follow_nccl_h(TorchSharp.torch.ScalarType dtype, int code) =>
        Assert.Equal(code, NcclProcessGroup.DataType(dtype));
}
