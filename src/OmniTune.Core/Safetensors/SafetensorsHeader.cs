using System.Text.Json;
using OmniTune.Core.Tensors;

namespace OmniTune.Core.Safetensors;

/// <summary>A parsed and validated safetensors header.</summary>
public sealed class SafetensorsHeader
{
    /// <summary>Largest header the format allows (100 MB, as the reference implementation).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    SafetensorsHeader(IReadOnlyDictionary<string, SafetensorsTensorInfo> tensors, IReadOnlyDictionary<string, string> metadata, long dataStart)
    {
        Tensors = tensors;
        Metadata = metadata;
        DataStart = dataStart;
    }

    /// <summary>Tensors by key, in header order.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The free-form <c>__metadata__</c> string map.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>File offset of the first data byte (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>Reads and validates the header of <paramref name="path"/>, whose size is <paramref name="fileLength"/>.</summary>
    public static SafetensorsHeader Read(string path, Stream stream, long fileLength)
    {
        if (fileLength < 8)
            throw new SafetensorsFormatException(path, $"truncated: the file has {fileLength} bytes, fewer than the 8-byte header length");
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength > (ulong)Math.Min(MaxHeaderBytes, fileLength - 8))
            throw new SafetensorsFormatException(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes) or exceeds the format's limit: the file is truncated or not safetensors");
        byte[] json = new byte[headerLength];
        stream.ReadExactly(json);
        long dataStart = 8 + (long)headerLength;
        return Parse(path, json, dataStart, fileLength - dataStart);
    }

    static SafetensorsHeader Parse(string path, byte[] json, long dataStart, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(path, $"invalid JSON header: {e.Message}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, "invalid header: the JSON is not an object");
            var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(property.Name))
                    throw new SafetensorsFormatException(path, $"tensor '{property.Name}' appears twice in the header");
                tensors[property.Name] = ReadEntry(path, property.Name, property.Value, dataLength);
            }
            CheckNoOverlap(path, tensors.Values);
            return new SafetensorsHeader(tensors, metadata, dataStart);
        }
    }

    static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, "invalid header: __metadata__ is not an object of strings");
        foreach (JsonProperty item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(path, $"invalid header: __metadata__ value '{item.Name}' is not a string");
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    static SafetensorsTensorInfo ReadEntry(string path, string name, JsonElement entry, long dataLength)
    {
        string Bad(string what) => $"tensor '{name}': {what}";
        if (entry.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, Bad("entry is not an object"));
        if (!entry.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new SafetensorsFormatException(path, Bad("missing dtype"));
        string dtypeName = dtypeElement.GetString()!;
        var dtype = SafetensorsDType.TryParse(dtypeName)
            ?? throw new SafetensorsFormatException(path, Bad($"unknown dtype '{dtypeName}' (known: {string.Join(", ", SafetensorsDType.Known)})"));
        long[] shape = ReadLongs(path, entry, "shape", Bad);
        long[] offsets = ReadLongs(path, entry, "data_offsets", Bad);
        if (offsets.Length != 2)
            throw new SafetensorsFormatException(path, Bad($"data_offsets has {offsets.Length} values, expected 2"));
        var (begin, end) = (offsets[0], offsets[1]);
        if (begin > end)
            throw new SafetensorsFormatException(path, Bad($"data_offsets [{begin}, {end}] end before they begin"));
        if (end > dataLength)
            throw new SafetensorsFormatException(path, Bad($"data [{begin}, {end}) lies past the end of the data section ({dataLength} bytes): the file is truncated or the offsets are wrong"));
        long expected;
        try
        {
            expected = TensorMemory.ByteCount(dtype, shape);
        }
        catch (OverflowException)
        {
            throw new SafetensorsFormatException(path, Bad($"shape [{string.Join(", ", shape)}] is too large"));
        }
        if (end - begin != expected)
            throw new SafetensorsFormatException(path, Bad($"data_offsets cover {end - begin} bytes but {dtypeName}[{string.Join(", ", shape)}] needs {expected}"));
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    static long[] ReadLongs(string path, JsonElement entry, string key, Func<string, string> bad)
    {
        if (!entry.TryGetProperty(key, out JsonElement array) || array.ValueKind != JsonValueKind.Array)
            throw new SafetensorsFormatException(path, bad($"missing {key}"));
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
                throw new SafetensorsFormatException(path, bad($"{key} holds '{item}', not a non-negative integer"));
            values[i++] = v;
        }
        return values;
    }

    static void CheckNoOverlap(string path, IEnumerable<SafetensorsTensorInfo> tensors)
    {
        SafetensorsTensorInfo? previous = null;
        foreach (SafetensorsTensorInfo t in tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin))
        {
            if (previous != null && t.Begin < previous.End)
                throw new SafetensorsFormatException(path, $"tensors '{previous.Name}' [{previous.Begin}, {previous.End}) and '{t.Name}' [{t.Begin}, {t.End}) overlap");
            previous = t;
        }
    }
}
