using OmniTune.Checkpoints.Conversion;
using OmniTune.Core.Safetensors;
using OmniTune.Models.Qwen25Omni.Config;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Checkpoints;

/// <summary>A tiny model wide enough for TP 4 (8/4 text heads, 4 ViT and audio heads) with uneven layer counts.</summary>
public sealed class ConversionFixture : IDisposable
{
    readonly TempFolder folder = new();

    public ConversionFixture()
    {
        var tokenizer = TinyTokenizerBuilder.Build();
        var baseConfig = TinyQwen25Omni.Config(tokenizer);
        var t = baseConfig.Thinker;
        Config = baseConfig with
        {
            Thinker = t with
            {
                Text = t.Text with { NumAttentionHeads = 8, NumKeyValueHeads = 4, NumHiddenLayers = 4, RopeScaling = new RopeScalingConfig { MropeSection = [1, 1, 2] } },
                Vision = t.Vision with { NumHeads = 4, Depth = 3, FullAttBlockIndexes = [2] },
                Audio = t.Audio with { EncoderAttentionHeads = 4, EncoderLayers = 3 },
            },
            TorchDtype = "bfloat16",
        };
        Hf = Path.Combine(folder.Path, "hf");
        Directory.CreateDirectory(Hf);
        Qwen25OmniConfigLoader.Save(Config, Hf);
        TinyTokenizerBuilder.Write(tokenizer, Hf);
        TinyQwen25Omni.WriteRandomWeights(Path.Combine(Hf, "model.safetensors"), Config.Thinker, seed: 3, ScalarType.BFloat16);
    }

    public Qwen25OmniConfig Config { get; }

    public string Hf { get; }

    public string NewFolder(string name) => Path.Combine(folder.Path, name + "-" + Guid.NewGuid().ToString("N")[..6]);

    public void Dispose() => folder.Dispose();
}

public sealed class ConversionTests : IClassFixture<ConversionFixture>
{
    readonly ConversionFixture fixture;

    public ConversionTests(ConversionFixture fixture) => this.fixture = fixture;

    static void AssertSameWeights(string expectedFolder, string actualFolder)
    {
        using var a = SafetensorsCheckpoint.Open(expectedFolder);
        using var b = SafetensorsCheckpoint.Open(actualFolder);
        Assert.Equal(a.Keys, b.Keys);
        foreach (string key in a.Keys)
        {
            using Tensor x = a.Read(key), y = b.Read(key);
            Assert.Equal(x.dtype, y.dtype);
            Assert.True(x.bytes.SequenceEqual(y.bytes), $"{key} differs");
        }
    }

