using OmniTune.Models.Qwen25Omni.Text;
using OmniTune.Tests.Models;
using OmniTune.Tests.Testing;
using OmniTune.Training.Generation;
using static TorchSharp.torch;

namespace OmniTune.Tests.Training;

public sealed class GenerationTests
{
    [Fact]
    public void Cached_decoding_gives_the_same_tokens_and_logits_as_recomputing_the_sequence()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config, seed: 12);
        var sample = MultimodalSample.Build(config, seed: 13);
        int promptLength = (int)sample.Labels[0].ne(-100).nonzero()[0, 0].item<long>();
        var prompt = sample.Inputs with { InputIds = sample.Inputs.InputIds.narrow(1, 0, promptLength), AttentionMask = null };
        var stop = new HashSet<int> { config.EosTokenId };
        var cached = ThinkerGenerator.Generate(model, prompt, stop, new GenerationOptions(MaxNewTokens: 12, UseCache: true));
        var plain = ThinkerGenerator.Generate(model, prompt, stop, new GenerationOptions(MaxNewTokens: 12, UseCache: false));
        Assert.Equal(plain, cached);
        Assert.NotEmpty(cached);

        using var noGrad = no_grad();
        using var cache = new KvCache(config.Text.NumHiddenLayers);
        var (positions, deltas) = model.PositionIds(prompt);
        Tensor first = model.ForwardWithCache(prompt with { PositionIds = positions }, cache);
        TensorAssert.Close(model.Forward(prompt with { PositionIds = positions }), first, 1e-5);
        Tensor next = model.ForwardWithCache(new OmniTune.Models.Qwen25Omni.Thinker.ThinkerInputs
        {
            InputIds = tensor(new long[] { cached[0] }).reshape(1, 1),
            PositionIds = full(3, 1, 1, promptLength + deltas[0], ScalarType.Int64),
        }, cache);
        Tensor ids = cat([prompt.InputIds, tensor(new long[] { cached[0] }).reshape(1, 1)], 1);
        Tensor allPositions = cat([positions, full(3, 1, 1, promptLength + deltas[0], ScalarType.Int64)], 2);
        Tensor full_ = model.Forward(prompt with { InputIds = ids, PositionIds = allPositions });
        TensorAssert.Close(full_[0, -1], next[0, -1], 1e-5);
    }

    [Fact]
    public void Sampling_is_reproducible_with_a_seed()
    {
        var config = TinyThinker.Config();
        using var model = TinyThinker.Create(config, seed: 14);
        var prompt = new OmniTune.Models.Qwen25Omni.Thinker.ThinkerInputs { InputIds = tensor(new long[] { config.BosTokenId, 70, 71, 72 }).reshape(1, 4) };
        var options = new GenerationOptions(MaxNewTokens: 8, Temperature: 1.0, TopP: 0.9, Seed: 3);
        Assert.Equal(ThinkerGenerator.Generate(model, prompt, [], options), ThinkerGenerator.Generate(model, prompt, [], options));
    }

    [Theory]
    [InlineData(-3, 0.0, 1.0, "--max-new-tokens -3: must be at least 1")]
    [InlineData(0, 0.0, 1.0, "--max-new-tokens 0: must be at least 1")]
    [InlineData(8, -1.0, 1.0, "--temperature -1: must be ≥ 0")]
    [InlineData(8, double.NaN, 1.0, "--temperature NaN: must be ≥ 0")]
    [InlineData(8, 0.0, 2.0, "--top-p 2: must be in (0, 1]")]
    [InlineData(8, 0.0, 0.0, "--top-p 0: must be in (0, 1]")]
    public void Generation_options_out_of_range_are_refused_naming_the_flag(int maxNewTokens, double temperature, double topP, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => new GenerationOptions(maxNewTokens, temperature, topP).Validated());
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_prompt_that_with_the_new_tokens_passes_max_position_embeddings_is_refused()
    {
        var config = TinyThinker.Config();
        config = config with { Text = config.Text with { MaxPositionEmbeddings = 10 } };
        using var model = TinyThinker.Create(config, seed: 14);
        var prompt = new OmniTune.Models.Qwen25Omni.Thinker.ThinkerInputs { InputIds = tensor(new long[] { config.BosTokenId, 70, 71, 72, 73, 74, 75, 76 }).reshape(1, 8) };
        var error = Assert.Throws<ArgumentException>(() => ThinkerGenerator.Generate(model, prompt, [], new GenerationOptions(MaxNewTokens: 4)));
        Assert.Contains("the prompt is 8 tokens; with --max-new-tokens 4 that passes the model's max_position_embeddings 10", error.Message);
        Assert.Equal(2, ThinkerGenerator.Generate(model, prompt, [], new GenerationOptions(MaxNewTokens: 2)).Count);
    }
}
