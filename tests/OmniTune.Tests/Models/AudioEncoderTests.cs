using OmniTune.Models.Qwen25Omni.Audio;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class AudioEncoderTests
{
    [Theory]
    [InlineData(450, new[] { 200, 200, 50 })]
    [InlineData(1000, new[] { 200, 200, 200, 200, 200 })]
    [InlineData(30, new[] { 30 })]
    [InlineData(200, new[] { 200 })]
    public void Audio_is_cut_into_chunks_of_two_windows(int frames, int[] chunks) =>
        Assert.Equal(chunks, Qwen25OmniAudioEncoder.ChunkLengths(frames, 100));

    [Theory]
    [InlineData(3)]
    [InlineData(30)]
    [InlineData(199)]
    [InlineData(201)]
    [InlineData(450)]
    [InlineData(1001)]
    public void Token_counts_follow_the_output_length_formula(int frames)
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        using var noGrad = no_grad();
        Tensor output = model.AudioTower.Forward(randn([config.Audio.NumMelBins, frames], generator: new Generator(1)), [frames]);
        Assert.Equal([AudioLengths.Tokens(frames), config.Text.HiddenSize], output.shape);
    }

    [Fact]
    public void Chunked_attention_equals_running_each_chunk_alone()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        using var noGrad = no_grad();
        Tensor mel = randn([config.Audio.NumMelBins, 600], generator: new Generator(2));
        Tensor whole = model.AudioTower.Forward(mel, [600]);
        var alone = Enumerable.Range(0, 3).Select(i => model.AudioTower.Forward(mel.narrow(1, i * 200, 200), [200])).ToArray();
        TensorAssert.Close(cat(alone), whole, 1e-5);
    }

    [Fact]
    public void Several_audios_in_one_call_equal_each_audio_alone()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        using var noGrad = no_grad();
        Tensor a = randn([config.Audio.NumMelBins, 250], generator: new Generator(3));
        Tensor b = randn([config.Audio.NumMelBins, 37], generator: new Generator(4));
        Tensor together = model.AudioTower.Forward(cat([a, b], 1), [250, 37]);
        TensorAssert.Close(cat([model.AudioTower.Forward(a, [250]), model.AudioTower.Forward(b, [37])]), together, 1e-5);
    }

    [Fact]
    public void Audio_too_short_for_a_token_is_an_error()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config);
        var error = Assert.Throws<ArgumentException>(() => model.AudioTower.Forward(zeros(config.Audio.NumMelBins, 2), [2]));
        Assert.Contains("too short", error.Message);
    }

    [Fact]
    public void The_sinusoid_table_has_the_sin_block_then_the_cos_block()
    {
        Tensor table = SinusoidPositions.Table(5, 8);
        Assert.Equal([5L, 8], table.shape);
        Assert.Equal(0f, table[0, 0].item<float>());
        Assert.Equal(1f, table[0, 4].item<float>());
        double inc = Math.Log(10000) / 3;
        Assert.Equal(Math.Sin(3 * Math.Exp(-inc)), table[3, 1].item<float>(), 5);
        Assert.Equal(Math.Cos(3 * Math.Exp(-2 * inc)), table[3, 6].item<float>(), 5);
    }
}
