using System.Text.Json;

namespace OmniTune.Data.Datasets;

/// <summary>Streams the rows of a JSON array file or a JSON Lines file without loading it whole.</summary>
public static class DatasetFileReader
{
    static readonly JsonSerializerOptions Options = new() { AllowTrailingCommas = true };

    /// <summary>Rows of <paramref name="path"/> in order; an error names the file (and the line for JSON Lines).</summary>
    public static IEnumerable<JsonElement> Rows(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: dataset file not found", path);
        using var stream = File.OpenRead(path);
        int first = -1;
        while (stream.Position < stream.Length)
        {
            first = stream.ReadByte();
            if (first is not (' ' or '\n' or '\r' or '\t' or 0xEF or 0xBB or 0xBF)) break;
        }
        stream.Position = 0;
        if (first == '{' && IsOneObject(path, out string keys))
        {
            throw new InvalidDataException($"{path}: the top level is one JSON object ({keys}), not a list of samples: a dataset file is a JSON array " +
                                           "([{...}, {...}]) or JSON Lines (one sample object per line, usually named .jsonl)");
        }
        return first == '[' ? ArrayRows(path) : LineRows(path);
    }

    /// <summary>
    /// Whether a <c>.json</c> file holds a single object (pretty-printed over many lines, or alone on one line) rather
    /// than JSON Lines. A <c>.jsonl</c> file of one line is one sample and stays accepted.
    /// </summary>
    static bool IsOneObject(string path, out string keys)
    {
        keys = "";
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return false;
        var lines = File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Take(2).ToList();
        string? text = lines.Count == 1 ? lines[0] : null;
        if (text is null)
        {
            try
            {
                using var firstLine = JsonDocument.Parse(lines[0]);
                return false;   // the first line is a value of its own: JSON Lines
            }
            catch (JsonException)
            {
                text = File.ReadAllText(path);   // one value over many lines (or invalid JSON, reported below)
            }
        }
        try
        {
            using var document = JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true });
            if (document.RootElement.ValueKind != JsonValueKind.Object) return false;
            var names = document.RootElement.EnumerateObject().Select(p => p.Name).ToList();
            keys = names.Count == 0 ? "no keys" : "keys: " + string.Join(", ", names.Take(5)) + (names.Count > 5 ? ", …" : "");
            return true;
        }
        catch (JsonException)
        {
            return false;   // not one document: the line reader names the bad line
        }
    }

    static IEnumerable<JsonElement> ArrayRows(string path)
    {
        using var stream = File.OpenRead(path);
        IEnumerator<JsonElement?> rows = JsonSerializer.DeserializeAsyncEnumerable<JsonElement?>(stream, Options).ToBlockingEnumerable().GetEnumerator();
        while (true)
        {
            JsonElement? row;
            try
            {
                if (!rows.MoveNext()) yield break;
                row = rows.Current;
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
            }
            yield return row ?? default;
        }
    }

    static IEnumerable<JsonElement> LineRows(string path)
    {
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonElement row;
            try
            {
                using var document = JsonDocument.Parse(text);
                row = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}:{line}: invalid JSON line: {e.Message}", e);
            }
            yield return row;
        }
    }
}