    [Fact]
    public void The_map_covers_every_thinker_tensor_exactly_once()
    {
        foreach (bool tied in new[] { false, true })
        {
            var sources = MmTensorMap.For(fixture.Config.Thinker, tied).SelectMany(t => t.Sources).ToList();
            var keys = ThinkerWeightLayout.For(fixture.Config.Thinker, tied).Select(w => w.Key).ToList();
            Assert.Equal(keys.Order(StringComparer.Ordinal), sources.Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public void Merge_and_split_operators_match_mindspeeds_unit_tests()
    {
        Assert.Equal([1f, 4, 7, 2, 5, 8, 3, 6, 9], TensorOps.Interleave(tensor(new float[] { 1, 2, 3 }), tensor(new float[] { 4, 5, 6 }), tensor(new float[] { 7, 8, 9 }), 3).data<float>().ToArray());
        Tensor glu = arange(8).to(ScalarType.Float32);
        Assert.Equal([0f, 1, 4, 5], TensorOps.SplitPart(glu, SplitKind.Glu, 0, 2).data<float>().ToArray());
        Assert.Equal([2f, 3, 6, 7], TensorOps.SplitPart(glu, SplitKind.Glu, 1, 2).data<float>().ToArray());
        Assert.Equal(glu.data<float>().ToArray(), TensorOps.MergeParts([TensorOps.SplitPart(glu, SplitKind.Glu, 0, 2), TensorOps.SplitPart(glu, SplitKind.Glu, 1, 2)], SplitKind.Glu).data<float>().ToArray());
        Assert.Equal([4L, 3], TensorOps.SplitPart(zeros(4, 6), SplitKind.Column, 1, 2).shape);
        Assert.Equal([2L, 6], TensorOps.SplitPart(zeros(4, 6), SplitKind.Row, 1, 2).shape);
    }

    public static TheoryData<string, string, string, int, int, int, MmFileFormat> Layouts => new()
    {
        { "[[4]]", "[[3]]", "[[3]]", 1, 0, 0, MmFileFormat.PyTorch },
        { "[[1,3]]", "[[3,0]]", "[[3,0]]", 2, 0, 0, MmFileFormat.PyTorch },
        { "[[0,4]]", "[[3,0]]", "[[0,3]]", 4, 2, 1, MmFileFormat.PyTorch },
        { "[[1,1],[2,0]]", "[[2,1],[0,0]]", "[[1,0],[1,1]]", 2, 1, 2, MmFileFormat.PyTorch },
        { "[[1,1],[1,1]]", "[[3,0]]", "[[3,0]]", 2, 0, 0, MmFileFormat.PyTorch },   // encoders repeated over the chunks, as MindSpeed's shorter lists make them
        { "[[2,2]]", "[[3]]", "[[3]]", 1, 0, 0, MmFileFormat.PyTorch },
        { "[[4]]", "[[3]]", "[[3]]", 1, 0, 0, MmFileFormat.Safetensors },
        { "[[0,4]]", "[[3,0]]", "[[0,3]]", 4, 2, 1, MmFileFormat.Safetensors },
        { "[[1,1],[2,0]]", "[[2,1],[0,0]]", "[[1,0],[1,1]]", 2, 1, 2, MmFileFormat.Safetensors },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Hf_to_mm_to_hf_is_bit_exact(string llm, string vit, string audio, int tp, int vitTp, int audioTp, MmFileFormat format)
    {
        var layout = new ParallelLayout(ParallelLayout.ParseLayers(llm, "llm"), ParallelLayout.ParseLayers(vit, "vit"), ParallelLayout.ParseLayers(audio, "audio"), tp, vitTp, audioTp);
        string mm = fixture.NewFolder("mm"), back = fixture.NewFolder("back");
        using (var source = new HfTensorSource(fixture.Hf)) CheckpointConverter.ToMm(source, layout, mm, format: format);
        Assert.Equal("release", File.ReadAllText(Path.Combine(mm, MmCheckpoint.Tracker)));
        Assert.Equal(layout.MaxTp * layout.PipelineSize, Directory.GetDirectories(Path.Combine(mm, "release")).Length);
        using (var checkpoint = new MmCheckpoint(mm))
        {
            Assert.Equal(format, checkpoint.Format);
            Assert.Equal(layout.Normalized().ToJson(), checkpoint.Layout.Normalized().ToJson());   // read from the metadata, or inferred from a .pt folder
            CheckpointConverter.ToHf(checkpoint, back, fixture.Hf);
        }
        AssertSameWeights(fixture.Hf, back);
        Assert.True(File.Exists(Path.Combine(back, "vocab.json")));
    }

    [Fact]
    public void Mm_layouts_hold_megatron_names_local_layer_indices_and_tp_shards()
    {
        var layout = new ParallelLayout([[1, 3]], [[3, 0]], [[3, 0]], TpSize: 2);
        string mm = fixture.NewFolder("mm");
        using (var source = new HfTensorSource(fixture.Hf)) CheckpointConverter.ToMm(source, layout, mm);
        using var stage0 = MmRankFile.Open(Path.Combine(mm, "release", "mp_rank_00_000", MmCheckpoint.PtFileName));
        using var stage1 = MmRankFile.Open(Path.Combine(mm, "release", "mp_rank_01_001", MmCheckpoint.PtFileName));
        Assert.Equal(MmFileFormat.PyTorch, stage0.Format);
        Assert.Contains("text_decoder.embedding.word_embeddings.weight", stage0.Names);
        Assert.Contains("image_encoder.encoder.blocks.layers.2.self_attention.linear_qkv.weight", stage0.Names);
        Assert.Contains("audio_encoder.encoder.proj.weight", stage0.Names);
        Assert.DoesNotContain("text_decoder.decoder.layers.1.input_layernorm.weight", stage0.Names);
        Assert.Contains("text_decoder.decoder.layers.2.mlp.linear_fc1.weight", stage1.Names);   // global layer 3 → local 2
        Assert.DoesNotContain("text_decoder.decoder.layers.3.mlp.linear_fc1.weight", stage1.Names);
        Assert.Contains("text_decoder.output_layer.weight", stage1.Names);
        var t = fixture.Config.Thinker.Text;
        Assert.Equal([(long)(t.NumAttentionHeads + 2 * t.NumKeyValueHeads) * t.HeadDim / 2, t.HiddenSize], stage1.Info("text_decoder.decoder.layers.0.self_attention.linear_qkv.weight").Shape);
        Assert.Equal([(long)t.VocabSize / 2, t.HiddenSize], stage1.Info("text_decoder.output_layer.weight").Shape);
    }

    [Fact]
    public void Resharding_mm_to_mm_then_to_hf_is_bit_exact()
    {
        string first = fixture.NewFolder("mm1"), second = fixture.NewFolder("mm2"), back = fixture.NewFolder("back");
        using (var source = new HfTensorSource(fixture.Hf)) CheckpointConverter.ToMm(source, new ParallelLayout([[1, 3]], [[3, 0]], [[3, 0]], 2), first);
        using (var mm = new MmCheckpoint(first)) CheckpointConverter.ToMm(mm, new ParallelLayout([[2, 1, 1]], [[3, 0, 0]], [[1, 1, 1]], 4, 2, 4), second);
        using (var mm = new MmCheckpoint(second)) CheckpointConverter.ToHf(mm, back, fixture.Hf);
        AssertSameWeights(fixture.Hf, back);
    }

    [Fact]
    public void Bad_layouts_fail_before_anything_is_written()
    {
        string mm = fixture.NewFolder("bad");
        using var source = new HfTensorSource(fixture.Hf);
        Assert.Contains("sums to 5", Assert.Throws<ArgumentException>(() => CheckpointConverter.ToMm(source, new ParallelLayout([[2, 3]], [[3, 0]], [[3, 0]]), mm)).Message);
        Assert.Contains("does not divide the 4 key/value heads", Assert.Throws<ArgumentException>(() => CheckpointConverter.ToMm(source, new ParallelLayout([[4]], [[3]], [[3]], 8), mm)).Message);
        Assert.Contains("must have 2 stages", Assert.Throws<ArgumentException>(() => CheckpointConverter.ToMm(source, new ParallelLayout([[2, 2], [0]], [[3, 0]], [[3, 0]]), mm)).Message);
        Assert.False(Directory.Exists(mm));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(mm)!, Path.GetFileName(mm) + "*"));
    }

    [Fact]
    public void Mm_to_hf_with_the_original_mirrors_its_shards_index_names_and_other_files()
    {
        // An original as Hugging Face publishes it: several shards with an index, talker weights, generation config,
        // chat template and processor files beside the config.
        string original = fixture.NewFolder("original"), mm = fixture.NewFolder("mm-mirror"), back = fixture.NewFolder("back-mirror");
        Directory.CreateDirectory(original);
        using (var source = SafetensorsCheckpoint.Open(fixture.Hf))
        {
            var tensors = source.Keys.Select(k => new TensorToWrite(k, source.Info(k).DType, source.Info(k).Shape, () => source.Read(k)))
                .Append(TensorToWrite.Of("talker.codec_head.weight", ones(4, 8, dtype: ScalarType.BFloat16))).ToList();
            SafetensorsWriter.WriteSharded(original, tensors, maxShardBytes: 150_000);
        }
        foreach (string f in Directory.GetFiles(fixture.Hf).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal))) File.Copy(f, Path.Combine(original, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(original, "generation_config.json"), """{"do_sample": true}""");
        File.WriteAllText(Path.Combine(original, "chat_template.json"), """{"chat_template": "{{ messages }}"}""");
        File.WriteAllText(Path.Combine(original, "video_preprocessor_config.json"), "{}");
        using (var source = new HfTensorSource(original)) CheckpointConverter.ToMm(source, new ParallelLayout([[2, 2]], [[3, 0]], [[3, 0]], TpSize: 2), mm);
        using (var checkpoint = new MmCheckpoint(mm)) CheckpointConverter.ToHf(checkpoint, back, original);

        string[] Names(string folder) => Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.Equal(Names(original), Names(back));
        Assert.True(Names(original).Count(n => n.EndsWith(".safetensors", StringComparison.Ordinal)) > 2, "the original should be sharded for this test");
        using var a = SafetensorsCheckpoint.Open(original);
        using var b = SafetensorsCheckpoint.Open(back);
        Assert.Equal(a.Keys, b.Keys);
        foreach (string key in a.Keys)
        {
            Assert.Equal(a.FileNameOf(key), b.FileNameOf(key));
            using Tensor x = a.Read(key), y = b.Read(key);
            Assert.True(x.shape.SequenceEqual(y.shape) && x.eq(y).all().item<bool>(), $"{key} differs");
        }
        Assert.Equal(File.ReadAllText(Path.Combine(original, "chat_template.json")), File.ReadAllText(Path.Combine(back, "chat_template.json")));
    }

    [Fact]
    public void A_shard_tensor_of_the_wrong_shape_is_named_with_its_file_key_and_expected_shape()
    {
        string mm = fixture.NewFolder("mm-transposed"), back = fixture.NewFolder("back");
        using (var source = new HfTensorSource(fixture.Hf)) CheckpointConverter.ToMm(source, new ParallelLayout([[1, 3]], [[3, 0]], [[3, 0]], TpSize: 2), mm, format: MmFileFormat.Safetensors);
        string shard = Directory.GetFiles(mm, "*.safetensors", SearchOption.AllDirectories).Order(StringComparer.Ordinal).First();
        const string key = "text_decoder.decoder.layers.0.mlp.linear_fc2.weight";
        long[] shape;
        using (var original = SafetensorsFile.Open(shard))
        {
            shape = original.Info(key).Shape;
            var tensors = original.Tensors.Keys.Select(n => n == key
                ? new TensorToWrite(n, original.Info(n).DType, [shape[1], shape[0]], () => original.Read(n).t().contiguous())
                : new TensorToWrite(n, original.Info(n).DType, original.Info(n).Shape, () => original.Read(n))).ToList();
            SafetensorsWriter.WriteFile(shard + ".new", tensors, original.Metadata);
        }
        File.Move(shard + ".new", shard, overwrite: true);
        using var checkpoint = new MmCheckpoint(mm);
        var error = Assert.Throws<InvalidDataException>(() => CheckpointConverter.ToHf(checkpoint, back, fixture.Hf));
        Assert.Contains(shard, error.Message);
        Assert.Contains($"'{key}' has shape [{shape[1]}, {shape[0]}], expected [{shape[0]}, {shape[1]}]", error.Message);
        Assert.False(Directory.Exists(back));
    }
}
