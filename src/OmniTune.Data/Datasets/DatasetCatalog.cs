using System.Text.Json;

namespace OmniTune.Data.Datasets;

/// <summary>One named dataset: its files, its column/tag names and the folder its media paths are relative to.</summary>
/// <param name="Name">Name as given in data.json.</param>
/// <param name="Files">Data files (JSON array or JSON Lines).</param>
/// <param name="Attr">Columns and tags.</param>
/// <param name="MediaDir">Folder media paths are joined to.</param>
public sealed record DatasetSource(string Name, IReadOnlyList<string> Files, AttrParameters Attr, string MediaDir);

/// <summary>
/// Resolves <c>basic_parameters.dataset</c>: names of LLaMA-Factory's <c>dataset_info.json</c> in dataset_dir (each with its
/// own columns and tags), or — as MindSpeed-MM — comma-separated JSON/JSONL paths (relative to the working directory,
/// or to dataset_dir) that all use data.json's <c>attr</c>.
/// </summary>
public static class DatasetCatalog
{
    /// <summary>Name of LLaMA-Factory's dataset registry file.</summary>
    public const string DatasetInfoFile = "dataset_info.json";

    /// <summary>Resolves every dataset; an error names the dataset and where it was looked for.</summary>
    public static List<DatasetSource> Resolve(BasicParameters basic, AttrParameters attr)
    {
        string datasetDir = basic.DatasetDir;
        string infoPath = Path.Combine(datasetDir, DatasetInfoFile);
        JsonDocument? info = File.Exists(infoPath) ? JsonDocument.Parse(File.ReadAllText(infoPath)) : null;
        try
        {
            var sources = new List<DatasetSource>();
            foreach (string raw in basic.Dataset.Split(','))
            {
                string name = raw.Trim();
                if (name.Length == 0) continue;
                if (info is not null && info.RootElement.TryGetProperty(name, out JsonElement entry))
                {
                    sources.Add(FromDatasetInfo(name, entry, datasetDir, infoPath));
                    continue;
                }
                string? file = new[] { name, Path.Combine(datasetDir, name) }.FirstOrDefault(p => File.Exists(p) || Directory.Exists(p));
                if (file is null)
                {
                    string where = info is null ? $"{name} or {Path.Combine(datasetDir, name)}" : $"{name}, {Path.Combine(datasetDir, name)} or {infoPath}";
                    throw new FileNotFoundException($"dataset '{name}' not found (looked for {where})");
                }
                sources.Add(new DatasetSource(name, Files(file, name), attr, datasetDir));
            }
            if (sources.Count == 0) throw new InvalidDataException("basic_parameters.dataset names no dataset");
            return sources;
        }
        finally
        {
            info?.Dispose();
        }
    }

    static List<string> Files(string path, string name)
    {
        List<string> files = Directory.Exists(path)
            ? Directory.GetFiles(path).Where(f => f.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal).ToList()
            : [path];
        if (files.Count == 0) throw new FileNotFoundException($"dataset '{name}': no .json or .jsonl file in {path}");
        foreach (string f in files)
        {
            if (!f.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && !f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"dataset '{name}': {f} is not a .json or .jsonl file");
        }
        return files;
    }

    static DatasetSource FromDatasetInfo(string name, JsonElement entry, string datasetDir, string infoPath)
    {
        string? Str(JsonElement e, string key) => e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        foreach (string remote in new[] { "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name" })
        {
            if (Str(entry, remote) is not null && Str(entry, "file_name") is null)
                throw new NotSupportedException($"{infoPath}: dataset '{name}' uses {remote}; only local file_name datasets can be read here");
        }
        string fileName = Str(entry, "file_name") ?? throw new InvalidDataException($"{infoPath}: dataset '{name}' has no file_name");
        string formatting = Str(entry, "formatting") ?? "alpaca";
        // LLaMA-Factory's DatasetAttr.join: a present "columns" or "tags" object replaces every default, so a key it does not
        // name has no value (a leading system message is then not a system prompt unless "system_tag" is declared).
        bool hasColumns = entry.TryGetProperty("columns", out JsonElement columns) && columns.ValueKind == JsonValueKind.Object;
        bool hasTags = entry.TryGetProperty("tags", out JsonElement tags) && tags.ValueKind == JsonValueKind.Object;
        string? Column(string key, string? fallback) => hasColumns ? Str(columns, key) : fallback;
        string? Tag(string key, string fallback) => hasTags ? Str(tags, key) : fallback;
        string? Required(string? value, string key, string where) => value
            ?? throw new InvalidDataException($"{infoPath}: dataset '{name}': its {where} object does not name '{key}', so LLaMA-Factory gives it no value; add \"{key}\" to {where}");
        bool sharegpt = formatting == "sharegpt";
        var attr = new AttrParameters
        {
            Formatting = formatting,
            Messages = sharegpt ? Required(Column("messages", "conversations"), "messages", "columns") : Column("messages", "conversations"),
            System = Column("system", null),
            Tools = Column("tools", null),
            Images = Column("images", null),
            Videos = Column("videos", null),
            Audios = Column("audios", null),
            Prompt = Column("prompt", "instruction"),
            Query = Column("query", "input"),
            Response = Column("response", "output"),
            History = Column("history", null),
            RoleTag = sharegpt ? Required(Tag("role_tag", "from"), "role_tag", "tags")! : "from",
            ContentTag = sharegpt ? Required(Tag("content_tag", "value"), "content_tag", "tags")! : "value",
            UserTag = sharegpt ? Required(Tag("user_tag", "human"), "user_tag", "tags")! : "human",
            AssistantTag = sharegpt ? Required(Tag("assistant_tag", "gpt"), "assistant_tag", "tags")! : "gpt",
            ObservationTag = Tag("observation_tag", "observation"),
            FunctionTag = Tag("function_tag", "function_call"),
            SystemTag = Tag("system_tag", "system"),
        };
        string path = Path.Combine(datasetDir, fileName);
        if (!File.Exists(path) && !Directory.Exists(path)) throw new FileNotFoundException($"{infoPath}: dataset '{name}': {path} not found");
        string mediaDir = Str(entry, "media_dir") is { } m ? Path.Combine(datasetDir, m) : datasetDir;
        return new DatasetSource(name, Files(path, name), attr, mediaDir);
    }
}
