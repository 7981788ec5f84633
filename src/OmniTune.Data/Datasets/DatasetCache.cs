using System.Security.Cryptography;
using System.Text;
using OmniTune.Models.Qwen25Omni.Positions;

namespace OmniTune.Data.Datasets;

/// <summary>
/// Encoded samples stored in <c>cache_dir</c> under a key made of everything that decides them: the dataset files'
/// contents, columns and tags, processor settings, tokenizer files, template settings, sequence length and this format's
/// version. Files are written under a temporary name and renamed (readers never see half a file; concurrent writers
/// produce the same bytes); a SHA-256 trailer detects corruption, after which the cache is rebuilt.
/// </summary>
public static class DatasetCache
{
    const string Magic = "OMNITUNE-DATASET";
    const int Version = 2;   // 2: images fully decoded when encoded (truncated files rejected up front)

    /// <summary>Hex SHA-256 over the given parts (file parts hash the file content).</summary>
    public static string Key(IEnumerable<string> textParts, IEnumerable<string> files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"{Magic}/{Version}\n"));
        foreach (string part in textParts) sha.AppendData(Encoding.UTF8.GetBytes(part + "\n"));
        foreach (string file in files)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(Path.GetFileName(file) + "\n"));
            if (!File.Exists(file)) continue;
            using var stream = File.OpenRead(file);
            var buffer = new byte[1 << 20];
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) sha.AppendData(buffer, 0, n);
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    /// <summary>Path of the cache file for <paramref name="key"/>.</summary>
    public static string PathFor(string cacheDir, string key) => Path.Combine(cacheDir, $"omnitune-sft-{key[..24]}.bin");

    /// <summary>Reads a cache file; null when absent, corrupt or of another key (the reason goes to <paramref name="log"/>).</summary>
    public static SupervisedDataset? TryRead(string path, string key, TextWriter log)
    {
        if (!File.Exists(path)) return null;
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            if (bytes.Length < 32) throw new InvalidDataException("file too short");
            byte[] payload = bytes[..^32];
            if (!SHA256.HashData(payload).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
                throw new InvalidDataException("checksum mismatch");
            using var reader = new BinaryReader(new MemoryStream(payload), Encoding.UTF8);
            if (reader.ReadString() != Magic || reader.ReadInt32() != Version) throw new InvalidDataException("unknown format");
            if (reader.ReadString() != key) throw new InvalidDataException("stale key");
            int count = reader.ReadInt32();
            var samples = new List<EncodedSample>(count);
            for (int i = 0; i < count; i++) samples.Add(ReadSample(reader));
            int invalidCount = reader.ReadInt32();
            var invalid = new List<InvalidSample>(invalidCount);
            for (int i = 0; i < invalidCount; i++) invalid.Add(new InvalidSample(new SampleLocation(reader.ReadString(), reader.ReadInt32()), reader.ReadString()));
            return new SupervisedDataset(samples, invalid, FromCache: true);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException)
        {
            log.WriteLine($"cache {path} is unusable ({e.Message}); rebuilding it");
            return null;
        }
    }

    /// <summary>Writes the cache atomically.</summary>
    public static void Write(string path, string key, SupervisedDataset dataset)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write(key);
            writer.Write(dataset.Samples.Count);
            foreach (EncodedSample s in dataset.Samples) WriteSample(writer, s);
            writer.Write(dataset.Invalid.Count);
            foreach (InvalidSample bad in dataset.Invalid)
            {
                writer.Write(bad.Location.File);
                writer.Write(bad.Location.Index);
                writer.Write(bad.Reason);
            }
        }
        byte[] payload = buffer.ToArray();
        string temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var file = File.Create(temporary))
            {
                file.Write(payload);
                file.Write(SHA256.HashData(payload));
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    static void WriteSample(BinaryWriter w, EncodedSample s)
    {
        w.Write(s.Location.File);
        w.Write(s.Location.Index);
        WriteInts(w, s.InputIds);
        WriteInts(w, s.Labels);
        foreach (MediaItem[] items in new[] { s.Images, s.Videos, s.Audios })
        {
            w.Write(items.Length);
            foreach (MediaItem m in items)
            {
                w.Write(m.Path);
                w.Write(m.Grid.T);
                w.Write(m.Grid.H);
                w.Write(m.Grid.W);
                w.Write(m.SecondsPerGrid);
                w.Write(m.Frames);
            }
        }
        w.Write(s.Truncated);
    }

    static EncodedSample ReadSample(BinaryReader r)
    {
        var location = new SampleLocation(r.ReadString(), r.ReadInt32());
        int[] ids = ReadInts(r), labels = ReadInts(r);
        var media = new MediaItem[3][];
        for (int k = 0; k < 3; k++)
        {
            media[k] = new MediaItem[r.ReadInt32()];
            for (int i = 0; i < media[k].Length; i++)
                media[k][i] = new MediaItem(r.ReadString(), new GridThw(r.ReadInt32(), r.ReadInt32(), r.ReadInt32()), r.ReadDouble(), r.ReadInt32());
        }
        return new EncodedSample(location, ids, labels, media[0], media[1], media[2], r.ReadBoolean());
    }

    static void WriteInts(BinaryWriter w, int[] values)
    {
        w.Write(values.Length);
        foreach (int v in values) w.Write(v);
    }

    static int[] ReadInts(BinaryReader r)
    {
        var values = new int[r.ReadInt32()];
        for (int i = 0; i < values.Length; i++) values[i] = r.ReadInt32();
        return values;
    }
}
