using System.Text.Json.Nodes;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Models;

public sealed class Qwen25OmniConfigTests
{
    static (Qwen25OmniConfig Config, OmniTune.Core.Json.ConfigKeyReport Report) Parse(string json) =>
        Qwen25OmniConfigLoader.Parse("config.json", (JsonObject)JsonNode.Parse(json)!);

    [Fact]
    public void The_7B_config_parses_into_typed_values_for_all_three_towers()
    {
        var (config, report) = Parse(ReferenceConfigs.SevenB());
        var t = config.Thinker;
        Assert.Equal((152064, 3584, 18944, 28, 28, 4, 128), (t.Text.VocabSize, t.Text.HiddenSize, t.Text.IntermediateSize, t.Text.NumHiddenLayers, t.Text.NumAttentionHeads, t.Text.NumKeyValueHeads, t.Text.HeadDim));
        Assert.Equal([16, 24, 24], t.Text.RopeScaling.MropeSection);
        Assert.Equal(1e6, t.Text.RopeTheta);
        Assert.Equal(1e-6, t.Text.RmsNormEps);
        Assert.False(t.Text.TieWordEmbeddings);
        Assert.Equal((32, 1280, 3420, 16, 80, 2, 112, 3584), (t.Vision.Depth, t.Vision.HiddenSize, t.Vision.IntermediateSize, t.Vision.NumHeads, t.Vision.HeadDim, t.Vision.SpatialMergeSize, t.Vision.WindowSize, t.Vision.OutHiddenSize));
        Assert.Equal([7, 15, 23, 31], t.Vision.FullAttBlockIndexes);
        Assert.Equal(1176, t.Vision.PatchDim);
        Assert.Equal((128, 1280, 32, 20, 5120, 100, 1500, 3584), (t.Audio.NumMelBins, t.Audio.DModel, t.Audio.EncoderLayers, t.Audio.EncoderAttentionHeads, t.Audio.EncoderFfnDim, t.Audio.NWindow, t.Audio.MaxSourcePositions, t.Audio.OutputDim));
        Assert.Equal((151646, 151655, 151656, 151647, 151648, 151652, 151653, 151654, 872), (t.AudioTokenId, t.ImageTokenId, t.VideoTokenId, t.AudioStartTokenId, t.AudioEndTokenId, t.VisionStartTokenId, t.VisionEndTokenId, t.VisionTokenId, t.UserTokenId));
        Assert.Equal((151644, 151645, 151643, 25, 2), (t.BosTokenId, t.EosTokenId, t.PadTokenId, t.PositionIdPerSeconds, t.SecondsPerChunk));
        Assert.Null(report.Describe());
    }

    [Fact]
    public void The_3B_config_parses_with_its_own_text_dimensions()
    {
        var t = Parse(ReferenceConfigs.ThreeB()).Config.Thinker;
        Assert.Equal((151936, 2048, 11008, 36, 16, 2, 128), (t.Text.VocabSize, t.Text.HiddenSize, t.Text.IntermediateSize, t.Text.NumHiddenLayers, t.Text.NumAttentionHeads, t.Text.NumKeyValueHeads, t.Text.HeadDim));
        Assert.Equal(2048, t.Vision.OutHiddenSize);
        Assert.Equal(2048, t.Audio.OutputDim);
    }

    [Fact]
    public void Unknown_keys_are_kept_and_reported_once_with_their_path()
    {
        var (config, report) = Parse(ReferenceConfigs.SevenB("\"brand_new_option\": 3,"));
        Assert.Equal(["thinker_config.brand_new_option"], report.UnknownKeys);
        Assert.Contains("brand_new_option", report.Describe());
        Assert.Contains("\"brand_new_option\": 3", Qwen25OmniConfigLoader.ToJson(config));
    }

    [Fact]
    public void Transformers_v5_rope_parameters_are_accepted()
    {
        var root = (JsonObject)JsonNode.Parse(ReferenceConfigs.SevenB())!;
        var text = (JsonObject)root["thinker_config"]!["text_config"]!;
        text.Remove("rope_scaling");
        text.Remove("rope_theta");
        text["rope_parameters"] = JsonNode.Parse("""{"rope_type":"default","rope_theta":500000.0,"mrope_section":[8,28,28]}""");
        var t = Qwen25OmniConfigLoader.Parse("config.json", root).Config.Thinker.Text;
        Assert.Equal(500000.0, t.RopeTheta);
        Assert.Equal([8, 28, 28], t.RopeScaling.MropeSection);
    }

    [Fact]
    public void A_thinker_saved_alone_and_vision_alias_keys_are_accepted()
    {
        var root = (JsonObject)JsonNode.Parse(ReferenceConfigs.SevenB())!;
        var thinker = (JsonObject)root["thinker_config"]!.DeepClone();
        var vision = (JsonObject)thinker["vision_config"]!;
        vision.Remove("hidden_size");
        vision.Remove("patch_size");
        var t = Qwen25OmniConfigLoader.Parse("config.json", thinker).Config.Thinker;
        Assert.Equal(1280, t.Vision.HiddenSize);
        Assert.Equal(14, t.Vision.PatchSize);
    }

    [Fact]
    public void An_inconsistent_mrope_section_is_an_error_naming_the_key()
    {
        var error = Assert.Throws<InvalidDataException>(() => Parse(ReferenceConfigs.SevenB().Replace("[16, 24, 24]", "[16, 24, 20]", StringComparison.Ordinal)));
        Assert.Contains("mrope_section", error.Message);
        Assert.StartsWith("config.json:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_config_that_is_not_qwen25_omni_is_rejected()
    {
        var error = Assert.Throws<InvalidDataException>(() => Parse("""{"model_type":"llama"}"""));
        Assert.Contains("not a Qwen2.5-Omni config", error.Message);
    }

    [Fact]
    public void Saving_and_loading_a_config_round_trips()
    {
        using var dir = new TempFolder();
        var (config, _) = Parse(ReferenceConfigs.ThreeB());
        Qwen25OmniConfigLoader.Save(config, dir.Path);
        var (again, report) = Qwen25OmniConfigLoader.Load(dir.Path);
        Assert.Equal(Qwen25OmniConfigLoader.ToJson(config), Qwen25OmniConfigLoader.ToJson(again));
        Assert.Null(report.Describe());
    }
}
