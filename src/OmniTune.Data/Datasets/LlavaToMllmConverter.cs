using System.Text.Encodings.Web;
using System.Text.Json;

namespace OmniTune.Data.Datasets;

/// <summary>What a LLaVA conversion did.</summary>
/// <param name="Written">Records written.</param>
/// <param name="TextOnly">Records without an image (kept).</param>
/// <param name="MissingImages">(record index, image path) of records skipped because the image is missing.</param>
public sealed record LlavaConversionReport(int Written, int TextOnly, IReadOnlyList<(int Index, string Image)> MissingImages);

/// <summary>
/// MindSpeed-MM's LLaVA-Instruct → "mllm format" converter (llamafactory_data.md §8): each record becomes
/// <c>{"images": ["./train2017/&lt;image&gt;"], "messages": [{"role","content"}…]}</c> (human → user, gpt → assistant, text
/// verbatim); records without an image are kept text-only; records whose image is missing under the COCO root are
/// skipped and reported. Unlike the Python script an existing output is refused before any work (or replaced with
/// <c>overwrite</c>), and the output is written atomically.
/// </summary>
public static class LlavaToMllmConverter
{
    static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Converts <paramref name="llavaJson"/> with images under <paramref name="cocoPath"/> into <paramref name="output"/>.</summary>
    public static LlavaConversionReport Convert(string llavaJson, string cocoPath, string output, bool overwrite = false, IProgress<int>? progress = null)
    {
        if (!File.Exists(llavaJson)) throw new FileNotFoundException($"{llavaJson}: LLaVA json not found", llavaJson);
        if (!Directory.Exists(cocoPath)) throw new DirectoryNotFoundException($"{cocoPath}: COCO folder not found");
        if (File.Exists(output) && !overwrite) throw new IOException($"{output} already exists (pass --overwrite to replace it)");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        string temporary = output + ".tmp";
        int written = 0, textOnly = 0, index = -1;
        var missing = new List<(int, string)>();
        try
        {
            using (var stream = File.Create(temporary))
            using (var writer = new Utf8JsonWriter(stream, WriterOptions))
            {
                writer.WriteStartArray();
                foreach (JsonElement record in DatasetFileReader.Rows(llavaJson))
                {
                    index++;
                    progress?.Report(index + 1);
                    string? image = record.TryGetProperty("image", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString() : null;
                    string? relative = string.IsNullOrEmpty(image) ? null : "./train2017/" + image;
                    if (relative is not null && !File.Exists(Path.Combine(cocoPath, relative)))
                    {
                        missing.Add((index, relative));
                        continue;
                    }
                    writer.WriteStartObject();
                    writer.WriteStartArray("images");
                    if (relative is not null) writer.WriteStringValue(relative);
                    else textOnly++;
                    writer.WriteEndArray();
                    writer.WriteStartArray("messages");
                    if (!record.TryGetProperty("conversations", out JsonElement turns) || turns.ValueKind != JsonValueKind.Array)
                        throw new InvalidDataException($"{llavaJson}: record {index} has no conversations list");
                    foreach (JsonElement turn in turns.EnumerateArray())
                    {
                        string from = turn.GetProperty("from").GetString() ?? "";
                        string role = from switch
                        {
                            "human" => "user",
                            "gpt" => "assistant",
                            _ => throw new InvalidDataException($"{llavaJson}: record {index} has unknown role '{from}'"),
                        };
                        writer.WriteStartObject();
                        writer.WriteString("role", role);
                        writer.WriteString("content", turn.GetProperty("value").GetString());
                        writer.WriteEndObject();
                    }
                    writer.WriteEndArray();
                    writer.WriteEndObject();
                    written++;
                }
                writer.WriteEndArray();
            }
            File.Move(temporary, output, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
        return new LlavaConversionReport(written, textOnly, missing);
    }
}
