using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;

namespace OmniTune.Tests.Models;

/// <summary>Tiny configurations and randomly initialised thinkers for tests that need no checkpoint.</summary>
public static class TinyThinker
{
    public static Qwen25OmniThinkerConfig Config() => TinyQwen25Omni.Config(TinyTokenizerBuilder.Build()).Thinker;

    public static Qwen25OmniThinkerForConditionalGeneration Create(Qwen25OmniThinkerConfig? config = null, int seed = 0)
    {
        TorchSharp.torch.random.manual_seed(seed);
        return new Qwen25OmniThinkerForConditionalGeneration(config ?? Config(), tiedLmHead: false);
    }
}
