using System.Text.Json;
using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>
/// A Hugging Face checkpoint: a single <c>model.safetensors</c>, any <c>*.safetensors</c> file, or shards listed by
/// <c>model.safetensors.index.json</c>. Keys are resolved to their file once; tensors are read lazily.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>Name of the index file of a sharded checkpoint.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    readonly List<SafetensorsFile> files;
    readonly Dictionary<string, SafetensorsFile> fileByKey;

    SafetensorsCheckpoint(string location, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileByKey)
    {
        Location = location;
        this.files = files;
        this.fileByKey = fileByKey;
    }

    /// <summary>The folder or file opened.</summary>
    public string Location { get; }

    /// <summary>All tensor keys, sorted.</summary>
    public IReadOnlyList<string> Keys => fileByKey.Keys.Order(StringComparer.Ordinal).ToList();

    /// <summary>The shard files.</summary>
    public IReadOnlyList<SafetensorsFile> Files => files;

    /// <summary>Opens a checkpoint folder (index or single file) or one safetensors file.</summary>
    public static SafetensorsCheckpoint Open(string location)
    {
        if (File.Exists(location))
        {
            return location.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? OpenIndex(location)
                : FromFiles(location, [location]);
        }
        if (!Directory.Exists(location))
            throw new DirectoryNotFoundException($"{location}: checkpoint folder or file not found");
        string index = Path.Combine(location, IndexFileName);
        if (File.Exists(index)) return OpenIndex(index);
        string single = Path.Combine(location, SingleFileName);
        if (File.Exists(single)) return FromFiles(location, [single]);
        string[] any = Directory.GetFiles(location, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (any.Length == 0)
            throw new FileNotFoundException($"{location}: no {IndexFileName}, {SingleFileName} or other *.safetensors file");
        return FromFiles(location, any);
    }

    static SafetensorsCheckpoint FromFiles(string location, IEnumerable<string> paths)
    {
        var files = new List<SafetensorsFile>();
        var byKey = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (string path in paths)
            {
                SafetensorsFile file = SafetensorsFile.Open(path);
                files.Add(file);
                foreach (string key in file.Tensors.Keys)
                {
                    if (byKey.TryGetValue(key, out var other))
                        throw new SafetensorsFormatException(path, $"tensor '{key}' is also in {other.Path}");
                    byKey[key] = file;
                }
            }
            return new SafetensorsCheckpoint(location, files, byKey);
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath);
        string folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var files = new List<SafetensorsFile>();
        var byName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var byKey = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (key, fileName) in weightMap)
            {
                if (!byName.TryGetValue(fileName, out SafetensorsFile? file))
                {
                    string path = Path.Combine(folder, fileName);
                    if (!File.Exists(path))
                        throw new SafetensorsFormatException(indexPath, $"shard '{fileName}' (holding '{key}') does not exist");
                    file = SafetensorsFile.Open(path);
                    files.Add(file);
                    byName[fileName] = file;
                }
                if (!file.Tensors.ContainsKey(key))
                    throw new SafetensorsFormatException(indexPath, $"the index puts '{key}' in '{fileName}', which does not contain it");
                byKey[key] = file;
            }
            return new SafetensorsCheckpoint(folder, files, byKey);
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!document.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(indexPath, "no 'weight_map' object");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new SafetensorsFormatException(indexPath, $"weight_map entry '{p.Name}' is not a file name");
                result[p.Name] = p.Value.GetString()!;
            }
            return result;
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(indexPath, $"invalid JSON: {e.Message}");
        }
    }

    /// <summary>True when the checkpoint holds <paramref name="key"/>.</summary>
    public bool Contains(string key) => fileByKey.ContainsKey(key);

    /// <summary>The header entry of <paramref name="key"/>.</summary>
    public SafetensorsTensorInfo Info(string key) => FileOf(key).Info(key);

    /// <summary>Reads a whole tensor.</summary>
    public Tensor Read(string key, Device? device = null) => FileOf(key).Read(key, device);

    /// <summary>Reads a slice along one dimension.</summary>
    public Tensor ReadSlice(string key, int dim, long start, long length, Device? device = null) =>
        FileOf(key).ReadSlice(key, dim, start, length, device);

    /// <summary>The file <paramref name="key"/> is stored in (its name inside the checkpoint folder).</summary>
    public string FileNameOf(string key) => System.IO.Path.GetFileName(FileOf(key).Path);

    /// <summary>The metadata of the file <paramref name="fileName"/> of the checkpoint.</summary>
    public IReadOnlyDictionary<string, string> MetadataOf(string fileName) =>
        files.First(f => System.IO.Path.GetFileName(f.Path) == fileName).Metadata;

    /// <summary>Whether the checkpoint is a folder with an index (sharded) rather than one file.</summary>
    public bool Sharded => File.Exists(System.IO.Path.Combine(Location, IndexFileName));

    SafetensorsFile FileOf(string key) =>
        fileByKey.TryGetValue(key, out var f) ? f : throw new KeyNotFoundException($"{Location}: checkpoint has no tensor '{key}'");

    /// <inheritdoc/>
    public void Dispose() => files.ForEach(f => f.Dispose());
}
