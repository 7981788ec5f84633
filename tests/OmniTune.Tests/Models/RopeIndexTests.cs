using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Tests.Models;

/// <summary>The worked examples of reference §7.4 (a is Hugging Face's own test), exactly.</summary>
public sealed class RopeIndexTests
{
    // The tiny HF test ids: audio 1, image 2, video 3, audio_start 4, audio_end 5, vision_start 7, vision_end 8.
    const long Audio = 1, Image = 2, Video = 3, AudioBos = 4, AudioEos = 5, VisionBos = 7, VisionEos = 8, T = 100;

    static RopeIndexSettings Settings(int merge) => new(Image, Video, Audio, VisionBos, AudioBos, merge, 25, 2);

    static RopeIndexResult Run(long[] ids, int merge, GridThw[]? images = null, GridThw[]? videos = null, double[]? spg = null,
        int[]? audio = null, bool audioInVideo = false, int[]? mask = null) =>
        RopeIndex.Compute(new RopeIndexInputs([ids], mask is null ? null : [mask], images ?? [], videos ?? [], spg ?? [], audio ?? [], audioInVideo), Settings(merge));

    static long[] Seq(long from, long toInclusive) => Enumerable.Range(0, (int)(toInclusive - from + 1)).Select(i => from + i).ToArray();

    static long[] Rep(long value, int count) => Enumerable.Repeat(value, count).ToArray();

    static long[] Ids(params object[] parts) => parts.SelectMany(p => p switch
    {
        long v => [v],
        int v => [(long)v],
        long[] a => a,
        _ => throw new ArgumentException("bad part"),
    }).ToArray();

    [Fact]
    public void Example_a_is_hugging_faces_video_with_audio_test()
    {
        long[] ids = Ids(100L, 101L, VisionBos, AudioBos, Rep(Video, 8), Rep(Audio, 50), Rep(Video, 4), Rep(Audio, 25), AudioEos, VisionEos, 102L, 103L);
        Assert.Equal(95, ids.Length);
        var result = Run(ids, merge: 1, videos: [new GridThw(3, 2, 2)], spg: [1.0], audio: [300], audioInVideo: true);
        long[] t = Ids(0L, 1L, 2L, 2L, 3L, 3L, 3L, 3L, 28L, 28L, 28L, 28L, Seq(3, 52), Rep(53, 4), Seq(53, 77), 78L, 78L, 79L, 80L);
        long[] h = Ids(0L, 1L, 2L, 2L, 3L, 3L, 4L, 4L, 3L, 3L, 4L, 4L, Seq(3, 52), 3L, 3L, 4L, 4L, Seq(53, 77), 78L, 78L, 79L, 80L);
        long[] w = Ids(0L, 1L, 2L, 2L, 3L, 4L, 3L, 4L, 3L, 4L, 3L, 4L, Seq(3, 52), 3L, 4L, 3L, 4L, Seq(53, 77), 78L, 78L, 79L, 80L);
        Assert.Equal(t, result.Positions[0][0]);
        Assert.Equal(h, result.Positions[1][0]);
        Assert.Equal(w, result.Positions[2][0]);
        Assert.Equal(-14, result.Deltas[0]);
    }

    [Fact]
    public void Example_b_image_grid_1_4_6()
    {
        var result = Run(Ids(T, T, VisionBos, Rep(Image, 6), VisionEos, T), merge: 2, images: [new GridThw(1, 4, 6)]);
        Assert.Equal([0L, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7], result.Positions[0][0]);
        Assert.Equal([0L, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7], result.Positions[1][0]);
        Assert.Equal([0L, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7], result.Positions[2][0]);
        Assert.Equal(-3, result.Deltas[0]);
    }

