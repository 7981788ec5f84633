using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Models;

public sealed class TinyModelAndLoaderTests
{
    static string Sha(string path) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));

    [Fact]
    public void Init_tiny_writes_a_complete_folder_with_every_thinker_tensor_under_real_key_names()
    {
        using var dir = new TempFolder();
        var config = TinyQwen25Omni.Write(dir.Path, seed: 1);
        foreach (string f in new[] { "config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json" })
            Assert.True(File.Exists(Path.Combine(dir.Path, f)), f);
        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        var expected = ThinkerWeightLayout.For(config.Thinker).Select(w => "thinker." + w.Key).Order(StringComparer.Ordinal);
        Assert.Equal(expected, checkpoint.Keys);
        Assert.Contains("thinker.visual.merger.mlp.2.weight", checkpoint.Keys);
        Assert.Contains("thinker.audio_tower.layers.1.fc2.bias", checkpoint.Keys);
        var (reloaded, report) = Qwen25OmniConfigLoader.Load(dir.Path);
        Assert.Null(report.Describe());
        Assert.Equal(config.Thinker.Text.VocabSize, reloaded.Thinker.Text.VocabSize);
    }

    [Fact]
    public void The_tiny_tokenizer_carries_the_omni_special_tokens_at_the_ids_in_the_config()
    {
        using var dir = new TempFolder();
        var config = TinyQwen25Omni.Write(dir.Path);
        var vocab = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "vocab.json"))).RootElement;
        var added = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "added_tokens.json"))).RootElement;
        int regular = vocab.EnumerateObject().Count();
        Assert.Equal(regular, added.GetProperty("<|endoftext|>").GetInt32());
        Assert.Equal(config.Thinker.ImageTokenId, added.GetProperty("<|IMAGE|>").GetInt32());
        Assert.Equal(config.Thinker.AudioStartTokenId, added.GetProperty("<|audio_bos|>").GetInt32());
        Assert.Equal(config.Thinker.EosTokenId, added.GetProperty("<|im_end|>").GetInt32());
        Assert.Equal(0, vocab.GetProperty("!").GetInt32());
        Assert.Equal(config.Thinker.UserTokenId, vocab.GetProperty("user").GetInt32());
        Assert.True(config.Thinker.Text.VocabSize >= regular + OmniSpecialTokens.InIdOrder.Count);
        string[] merges = File.ReadAllLines(Path.Combine(dir.Path, "merges.txt"));
        Assert.Equal("#version: 0.2", merges[0]);
        foreach (var (line, id) in merges.Skip(1).Select((l, i) => (l, 256 + i)))
            Assert.Equal(id, vocab.GetProperty(line.Replace(" ", "", StringComparison.Ordinal)).GetInt32());
    }

    [Fact]
    public void The_same_seed_gives_identical_files_and_another_seed_does_not()
    {
        using var a = new TempFolder();
        using var b = new TempFolder();
        using var c = new TempFolder();
        TinyQwen25Omni.Write(a.Path, seed: 5);
        TinyQwen25Omni.Write(b.Path, seed: 5);
        TinyQwen25Omni.Write(c.Path, seed: 6);
        Assert.Equal(Sha(Path.Combine(a.Path, "model.safetensors")), Sha(Path.Combine(b.Path, "model.safetensors")));
        Assert.NotEqual(Sha(Path.Combine(a.Path, "model.safetensors")), Sha(Path.Combine(c.Path, "model.safetensors")));
    }

    [Fact]
    public void Loading_the_tiny_model_and_running_forward_twice_is_deterministic()
    {
        using var dir = new TempFolder();
        TinyQwen25Omni.Write(dir.Path, seed: 2);
        var (m1, config, report) = ThinkerCheckpointLoader.Load(dir.Path);
        var (m2, _, _) = ThinkerCheckpointLoader.Load(dir.Path);
        using (m1)
        using (m2)
        using (no_grad())
        {
            Assert.Equal("thinker.", report.KeyPrefix);
            Assert.Equal(ThinkerWeightLayout.For(config.Thinker).Count, report.Loaded);
            Assert.Empty(report.NotBuiltKeys);
            Tensor ids = randint(0, config.Thinker.Text.VocabSize, [2, 7], generator: new Generator(3));
            Tensor l1 = m1.Forward(ids);
            Assert.Equal([2L, 7, config.Thinker.Text.VocabSize], l1.shape);
            TensorAssert.BitEqual(l1, m1.Forward(ids));
            TensorAssert.BitEqual(l1, m2.Forward(ids));
        }
    }

    static void RewriteWeights(string folder, Func<IEnumerable<(string Key, Tensor Value)>, IEnumerable<(string Key, Tensor Value)>> edit)
    {
        List<(string, Tensor)> tensors;
        using (var checkpoint = SafetensorsCheckpoint.Open(folder))
            tensors = checkpoint.Keys.Select(k => (k, checkpoint.Read(k))).ToList();
        var edited = edit(tensors).Select(t => TensorToWrite.Of(t.Key, t.Value)).ToList();
        SafetensorsWriter.WriteFile(Path.Combine(folder, "model.safetensors"), edited);
    }

    [Fact]
    public void Missing_unexpected_and_misshapen_keys_are_all_listed_before_any_weight_is_copied()
    {
        using var dir = new TempFolder();
        TinyQwen25Omni.Write(dir.Path);
        RewriteWeights(dir.Path, ts => ts
            .Where(t => t.Key != "thinker.model.layers.1.mlp.up_proj.weight")
            .Select(t => t.Key == "thinker.model.norm.weight" ? (t.Key, ones(3)) : t)
            .Append(("thinker.model.layers.0.self_attn.rotary.inv_freq", ones(2))));
        var error = Assert.Throws<CheckpointMismatchException>(() => ThinkerCheckpointLoader.Load(dir.Path));
        Assert.Contains("missing keys (1)", error.Message);
        Assert.Contains("thinker.model.layers.1.mlp.up_proj.weight", error.Message);
        Assert.Contains("unexpected keys (1)", error.Message);
        Assert.Contains("thinker.model.layers.0.self_attn.rotary.inv_freq", error.Message);
        Assert.Contains("thinker.model.norm.weight: checkpoint [3], model [64]", error.Message);
        Assert.StartsWith(dir.Path, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_thinker_saved_without_prefix_with_speech_weights_and_without_lm_head_loads_tied()
    {
        using var dir = new TempFolder();
        TinyQwen25Omni.Write(dir.Path);
        RewriteWeights(dir.Path, ts => ts
            .Where(t => t.Key != "thinker.lm_head.weight")
            .Select(t => (t.Key["thinker.".Length..], t.Value))
            .Append(("talker.codec_head.weight", ones(2, 2)))
            .Append(("token2wav.code2wav_dit_model.x", ones(1))));
        var (model, _, report) = ThinkerCheckpointLoader.Load(dir.Path);
        using (model)
        {
            Assert.Equal("", report.KeyPrefix);
            Assert.True(report.TiedLmHead);
            Assert.Equal(2, report.SkippedSpeechKeys);
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            Assert.True(parameters["lm_head.weight"].data<float>().SequenceEqual(parameters["model.embed_tokens.weight"].data<float>()));
        }
    }

    [Fact]
    public void A_bf16_tiny_checkpoint_loads_into_a_float32_model_exactly()
    {
        using var dir = new TempFolder();
        TinyQwen25Omni.Write(dir.Path, seed: 4, dtype: ScalarType.BFloat16);
        var (model, _, _) = ThinkerCheckpointLoader.Load(dir.Path);
        using (model)
        using (var checkpoint = SafetensorsCheckpoint.Open(dir.Path))
        {
            Tensor stored = checkpoint.Read("thinker.model.layers.0.self_attn.q_proj.weight");
            Assert.Equal(ScalarType.BFloat16, stored.dtype);
            var loaded = model.named_parameters().First(p => p.name == "model.layers.0.self_attn.q_proj.weight").parameter;
            TensorAssert.BitEqual(stored.to(ScalarType.Float32), loaded.detach());
        }
    }
}
