using OmniTune.Core.Safetensors;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class TextDecoderTests : IClassFixture<TinyModelFixture>
{
    readonly TinyModelFixture tiny;

    public TextDecoderTests(TinyModelFixture tiny) => this.tiny = tiny;

    Tensor RandomIds(long b, long s, int seed) =>
        randint(0, tiny.Config.Thinker.Text.VocabSize, [b, s], generator: new Generator((ulong)seed));

    static Dictionary<string, Tensor> Weights(string folder)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        return checkpoint.Keys.Where(k => k.StartsWith("thinker.", StringComparison.Ordinal))
            .ToDictionary(k => k["thinker.".Length..], k => checkpoint.Read(k));
    }

    [Fact]
    public void Logits_equal_an_independent_transcription_of_the_reference_with_distinct_mrope_rows()
    {
        var (model, _, _) = ThinkerCheckpointLoader.Load(tiny.Path);
        using (model)
        {
            Tensor ids = RandomIds(2, 12, 1);
            // Three different position rows, so a wrong mrope section layout cannot pass.
            Tensor positions = stack([arange(12).expand(2, 12), arange(12).floor_divide(3).expand(2, 12), (arange(12) % 5 + 7).expand(2, 12)]);
            Tensor expected = NaiveTextDecoderReference.Logits(Weights(tiny.Path), tiny.Config.Thinker.Text, ids, positions, null);
            using var noGrad = no_grad();
            TensorAssert.Close(expected, model.Forward(ids, positions), 2e-5);
        }
    }

    [Fact]
    public void Left_padding_does_not_change_the_logits_of_real_tokens()
    {
        var (model, _, _) = ThinkerCheckpointLoader.Load(tiny.Path);
        using (model)
        using (no_grad())
        {
            Tensor ids = RandomIds(1, 9, 2);
            Tensor alone = model.Forward(ids);
            Tensor padded = cat([full(1, 3, tiny.Config.Thinker.PadTokenId, ScalarType.Int64), ids], 1);
            Tensor mask = cat([zeros(1, 3, ScalarType.Int64), ones(1, 9, ScalarType.Int64)], 1);
            Tensor logits = model.Forward(padded, paddingMask: mask);
            Assert.False(logits.isnan().any().item<bool>());
            TensorAssert.Close(alone, logits.narrow(1, 3, 9), 2e-5);
            Tensor reference = NaiveTextDecoderReference.Logits(Weights(tiny.Path), tiny.Config.Thinker.Text, padded,
                model.PositionIds(new ThinkerInputs { InputIds = padded, AttentionMask = mask }).Positions, mask);
            TensorAssert.Close(reference.narrow(1, 3, 9), logits.narrow(1, 3, 9), 2e-5);
        }
    }

    [Fact]
    public void With_right_padding_every_position_padded_ones_included_equals_hugging_faces_eager_mask()
    {
        var (model, _, _) = ThinkerCheckpointLoader.Load(tiny.Path);
        using (model)
        using (no_grad())
        {
            // Row 0 is full; row 1 has 4 real tokens then 5 of padding (the collator pads on the right).
            Tensor ids = RandomIds(2, 9, 3);
            Tensor mask = ones(2, 9, ScalarType.Int64);
            mask[1, TensorIndex.Slice(4, 9)] = 0;
            ids[1, TensorIndex.Slice(4, 9)] = tiny.Config.Thinker.PadTokenId;
            Tensor logits = model.Forward(ids, paddingMask: mask);
            Tensor reference = NaiveTextDecoderReference.Logits(Weights(tiny.Path), tiny.Config.Thinker.Text, ids,
                model.PositionIds(new ThinkerInputs { InputIds = ids, AttentionMask = mask }).Positions, mask);
            TensorAssert.Close(reference, logits, 2e-5);   // padded queries attend to the row's real tokens, not to themselves
        }
    }

    [Fact]
    public void A_query_without_any_real_key_stays_finite()
    {
        using var all = OmniTune.Models.Qwen25Omni.Text.AttentionMask.FromPadding(tensor(new long[,] { { 0, 0, 1, 1 }, { 1, 1, 0, 0 } }));
        Tensor m = all.Mask![TensorIndex.Colon, 0];
        Assert.Equal(new[] { true, false, false, false }, m[0, 0].data<bool>().ToArray());   // left padding: itself only (never NaN)
        Assert.Equal(new[] { false, false, true, true }, m[0, 3].data<bool>().ToArray());
        Assert.Equal(new[] { true, true, false, false }, m[1, 3].data<bool>().ToArray());    // right padding: the real tokens, not itself
    }

    [Fact]
    public void Text_position_ids_follow_the_cumsum_rule_with_padding_set_to_one()
    {
        Tensor mask = tensor(new long[,] { { 0, 0, 1, 1, 1 }, { 1, 1, 1, 1, 1 } });
        var (model, _, _) = ThinkerCheckpointLoader.Load(tiny.Path);
        using var owned = model;
        var (positions, deltas) = model.PositionIds(new ThinkerInputs { InputIds = zeros(2, 5, ScalarType.Int64), AttentionMask = mask });
        Assert.Equal([-2L, 0], deltas);
        Assert.Equal([3L, 2, 5], positions.shape);
        Assert.Equal([1L, 1, 0, 1, 2], positions[0, 0].data<long>().ToArray());
        Assert.Equal([0L, 1, 2, 3, 4], positions[2, 1].data<long>().ToArray());
    }

    [Fact]
    public void Rms_norm_normalises_in_float32_and_scales_after_casting_back()
    {
        using var norm = new RmsNorm("n", 4, 1e-6, dtype: ScalarType.BFloat16);
        Tensor x = tensor(new float[] { 1, 2, 3, 4 }).to(ScalarType.BFloat16);
        Tensor y = norm.Forward(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        double rms = Math.Sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
        TensorAssert.Close(tensor(new float[] { 1, 2, 3, 4 }) / (float)rms, y.to(ScalarType.Float32), 1e-2);
    }

    [Fact]
    public void The_loss_ignores_minus_100_and_predicts_the_next_token()
    {
        Tensor logits = zeros(1, 3, 4);
        logits[0, 0, 2] = tensor(10f);   // predicts token at position 1 = 2: right
        logits[0, 1, 0] = tensor(10f);   // predicts token at position 2 = 3: wrong, but ignored
        Tensor labels = tensor(new long[,] { { 5, 2, -100 } });
        var (sum, count) = CausalLmLoss.SumAndCount(logits, labels);
        Assert.Equal(1, count.item<long>());
        Assert.True(sum.item<float>() < 1e-3);
        Assert.Equal(0f, CausalLmLoss.Mean(logits, full(1, 3, -100L)).item<float>());
    }
}
