using OmniTune.Models.Qwen25Omni.Text;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Training.Generation;

/// <summary>Decoding settings.</summary>
/// <param name="MaxNewTokens">Most tokens to generate.</param>
/// <param name="Temperature">0 for greedy; otherwise softmax temperature.</param>
/// <param name="TopP">Nucleus sampling mass (1 = off).</param>
/// <param name="Seed">Sampling seed.</param>
/// <param name="UseCache">Decode with a KV cache (the prompt runs once); false recomputes the whole sequence each step.</param>
/// <param name="TokenLimit">Only ids below this can be generated (the tokenizer's size: the embedding has more rows than the tokenizer has ids); 0 = no limit.</param>
public sealed record GenerationOptions(int MaxNewTokens = 64, double Temperature = 0, double TopP = 1.0, int Seed = 0, bool UseCache = true, int TokenLimit = 0)
{
    /// <summary>Refuses values outside their ranges, naming the flag.</summary>
    public GenerationOptions Validated()
    {
        if (MaxNewTokens < 1) throw new ArgumentException($"--max-new-tokens {MaxNewTokens}: must be at least 1");
        if (!double.IsFinite(Temperature) || Temperature < 0) throw new ArgumentException($"--temperature {Temperature}: must be ≥ 0 (0 = greedy)");
        if (!double.IsFinite(TopP) || TopP <= 0 || TopP > 1) throw new ArgumentException($"--top-p {TopP}: must be in (0, 1]");
        return this;
    }
}

/// <summary>
/// Text generation from a multimodal prompt. The prompt's TMRoPE positions come from get_rope_index; each generated
/// token is placed at (prompt length + rope delta + k) on all three rows, Hugging Face's decoding rule. With the KV
/// cache the prompt (and its media) runs once and each step processes one token.
/// </summary>
public static class ThinkerGenerator
{
    /// <summary>Generates up to <paramref name="options"/>.MaxNewTokens ids after the prompt, stopping at a stop id.</summary>
    public static List<int> Generate(Qwen25OmniThinkerForConditionalGeneration model, ThinkerInputs prompt, IReadOnlyCollection<int> stopIds, GenerationOptions options)
    {
        options.Validated();
        long maxPositions = model.Config.Text.MaxPositionEmbeddings;
        if (prompt.InputIds.shape[1] + options.MaxNewTokens > maxPositions)
            throw new ArgumentException($"the prompt is {prompt.InputIds.shape[1]} tokens; with --max-new-tokens {options.MaxNewTokens} that passes the model's " +
                                        $"max_position_embeddings {maxPositions}: shorten the prompt or its media, or lower --max-new-tokens");
        using var noGrad = no_grad();
        model.eval();
        var (promptPositions, deltas) = model.PositionIds(prompt);
        if (options.UseCache) return GenerateCached(model, prompt, promptPositions, deltas[0], stopIds, options);
        long promptLength = prompt.InputIds.shape[1];
        var generated = new List<int>();
        var generator = new Generator((ulong)options.Seed);
        Tensor ids = prompt.InputIds;
        Tensor positions = promptPositions;
        for (int k = 0; k < options.MaxNewTokens; k++)
        {
            using var scope = NewDisposeScope();
            Tensor logits = model.Forward(prompt with { InputIds = ids, AttentionMask = null, PositionIds = positions })[0, -1];
            int next = Pick(logits, options, generator);
            if (stopIds.Contains(next)) break;
            generated.Add(next);
            Tensor nextId = tensor(new long[] { next }, device: ids.device).reshape(1, 1);
            Tensor nextPosition = full(3, 1, 1, promptLength + deltas[0] + k, ScalarType.Int64, ids.device);
            ids = cat([ids, nextId], 1).DetachFromDisposeScope();
            positions = cat([positions, nextPosition], 2).DetachFromDisposeScope();
        }
        return generated;
    }

    static List<int> GenerateCached(Qwen25OmniThinkerForConditionalGeneration model, ThinkerInputs prompt, Tensor promptPositions, long delta,
        IReadOnlyCollection<int> stopIds, GenerationOptions options)
    {
        using var cache = new KvCache(model.TextModel.LayerCount);
        var generator = new Generator((ulong)options.Seed);
        var generated = new List<int>();
        long promptLength = prompt.InputIds.shape[1];
        Tensor logits = model.ForwardWithCache(prompt with { AttentionMask = null, PositionIds = promptPositions }, cache)[0, -1];
        for (int k = 0; k < options.MaxNewTokens; k++)
        {
            using var scope = NewDisposeScope();
            int next = Pick(logits, options, generator);
            logits.Dispose();
            if (stopIds.Contains(next)) return generated;
            generated.Add(next);
            if (k + 1 == options.MaxNewTokens) break;
            var step = new ThinkerInputs
            {
                InputIds = tensor(new long[] { next }, device: prompt.InputIds.device).reshape(1, 1),
                PositionIds = full(3, 1, 1, promptLength + delta + k, ScalarType.Int64, prompt.InputIds.device),
            };
            logits = model.ForwardWithCache(step, cache)[0, -1].MoveToOuterDisposeScope();
        }
        return generated;
    }

    static int Pick(Tensor logits, GenerationOptions options, Generator generator)
    {
        Tensor allowed = options.TokenLimit > 0 && options.TokenLimit < logits.shape[0] ? logits.narrow(0, 0, options.TokenLimit) : logits;
        return options.Temperature <= 0 ? (int)allowed.argmax().item<long>() : Sample(allowed, options, generator);
    }

    static int Sample(Tensor logits, GenerationOptions options, Generator generator)
    {
        Tensor probabilities = (logits.to(ScalarType.Float32) / options.Temperature).softmax(-1);
        if (options.TopP < 1.0)
        {
            var (sorted, order) = probabilities.sort(descending: true);
            Tensor cumulative = sorted.cumsum(0);
            Tensor keep = (cumulative - sorted).lt(options.TopP);
            Tensor filtered = zeros_like(probabilities).index_put_(sorted * keep, order);
            probabilities = filtered / filtered.sum();
        }
        return (int)multinomial(probabilities.cpu(), 1, generator: generator).item<long>();
    }
}
