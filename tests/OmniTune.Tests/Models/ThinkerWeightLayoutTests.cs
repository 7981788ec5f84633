using System.Text.Json.Nodes;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class ThinkerWeightLayoutTests
{
    static Qwen25OmniThinkerConfig Config(string json) => Qwen25OmniConfigLoader.Parse("config.json", (JsonObject)JsonNode.Parse(json)!).Config.Thinker;

    [Fact]
    public void The_7B_thinker_has_the_reference_tensor_and_parameter_counts()
    {
        var layout = ThinkerWeightLayout.For(Config(ReferenceConfigs.SevenB()));
        int Count(string prefix) => layout.Count(w => w.Key.StartsWith(prefix, StringComparison.Ordinal));
        long Params(string prefix) => layout.Where(w => w.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(w => w.ElementCount);
        Assert.Equal(518, Count("visual."));
        Assert.Equal(489, Count("audio_tower."));
        Assert.Equal(338, Count("model."));
        Assert.Equal(1346, layout.Count);
        Assert.Equal(7_615_616_512, Params("model.") + Params("lm_head."));
        Assert.Equal(676_550_144, Params("visual."));
        Assert.Equal(639_647_232, Params("audio_tower."));
        Assert.Equal(8_931_813_888, layout.Sum(w => w.ElementCount));
        Assert.Equal(17_863_627_776, layout.Sum(w => w.ElementCount) * 2);   // bf16 bytes = index total_size
    }

    [Fact]
    public void The_3B_thinker_has_the_derived_counts()
    {
        var layout = ThinkerWeightLayout.For(Config(ReferenceConfigs.ThreeB()));
        Assert.Equal(1442, layout.Count);
        Assert.Equal(4_703_464_448, layout.Sum(w => w.ElementCount));
        Assert.Equal(3_085_938_688, ThinkerWeightLayout.For(Config(ReferenceConfigs.ThreeB()), tiedLmHead: true)
            .Where(w => w.Key.StartsWith("model.", StringComparison.Ordinal)).Sum(w => w.ElementCount));
    }

    [Fact]
    public void Reference_shapes_of_the_7B_keys_are_reproduced()
    {
        var shapes = ThinkerWeightLayout.For(Config(ReferenceConfigs.SevenB())).ToDictionary(w => w.Key, w => w.Shape);
        Assert.Equal([152064L, 3584], shapes["model.embed_tokens.weight"]);
        Assert.Equal([512L, 3584], shapes["model.layers.27.self_attn.k_proj.weight"]);
        Assert.Equal([3584L, 18944], shapes["model.layers.0.mlp.down_proj.weight"]);
        Assert.Equal([1280L, 3, 2, 14, 14], shapes["visual.patch_embed.proj.weight"]);
        Assert.Equal([5120L, 5120], shapes["visual.merger.mlp.0.weight"]);
        Assert.Equal([3584L, 5120], shapes["visual.merger.mlp.2.weight"]);
        Assert.Equal([1280L, 128, 3], shapes["audio_tower.conv1.weight"]);
        Assert.Equal([2L, 3584], shapes["audio_tower.audio_bos_eos_token.weight"]);
        Assert.False(shapes.ContainsKey("audio_tower.layers.0.self_attn.k_proj.bias"));
    }

    [Fact]
    public void The_7B_thinker_built_on_the_meta_device_has_exactly_the_checkpoint_keys_and_shapes()
    {
        var config = Config(ReferenceConfigs.SevenB());
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: false, device: new Device(DeviceType.META), dtype: ScalarType.BFloat16);
        var built = model.HuggingFaceParameters().ToDictionary(p => p.Key, p => p.Parameter.shape);
        var expected = ThinkerWeightLayout.For(config).ToDictionary(w => w.Key, w => w.Shape);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), built.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, shape) in expected) Assert.True(shape.SequenceEqual(built[key]), key);
        Assert.Equal(8_931_813_888, built.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void A_tied_head_shares_the_embedding_and_is_not_listed_as_its_own_tensor()
    {
        var config = Config(ReferenceConfigs.ThreeB());
        using var model = new Qwen25OmniThinkerForConditionalGeneration(config, tiedLmHead: true, device: new Device(DeviceType.META));
        Assert.DoesNotContain(model.HuggingFaceParameters(), p => p.Key == "lm_head.weight");
        Assert.Equal(ThinkerWeightLayout.For(config, tiedLmHead: true).Count, model.HuggingFaceParameters().Count());
    }
}
