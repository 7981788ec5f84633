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
        return first == '[' ? ArrayRows(path) : LineRows(path);
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
