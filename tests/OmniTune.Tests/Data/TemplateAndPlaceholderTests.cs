using OmniTune.Data.Processing;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Positions;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

public sealed class TemplateAndPlaceholderTests
{
    const string Assets = "assets/qwen2-tokenizer";

    static Qwen2Tokenizer TinyTokenizer()
    {
        using var dir = new TempFolder();
        TinyTokenizerBuilder.Write(TinyTokenizerBuilder.Build(), dir.Path);
        return Qwen2Tokenizer.Load(dir.Path);
    }

    static readonly ChatMessage[] TwoTurns =
    [
        new(ChatRole.User, "How are you"), new(ChatRole.Assistant, "I am fine!"),
        new(ChatRole.User, "你好"), new(ChatRole.Assistant, "很高兴认识你！"),
    ];

    [Fact]
    public void Two_turns_render_into_the_reference_sources_and_targets()
    {
        var tokenizer = TinyTokenizer();
        var pairs = new Qwen2OmniTemplate(tokenizer).EncodeMultiturn(TwoTurns);
        Assert.Equal(2, pairs.Count);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\n", tokenizer.Decode(pairs[0].Source));
        Assert.Equal("I am fine!<|im_end|>\n", tokenizer.Decode(pairs[0].Target));
        Assert.Equal("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n", tokenizer.Decode(pairs[1].Source));
        Assert.Equal("很高兴认识你！<|im_end|>\n", tokenizer.Decode(pairs[1].Target));
    }

    [SharedAssetFact(Assets + "/vocab.json")]
    public void Slots_are_tokenized_separately_with_the_real_tokenizer()
    {
        var tokenizer = Qwen2Tokenizer.Load(Path.Combine(RepositoryPaths.Shared, Assets));
        var template = new Qwen2OmniTemplate(tokenizer);
        var pairs = template.EncodeMultiturn([new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "\nHello")]);
        Assert.Equal([151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198], pairs[0].Source.Take(11));
        Assert.Equal(198, pairs[0].Target[0]);                   // the answer's leading newline is its own token,
        Assert.Equal([151645, 198], pairs[0].Target[^2..]);       // and the turn ends with <|im_end|> "\n", both trained
        Assert.Equal([151645], template.StopTokenIds);
        Assert.NotEqual(tokenizer.Encode("<|im_start|>assistant\n\nHello"), tokenizer.Encode("<|im_start|>assistant\n").Concat(pairs[0].Target.Take(2)).ToList());
    }

    [Fact]
    public void A_system_override_and_the_qwen_omni_system_prompt_are_used()
    {
        var tokenizer = TinyTokenizer();
        var custom = new Qwen2OmniTemplate(tokenizer).EncodeMultiturn(TwoTurns[..2], system: "Be brief.");
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>", tokenizer.Decode(custom[0].Source), StringComparison.Ordinal);
        var omni = new Qwen2OmniTemplate(tokenizer, Qwen2OmniTemplate.QwenOmniSystem).EncodeMultiturn(TwoTurns[..2]);
        Assert.Contains("virtual human developed by the Qwen Team", tokenizer.Decode(omni[0].Source));
    }

    [Fact]
    public void Tools_extend_the_system_prompt_and_function_calls_render_as_tool_call_blocks()
    {
        string tools = Qwen2OmniTemplate.RenderTools("""[{"name":"get_weather","description":"Weather","parameters":{"type":"object"}}]""");
        Assert.Contains("# Tools", tools);
        Assert.Contains("""{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}""", tools);
        Assert.Equal("", Qwen2OmniTemplate.RenderTools("[]"));
        string call = Qwen2OmniTemplate.Render(new ChatMessage(ChatRole.Function, """{"name":"get_weather","arguments":{"city":"Zürich"}}"""));
        Assert.Equal("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call><|im_end|>\n", call);
        Assert.StartsWith("<|im_start|>user\n<tool_response>\nsunny\n</tool_response>", Qwen2OmniTemplate.Render(new ChatMessage(ChatRole.Observation, "sunny")), StringComparison.Ordinal);
    }

    static int Count(string text, string token) => (text.Length - text.Replace(token, "", StringComparison.Ordinal).Length) / token.Length;

    [Fact]
    public void Image_audio_and_video_tags_expand_by_their_grids_and_lengths()
    {
        var messages = new List<ChatMessage> { new(ChatRole.User, "<image>Look<audio> and <video>?"), new(ChatRole.Assistant, "Yes<image>") };
        var expanded = MultimodalPlaceholders.Expand(messages, [new GridThw(1, 12, 22), new GridThw(1, 4, 4)], [(new GridThw(5, 16, 16), 1.0)], [291], false, 2);
        string user = expanded[0].Content;
        Assert.StartsWith("<|vision_bos|>" + string.Concat(Enumerable.Repeat("<|IMAGE|>", 66)) + "<|vision_eos|>Look<|audio_bos|>", user, StringComparison.Ordinal);
        Assert.Equal(66, Count(user, "<|IMAGE|>"));
        Assert.Equal(73, Count(user, "<|AUDIO|>"));
        Assert.Equal(320, Count(user, "<|VIDEO|>"));
        Assert.Equal(4, Count(expanded[1].Content, "<|IMAGE|>"));
    }

    [Fact]
    public void A_video_with_its_audio_interleaves_in_two_second_chunks()
    {
        var messages = new List<ChatMessage> { new(ChatRole.User, "<video><audio>What happens?"), new(ChatRole.Assistant, "A goal.") };
        // 4.mp4 + 4.mp3 style: grid (5,16,16), 1 s per grid, 125 audio tokens (reference §4.4)
        var expanded = MultimodalPlaceholders.Expand(messages, [], [(new GridThw(5, 16, 16), 1.0)], [500], true, 2);
        string V(int n) => string.Concat(Enumerable.Repeat("<|VIDEO|>", n));
        string A(int n) => string.Concat(Enumerable.Repeat("<|AUDIO|>", n));
        Assert.Equal(125, AudioLengths.Tokens(500));
        Assert.Equal("<|vision_bos|><|audio_bos|>" + V(128) + A(50) + V(128) + A(50) + V(64) + A(25) + "<|audio_eos|><|vision_eos|>What happens?", expanded[0].Content);
    }

    [Fact]
    public void Placeholder_counts_that_disagree_with_the_media_are_errors_naming_both_counts()
    {
        var messages = new List<ChatMessage> { new(ChatRole.User, "<image><image>?"), new(ChatRole.Assistant, "No") };
        var error = Assert.Throws<ArgumentException>(() => MultimodalPlaceholders.Expand(messages, [new GridThw(1, 4, 4)], [], [], false, 2));
        Assert.Equal("the sample has 2 <image> placeholder(s) but 1 image(s)", error.Message);
        var video = new List<ChatMessage> { new(ChatRole.User, "<audio><video>?"), new(ChatRole.Assistant, "No") };
        Assert.Contains("must be followed by an <audio>", Assert.Throws<ArgumentException>(() =>
            MultimodalPlaceholders.Expand(video, [], [(new GridThw(2, 4, 4), 1.0)], [100], true, 2)).Message);
    }
}
