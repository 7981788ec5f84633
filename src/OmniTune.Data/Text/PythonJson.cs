using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OmniTune.Data.Text;

/// <summary>JSON text as Python's <c>json.dumps(x, ensure_ascii=False)</c> writes it (separators ", " and ": ").</summary>
public static class PythonJson
{
    /// <summary>Serialises a node the Python way.</summary>
    public static string Dumps(JsonNode? node)
    {
        var text = new StringBuilder();
        Write(node, text);
        return text.ToString();
    }

    static void Write(JsonNode? node, StringBuilder text)
    {
        switch (node)
        {
            case null:
                text.Append("null");
                break;
            case JsonObject o:
                text.Append('{');
                bool first = true;
                foreach (var (key, value) in o)
                {
                    if (!first) text.Append(", ");
                    first = false;
                    WriteString(key, text);
                    text.Append(": ");
                    Write(value, text);
                }
                text.Append('}');
                break;
            case JsonArray a:
                text.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    Write(a[i], text);
                }
                text.Append(']');
                break;
            case JsonValue v:
                JsonElement e = v.TryGetValue(out JsonElement element) ? element : JsonDocument.Parse(v.ToJsonString()).RootElement.Clone();
                switch (e.ValueKind)
                {
                    case JsonValueKind.String: WriteString(e.GetString()!, text); break;
                    case JsonValueKind.True: text.Append("true"); break;
                    case JsonValueKind.False: text.Append("false"); break;
                    case JsonValueKind.Null: text.Append("null"); break;
                    default: text.Append(e.GetRawText()); break;
                }
                break;
        }
    }

    static void WriteString(string s, StringBuilder text)
    {
        text.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }
}
