using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OmniTune.Data.Text;

/// <summary>
/// LLaMA-Factory's <c>qwen2_omni</c> chat template (llamafactory_data.md §3): each message is rendered into its slot
/// and tokenized on its own (BPE never merges across slots); turns pair up as (source, target); the target of every
/// turn ends with <c>&lt;|im_end|&gt;\n</c>, the newline trained too; the default system prompt is always present.
/// </summary>
public sealed class Qwen2OmniTemplate
{
    /// <summary>LLaMA-Factory's and MindSpeed-MM's default system prompt.</summary>
    public const string DefaultSystem = "You are a helpful assistant.";

    /// <summary>The system prompt of Hugging Face's Qwen2.5-Omni chat template (speech mode).</summary>
    public const string QwenOmniSystem =
        "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and visual inputs, as well as generating text and speech.";

    const string ToolsPreamble = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    const string ToolsPostamble = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

    readonly Qwen2Tokenizer tokenizer;

    /// <summary>Creates the template over <paramref name="tokenizer"/>, with <paramref name="defaultSystem"/> for samples without one.</summary>
    public Qwen2OmniTemplate(Qwen2Tokenizer tokenizer, string defaultSystem = DefaultSystem)
    {
        this.tokenizer = tokenizer;
        DefaultSystemPrompt = defaultSystem;
        StopTokenIds = [tokenizer.TokenToId("<|im_end|>")];
    }

    /// <summary>System prompt used when a sample has none.</summary>
    public string DefaultSystemPrompt { get; }

    /// <summary>Generation stops at these ids (<c>&lt;|im_end|&gt;</c>).</summary>
    public IReadOnlyList<int> StopTokenIds { get; }

    /// <summary>The rendered text of one message's slot (no tokenization).</summary>
    public static string Render(ChatMessage message) => message.Role switch
    {
        ChatRole.System => $"<|im_start|>system\n{message.Content}<|im_end|>\n",
        ChatRole.User => $"<|im_start|>user\n{message.Content}<|im_end|>\n<|im_start|>assistant\n",
        ChatRole.Assistant => $"{message.Content}<|im_end|>\n",
        ChatRole.Function => $"{RenderFunctionCalls(message.Content)}<|im_end|>\n",
        ChatRole.Observation => $"<|im_start|>user\n<tool_response>\n{message.Content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
        _ => throw new ArgumentOutOfRangeException(nameof(message)),
    };

    /// <summary>
    /// Encodes a conversation of alternating prompt/answer messages (user or observation, then assistant or function)
    /// into (source ids, target ids) per turn. <paramref name="system"/> overrides the default; <paramref name="tools"/>
    /// is LLaMA-Factory's JSON list of tool definitions.
    /// </summary>
    public List<(List<int> Source, List<int> Target)> EncodeMultiturn(IReadOnlyList<ChatMessage> messages, string? system = null, string? tools = null)
    {
        if (messages.Count == 0 || messages.Count % 2 != 0)
            throw new ArgumentException($"a conversation needs prompt/answer pairs; got {messages.Count} messages");
        string systemText = string.IsNullOrEmpty(system) ? DefaultSystemPrompt : system;
        string toolText = string.IsNullOrEmpty(tools) ? "" : RenderTools(tools);
        var encoded = new List<List<int>>();
        for (int i = 0; i < messages.Count; i++)
        {
            var ids = new List<int>();
            if (i == 0 && (systemText.Length > 0 || toolText.Length > 0))
                ids.AddRange(tokenizer.Encode(Render(new ChatMessage(ChatRole.System, systemText + toolText))));
            ids.AddRange(tokenizer.Encode(Render(messages[i])));
            encoded.Add(ids);
        }
        return Enumerable.Range(0, messages.Count / 2).Select(k => (encoded[2 * k], encoded[(2 * k) + 1])).ToList();
    }

    /// <summary>Prompt ids for generation: all messages (ending with a user turn) rendered, ready for the answer.</summary>
    public List<int> EncodePrompt(IReadOnlyList<ChatMessage> messages, string? system = null)
    {
        var ids = new List<int>(tokenizer.Encode(Render(new ChatMessage(ChatRole.System, string.IsNullOrEmpty(system) ? DefaultSystemPrompt : system))));
        foreach (ChatMessage m in messages) ids.AddRange(tokenizer.Encode(Render(m)));
        return ids;
    }

    /// <summary>The qwen tool prompt appended to the system text (an empty list renders nothing).</summary>
    public static string RenderTools(string toolsJson)
    {
        JsonArray list;
        try
        {
            list = JsonNode.Parse(toolsJson) as JsonArray ?? throw new InvalidDataException("tools must be a JSON list");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"invalid tools JSON: {e.Message}", e);
        }
        if (list.Count == 0) return "";
        var text = new StringBuilder();
        foreach (JsonNode? tool in list)
        {
            JsonNode wrapped = tool?["type"]?.GetValue<string>() == "function" && tool["function"] is not null
                ? tool.DeepClone()
                : new JsonObject { ["type"] = "function", ["function"] = tool?.DeepClone() };
            text.Append('\n').Append(PythonJson.Dumps(wrapped));
        }
        return ToolsPreamble + text + ToolsPostamble;
    }

    static string RenderFunctionCalls(string content)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(content);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"invalid function call JSON: {e.Message}", e);
        }
        var calls = node is JsonArray array ? array.ToList() : [node];
        return string.Join("\n", calls.Select(c =>
            $"<tool_call>\n{{\"name\": {PythonJson.Dumps(c?["name"])}, \"arguments\": {PythonJson.Dumps(c?["arguments"])}}}\n</tool_call>"));
    }
}
