using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Core;

public sealed class SafetensorsRoundTripTests
{
    static Dictionary<string, Tensor> Sample()
    {
        var g = new Generator(7);
        return new Dictionary<string, Tensor>
        {
            ["a.f32"] = randn([3, 5], generator: g),
            ["b.bf16"] = randn([4, 6], generator: g).to(ScalarType.BFloat16),
            ["c.f16"] = randn([2, 3, 4], generator: g).to(ScalarType.Float16),
            ["d.i64"] = randint(-1000, 1000, [7], generator: g),
            ["e.scalar"] = tensor(3.5f),
            ["f.empty"] = zeros(0, 4),
        };
    }

    [Fact]
    public void A_file_written_and_read_back_is_bit_exact_for_every_dtype()
    {
        using var dir = new TempFolder();
        var tensors = Sample();
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path, tensors.Select(kv => TensorToWrite.Of(kv.Key, kv.Value)).ToList(), new Dictionary<string, string> { ["format"] = "pt" });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(tensors.Keys, file.Tensors.Keys);
        foreach (var (name, t) in tensors) TensorAssert.BitEqual(t, file.Read(name));
    }

    [Fact]
    public void The_header_is_padded_so_data_starts_on_an_eight_byte_boundary()
    {
        using var dir = new TempFolder();
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path, [TensorToWrite.Of("w", ones(3))]);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(0UL, (8 + BitConverter.ToUInt64(bytes, 0)) % 8);
    }

    [Fact]
    public void A_sharded_checkpoint_splits_by_size_writes_an_index_and_reads_back_bit_exact()
    {
        using var dir = new TempFolder();
        var g = new Generator(3);
        var tensors = Enumerable.Range(0, 6).ToDictionary(i => $"layer.{i}.weight", _ => randn([16, 16], generator: g).to(ScalarType.BFloat16));
        var written = SafetensorsWriter.WriteSharded(dir.Path, tensors.Select(kv => TensorToWrite.Of(kv.Key, kv.Value)).ToList(), maxShardBytes: 1100);
        Assert.Contains(written, p => p.EndsWith(SafetensorsCheckpoint.IndexFileName, StringComparison.Ordinal));
        Assert.Equal(3, written.Count(p => p.EndsWith(".safetensors", StringComparison.Ordinal)));   // 512 B each, two per shard
        Assert.True(File.Exists(Path.Combine(dir.Path, "model-00003-of-00003.safetensors")));
        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal(3, checkpoint.Files.Count);
        Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), checkpoint.Keys);
        foreach (var (name, t) in tensors) TensorAssert.BitEqual(t, checkpoint.Read(name));
    }

    [Fact]
    public void A_checkpoint_that_fits_one_shard_is_a_single_model_safetensors_without_index()
    {
        using var dir = new TempFolder();
        SafetensorsWriter.WriteSharded(dir.Path, [TensorToWrite.Of("w", ones(4))], maxShardBytes: 1 << 20);
        Assert.True(File.Exists(Path.Combine(dir.Path, SafetensorsCheckpoint.SingleFileName)));
        Assert.False(File.Exists(Path.Combine(dir.Path, SafetensorsCheckpoint.IndexFileName)));
    }

    [Fact]
    public void Row_and_column_slices_read_only_the_requested_part()
    {
        using var dir = new TempFolder();
        var t = arange(0, 4 * 6 * 2, dtype: ScalarType.Float32).reshape(4, 6, 2).to(ScalarType.BFloat16);
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path, [TensorToWrite.Of("t", t)]);
        using var file = SafetensorsFile.Open(path);
        TensorAssert.BitEqual(t.narrow(0, 1, 2).contiguous(), file.ReadSlice("t", 0, 1, 2));
        TensorAssert.BitEqual(t.narrow(1, 2, 3).contiguous(), file.ReadSlice("t", 1, 2, 3));
        TensorAssert.BitEqual(t.narrow(2, 1, 1).contiguous(), file.ReadSlice("t", 2, 1, 1));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => file.ReadSlice("t", 1, 5, 2));
        Assert.Contains("outside tensor 't'", error.Message);
    }

    [Fact]
    public void A_producer_whose_tensor_differs_from_its_declaration_fails_and_leaves_no_file()
    {
        using var dir = new TempFolder();
        string path = dir.File("x.safetensors");
        var bad = new TensorToWrite("w", ScalarType.Float32, [2, 2], () => ones(3));
        var error = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.WriteFile(path, [bad]));
        Assert.Contains("declared", error.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
