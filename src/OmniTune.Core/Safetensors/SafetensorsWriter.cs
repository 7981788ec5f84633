using System.Text;
using System.Text.Json;
using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>
/// Writes safetensors files and sharded checkpoints. Each file is written to a sibling temporary file and renamed,
/// so a failure never leaves a half-written file under the final name.
/// </summary>
public static class SafetensorsWriter
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Writes one file holding <paramref name="tensors"/> in the given order.</summary>
    public static void WriteFile(string path, IReadOnlyList<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        byte[] header = BuildHeader(tensors, metadata);
        string temporary = path + ".tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                stream.Write(BitConverter.GetBytes((ulong)header.Length));
                stream.Write(header);
                foreach (TensorToWrite tensor in tensors) tensor.WriteBytes(stream, path);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>
    /// Writes a Hugging Face checkpoint into <paramref name="folder"/>: <c>model.safetensors</c> when everything fits in
    /// one shard of <paramref name="maxShardBytes"/>, otherwise <c>model-0000i-of-0000N.safetensors</c> files plus
    /// <c>model.safetensors.index.json</c>. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> WriteSharded(string folder, IReadOnlyList<TensorToWrite> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxShardBytes, 1);
        Directory.CreateDirectory(folder);
        List<List<TensorToWrite>> shards = PlanShards(tensors, maxShardBytes);
        if (shards.Count <= 1)
        {
            string single = Path.Combine(folder, SafetensorsCheckpoint.SingleFileName);
            WriteFile(single, tensors, metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
            return [single];
        }
        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string path = Path.Combine(folder, name);
            WriteFile(path, shards[i], metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
            written.Add(path);
            foreach (TensorToWrite t in shards[i]) weightMap[t.Name] = name;
        }
        long totalSize = tensors.Sum(t => TensorMemory.ByteCount(t.DType, t.Shape));
        string index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        var document = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = totalSize },
            ["weight_map"] = weightMap,
        };
        File.WriteAllText(index + ".tmp", JsonSerializer.Serialize(document, Indented));
        File.Move(index + ".tmp", index, overwrite: true);
        written.Add(index);
        return written;
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into the files <paramref name="fileOf"/> names (another checkpoint's shard names),
    /// each with <paramref name="metadataOf"/>'s metadata, plus <c>model.safetensors.index.json</c> when
    /// <paramref name="index"/>: a checkpoint laid out like the one it mirrors. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> WriteLike(string folder, IReadOnlyList<TensorToWrite> tensors, Func<string, string> fileOf,
        Func<string, IReadOnlyDictionary<string, string>> metadataOf, bool index)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var group in tensors.GroupBy(t => fileOf(t.Name)).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            string path = Path.Combine(folder, group.Key);
            WriteFile(path, group.ToList(), metadataOf(group.Key));
            written.Add(path);
            foreach (TensorToWrite t in group) weightMap[t.Name] = group.Key;
        }
        if (!index) return written;
        string indexPath = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        var document = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = tensors.Sum(t => TensorMemory.ByteCount(t.DType, t.Shape)) },
            ["weight_map"] = weightMap,
        };
        File.WriteAllText(indexPath + ".tmp", JsonSerializer.Serialize(document, Indented));
        File.Move(indexPath + ".tmp", indexPath, overwrite: true);
        written.Add(indexPath);
        return written;
    }

    /// <summary>Groups tensors, in order, into shards of at most <paramref name="maxShardBytes"/> (a larger tensor gets a shard alone).</summary>
    public static List<List<TensorToWrite>> PlanShards(IReadOnlyList<TensorToWrite> tensors, long maxShardBytes)
    {
        var shards = new List<List<TensorToWrite>>();
        var current = new List<TensorToWrite>();
        long currentBytes = 0;
        foreach (TensorToWrite t in tensors)
        {
            long bytes = TensorMemory.ByteCount(t.DType, t.Shape);
            if (current.Count > 0 && currentBytes + bytes > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(t);
            currentBytes += bytes;
        }
        if (current.Count > 0) shards.Add(current);
        return shards;
    }

    static byte[] BuildHeader(IReadOnlyList<TensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (TensorToWrite t in tensors)
            {
                if (!seen.Add(t.Name)) throw new ArgumentException($"tensor '{t.Name}' is listed twice", nameof(tensors));
                long bytes = TensorMemory.ByteCount(t.DType, t.Shape);
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", SafetensorsDType.NameOf(t.DType));
                json.WriteStartArray("shape");
                foreach (long d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        int padding = (int)((8 - (buffer.Length % 8)) % 8);
        buffer.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        return buffer.ToArray();
    }
}