    [Fact]
    public void Example_c_video_without_audio_at_one_and_half_seconds_per_grid()
    {
        long[] ids = Ids(T, VisionBos, Rep(Video, 16), VisionEos, T);
        var result = Run(ids, merge: 2, videos: [new GridThw(4, 4, 4)], spg: [1.0]);
        Assert.Equal(Ids(0L, 1L, Rep(2, 4), Rep(27, 4), Rep(52, 4), Rep(77, 4), 78L, 79L), result.Positions[0][0]);
        Assert.Equal(Ids(0L, 1L, 2L, 2L, 3L, 3L, 2L, 2L, 3L, 3L, 2L, 2L, 3L, 3L, 2L, 2L, 3L, 3L, 78L, 79L), result.Positions[1][0]);
        Assert.Equal(Ids(0L, 1L, 2L, 3L, 2L, 3L, 2L, 3L, 2L, 3L, 2L, 3L, 2L, 3L, 2L, 3L, 2L, 3L, 78L, 79L), result.Positions[2][0]);
        Assert.Equal(60, result.Deltas[0]);
        var half = Run(ids, merge: 2, videos: [new GridThw(4, 4, 4)], spg: [0.5]);
        Assert.Equal(Ids(0L, 1L, Rep(2, 4), Rep(14, 4), Rep(27, 4), Rep(39, 4), 40L, 41L), half.Positions[0][0]);
        Assert.Equal(22, half.Deltas[0]);
    }

    [Fact]
    public void Example_d_audio_only_is_sequential()
    {
        var result = Run(Ids(T, AudioBos, Rep(Audio, 7), AudioEos, T), merge: 2, audio: [30]);
        for (int r = 0; r < 3; r++) Assert.Equal(Seq(0, 10), result.Positions[r][0]);
        Assert.Equal(0, result.Deltas[0]);
    }

    [Fact]
    public void Example_e_next_continues_from_the_last_piece_not_the_global_maximum()
    {
        long[] ids = Ids(T, VisionBos, AudioBos, Rep(Video, 8), Rep(Audio, 50), Rep(Video, 8), Rep(Audio, 10), AudioEos, VisionEos, T);
        Assert.Equal(82, ids.Length);
        var result = Run(ids, merge: 1, videos: [new GridThw(4, 2, 2)], spg: [1.0], audio: [240], audioInVideo: true);
        long[] t = result.Positions[0][0];
        Assert.Equal(Ids(0L, 1L, 1L, Rep(2, 4), Rep(27, 4), Seq(2, 51), Rep(52, 4), Rep(77, 4), Seq(52, 61)), t[..79]);
        Assert.Equal([62L, 62, 63], t[^3..]);
        Assert.Equal(-4, result.Deltas[0]);
    }

    [Fact]
    public void Padding_keeps_position_one_and_items_are_counted_across_rows()
    {
        long[] row0 = Ids(0L, 0L, T, VisionBos, Rep(Image, 1), VisionEos);
        long[] row1 = Ids(T, VisionBos, Rep(Image, 2), VisionEos, T);
        var result = RopeIndex.Compute(new RopeIndexInputs([row0, row1], [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]],
            [new GridThw(1, 2, 2), new GridThw(1, 2, 4)], [], [], [], false), Settings(2));
        Assert.Equal([1L, 1, 0, 1, 2, 3], result.Positions[0][0]);
        Assert.Equal([0L, 1, 2, 2, 4, 5], result.Positions[0][1]);
        Assert.Equal([1L, 1, 0, 1, 2, 3], result.Positions[2][0]);
        Assert.Equal([0L, 1, 2, 3, 4, 5], result.Positions[2][1]);
    }

    [Fact]
    public void A_grid_that_disagrees_with_the_placeholder_count_is_an_error_naming_the_row()
    {
        var error = Assert.Throws<ArgumentException>(() => Run(Ids(T, VisionBos, Rep(Image, 6), VisionEos), merge: 2, images: [new GridThw(1, 4, 8)]));
        Assert.Contains("row 0", error.Message);
    }

    [Fact]
    public void Chunked_index_advances_one_chunk_per_element()
    {
        Assert.Equal([(0, 2), (2, 3), (3, 4)], RopeIndex.ChunkedIndex([0, 10, 120, 130], 50, 0));
        Assert.Equal([(0, 3)], RopeIndex.ChunkedIndex([5, 6, 7], 50, 5));
    }

    [Theory]
    [InlineData(30, 7)]
    [InlineData(300, 75)]
    [InlineData(450, 112)]
    [InlineData(1000, 250)]
    [InlineData(30000, 7500)]
    [InlineData(1, 0)]
    [InlineData(2, 0)]
    [InlineData(3, 1)]
    public void Audio_token_counts_follow_the_output_length_formula(int frames, int tokens) =>
        Assert.Equal(tokens, AudioLengths.Tokens(frames));
}
