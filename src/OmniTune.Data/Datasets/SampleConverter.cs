using System.Text.Json;
using OmniTune.Data.Text;

namespace OmniTune.Data.Datasets;

/// <summary>
/// LLaMA-Factory's sharegpt and alpaca converters (llamafactory_data.md §2) with MindSpeed-MM's media resolution
/// (a path becomes dataset_dir/path when that file exists, else stays as given). Instead of silently emptying a broken
/// row, conversion returns the reason.
/// </summary>
public sealed class SampleConverter(AttrParameters attr, string mediaDir)
{
    /// <summary>Converts one row.</summary>
    public (ConvertedSample? Sample, InvalidSample? Problem) Convert(JsonElement row, SampleLocation location)
    {
        if (row.ValueKind != JsonValueKind.Object) return (null, new InvalidSample(location, "row is not a JSON object"));
        try
        {
            var (messages, system, problem) = attr.Formatting == "alpaca" ? Alpaca(row) : Sharegpt(row);
            if (problem is not null) return (null, new InvalidSample(location, problem));
            string tools = Text(row, attr.Tools) ?? "";
            return (new ConvertedSample(location, messages!, system ?? "", tools, Media(row, attr.Images), Media(row, attr.Videos), Media(row, attr.Audios)), null);
        }
        catch (InvalidDataException e)
        {
            return (null, new InvalidSample(location, e.Message));
        }
    }

    (List<ChatMessage>? Messages, string? System, string? Problem) Sharegpt(JsonElement row)
    {
        string column = attr.Messages ?? "conversations";
        if (!row.TryGetProperty(column, out JsonElement list) || list.ValueKind != JsonValueKind.Array)
            return (null, null, $"no '{column}' list");
        var items = list.EnumerateArray().ToList();
        string? system = null;
        if (attr.SystemTag is not null && items.Count > 0 && Role(items[0]) == attr.SystemTag)
        {
            system = Content(items[0]);
            items = items[1..];
        }
        else
        {
            system = Text(row, attr.System);
        }
        var messages = new List<ChatMessage>();
        for (int k = 0; k < items.Count; k++)
        {
            string role = Role(items[k]);
            ChatRole? mapped = k % 2 == 0
                ? role == attr.UserTag ? ChatRole.User : role == attr.ObservationTag ? ChatRole.Observation : null
                : role == attr.AssistantTag ? ChatRole.Assistant : role == attr.FunctionTag ? ChatRole.Function : null;
            if (mapped is null && k == 0 && role.Contains("system", StringComparison.OrdinalIgnoreCase))
            {
                return (null, null, $"message 0 has role '{role}', but the dataset declares {(attr.SystemTag is null ? "no system_tag" : $"system_tag '{attr.SystemTag}'")}, so it is " +
                                    $"not a system prompt (LLaMA-Factory drops this sample too); declare \"system_tag\": \"{role}\" in the dataset's tags (data.json: attr) to train on it");
            }
            if (mapped is null)
                return (null, null, $"message {k} has role '{role}' where {(k % 2 == 0 ? $"'{attr.UserTag}'" : $"'{attr.AssistantTag}'")} is expected (roles must alternate)");
            messages.Add(new ChatMessage(mapped.Value, Content(items[k])));
        }
        if (messages.Count == 0) return (null, null, "no messages");
        if (messages.Count % 2 != 0) return (null, null, $"{messages.Count} messages: the conversation does not end with an answer");
        int empty = messages.FindIndex(m => m.Role is ChatRole.Assistant or ChatRole.Function && string.IsNullOrWhiteSpace(m.Content));
        if (empty >= 0) return (null, null, $"message {empty} is an empty answer");
        return (messages, system, null);
    }

    (List<ChatMessage>? Messages, string? System, string? Problem) Alpaca(JsonElement row)
    {
        var messages = new List<ChatMessage>();
        if (attr.History is not null && row.TryGetProperty(attr.History, out JsonElement history) && history.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement pair in history.EnumerateArray())
            {
                if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2) return (null, null, "history entries must be [prompt, response] pairs");
                messages.Add(new ChatMessage(ChatRole.User, pair[0].GetString() ?? ""));
                messages.Add(new ChatMessage(ChatRole.Assistant, pair[1].GetString() ?? ""));
            }
        }
        string query = string.Join("\n", new[] { Text(row, attr.Prompt), Text(row, attr.Query) }.Where(s => !string.IsNullOrEmpty(s)));
        if (attr.Response is null)
            return (null, null, "the dataset names no response column (a columns object leaves every column it does not name empty, as in LLaMA-Factory); add \"response\": \"output\" to its columns");
        string? response = Text(row, attr.Response);
        if (string.IsNullOrWhiteSpace(response)) return (null, null, "empty answer");
        messages.Add(new ChatMessage(ChatRole.User, query));
        messages.Add(new ChatMessage(ChatRole.Assistant, response));
        return (messages, Text(row, attr.System), null);
    }

    string Role(JsonElement message) =>
        message.TryGetProperty(attr.RoleTag, out JsonElement r) && r.ValueKind == JsonValueKind.String
            ? r.GetString()!
            : throw new InvalidDataException($"a message has no '{attr.RoleTag}'");

    string Content(JsonElement message) =>
        message.TryGetProperty(attr.ContentTag, out JsonElement c) && c.ValueKind == JsonValueKind.String
            ? c.GetString()!
            : throw new InvalidDataException($"a message has no string '{attr.ContentTag}'");

    static string? Text(JsonElement row, string? column) =>
        column is not null && row.TryGetProperty(column, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    List<string> Media(JsonElement row, string? column)
    {
        if (column is null || !row.TryGetProperty(column, out JsonElement v) || v.ValueKind == JsonValueKind.Null) return [];
        IEnumerable<JsonElement> items = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray() : [v];
        return items.Select(e => e.ValueKind == JsonValueKind.String
                ? Resolve(e.GetString()!)
                : throw new InvalidDataException($"'{column}' holds {e.ValueKind}, not a path (frame lists are not supported)"))
            .ToList();
    }

    string Resolve(string path)
    {
        string joined = Path.Combine(mediaDir, path);
        return File.Exists(joined) ? joined : path;
    }
}
