using System.Text;
using OmniTune.Core.Safetensors;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Core;

public sealed class SafetensorsBadInputTests
{
    static byte[] FileWith(string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. new byte[dataBytes]];
    }

    static string OpenFails(byte[] content)
    {
        using var dir = new TempFolder();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, content);
        var error = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Equal(path, error.FilePath);
        Assert.StartsWith(path + ": ", error.Message, StringComparison.Ordinal);
        return error.Problem;
    }

    [Fact]
    public void A_file_shorter_than_the_length_prefix_is_reported_as_truncated() =>
        Assert.Contains("truncated", OpenFails([1, 2, 3]));

    [Fact]
    public void A_header_length_past_the_end_of_the_file_is_reported() =>
        Assert.Contains("runs past the end", OpenFails([.. BitConverter.GetBytes(1000UL), .. "{}"u8.ToArray()]));

    [Fact]
    public void An_invalid_json_header_is_reported() =>
        Assert.Contains("invalid JSON header", OpenFails(FileWith("{\"a\": [", 0)));

    [Fact]
    public void An_unknown_dtype_is_reported_with_the_tensor_name() =>
        Assert.Contains("tensor 'w': unknown dtype 'Q4'", OpenFails(FileWith("""{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}""", 2)));

    [Fact]
    public void Offsets_past_the_data_are_reported_as_truncation() =>
        Assert.Contains("past the end of the data", OpenFails(FileWith("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8)));

    [Fact]
    public void Overlapping_tensors_are_reported_with_both_names() =>
        Assert.Contains("'a' [0, 8) and 'b' [4, 12) overlap",
            OpenFails(FileWith("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12)));

    [Fact]
    public void Offsets_that_disagree_with_the_shape_are_reported() =>
        Assert.Contains("needs 16", OpenFails(FileWith("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}""", 16)));

    [Fact]
    public void A_truncated_real_file_is_rejected_instead_of_partially_loaded()
    {
        using var dir = new TempFolder();
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path, [TensorToWrite.Of("a", ones(64)), TensorToWrite.Of("b", ones(64))]);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Contains("tensor 'b'", OpenFails(bytes[..^10]));
    }

    [Fact]
    public void An_index_pointing_at_a_missing_shard_names_the_index_and_the_shard()
    {
        using var dir = new TempFolder();
        File.WriteAllText(Path.Combine(dir.Path, SafetensorsCheckpoint.IndexFileName), """{"weight_map":{"w":"model-00001-of-00002.safetensors"}}""");
        var error = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("model-00001-of-00002.safetensors", error.Message);
        Assert.EndsWith(SafetensorsCheckpoint.IndexFileName, error.FilePath, StringComparison.Ordinal);
    }

    [Fact]
    public void An_index_entry_whose_shard_lacks_the_key_is_reported()
    {
        using var dir = new TempFolder();
        SafetensorsWriter.WriteFile(Path.Combine(dir.Path, "s1.safetensors"), [TensorToWrite.Of("a", ones(2))]);
        File.WriteAllText(Path.Combine(dir.Path, SafetensorsCheckpoint.IndexFileName), """{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}""");
        var error = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Contains("'b'", error.Message);
    }
}
