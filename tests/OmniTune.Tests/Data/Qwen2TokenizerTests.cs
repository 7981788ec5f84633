using System.Text.Json;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;

namespace OmniTune.Tests.Data;

public sealed class Qwen2TokenizerTests
{
    const string Assets = "assets/qwen2-tokenizer";
    static readonly Lazy<Qwen2Tokenizer> Real = new(() => Qwen2Tokenizer.Load(Path.Combine(RepositoryPaths.Shared, Assets)));

    [SharedAssetFact(Assets + "/golden/llama.cpp-ggml-vocab-qwen2.gguf.inp")]
    public void All_llama_cpp_golden_tokenizations_are_exact()
    {
        string golden = Path.Combine(RepositoryPaths.Shared, Assets, "golden");
        string[] inputs = File.ReadAllText(Path.Combine(golden, "llama.cpp-ggml-vocab-qwen2.gguf.inp")).Split("\n__ggml_vocab_test__\n");
        string[] outputs = File.ReadAllLines(Path.Combine(golden, "llama.cpp-ggml-vocab-qwen2.gguf.out"));
        Assert.Equal(46, outputs.Length);
        var failures = new List<string>();
        for (int i = 0; i < outputs.Length; i++)
        {
            int[] expected = outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            var actual = Real.Value.Encode(inputs[i]);
            if (!expected.SequenceEqual(actual)) failures.Add($"case {i} {JsonSerializer.Serialize(inputs[i])}: expected [{string.Join(' ', expected)}] got [{string.Join(' ', actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SharedAssetFact(Assets + "/golden/transformers-qwen2-integration.json")]
    public void The_transformers_integration_tokenizations_are_exact_and_decode_back()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.Shared, Assets, "golden", "transformers-qwen2-integration.json")));
        int count = 0;
        foreach (JsonElement c in document.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            int[] ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(ids, Real.Value.Encode(text));
            Assert.Equal(text, Real.Value.Decode(ids));
            count++;
        }
        Assert.Equal(3, count);
    }

    [SharedAssetFact(Assets + "/vocab.json")]
    public void Special_tokens_are_split_before_bpe_and_the_system_block_has_the_reference_ids()
    {
        var ids = Real.Value.Encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
        Assert.Equal([151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198], ids);
        Assert.Equal("system\nYou are a helpful assistant.\n", Real.Value.Decode(ids, skipSpecial: true));
    }

    [Fact]
    public void Nfc_normalisation_makes_composed_and_decomposed_text_encode_alike()
    {
        using var dir = new TempFolder();
        TinyTokenizerBuilder.Write(TinyTokenizerBuilder.Build(), dir.Path);
        var tokenizer = Qwen2Tokenizer.Load(dir.Path);
        Assert.Equal(tokenizer.Encode("caf\u00e9"), tokenizer.Encode("cafe\u0301"));
    }

    /// <summary>
    /// <c>omnitune data tokenize</c> in a process started with .NET's invariant globalization (slim containers): one
    /// JSON array of ids per input text.
    /// </summary>
    static List<int[]> TokenizeInvariant(string tokenizerFolder, IEnumerable<string> texts)
    {
        using var dir = new TempFolder();
        string input = Path.Combine(dir.Path, "texts.jsonl");
        File.WriteAllLines(input, texts.Select(t => JsonSerializer.Serialize(t)));
        var (code, output, error) = ChildProcess.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "omnitune.dll"), "data", "tokenize", "--model", tokenizerFolder, "--input", input],
            new Dictionary<string, string> { ["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "1" });
        Assert.True(code == 0, error);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonSerializer.Deserialize<int[]>(l)!).ToList();
    }

    [Fact]
    public void Nfc_holds_under_invariant_globalization_too()
    {
        using var dir = new TempFolder();
        TinyTokenizerBuilder.Write(TinyTokenizerBuilder.Build(), dir.Path);
        var ids = TokenizeInvariant(dir.Path, ["caf\u00e9", "cafe\u0301", "\u212B ng\u00e5"]);
        var tokenizer = Qwen2Tokenizer.Load(dir.Path);
        Assert.Equal(tokenizer.Encode("caf\u00e9"), ids[0]);
        Assert.Equal(ids[0], ids[1]);   // before: the decomposed accent stayed decomposed under invariant globalization
        Assert.Equal(tokenizer.Encode("\u00c5 ng\u00e5"), ids[2]);
    }

    [SharedAssetFact(Assets + "/golden/llama.cpp-ggml-vocab-qwen2.gguf.inp")]
    public void The_llama_cpp_goldens_hold_under_invariant_globalization()
    {
        string golden = Path.Combine(RepositoryPaths.Shared, Assets, "golden");
        string[] inputs = File.ReadAllText(Path.Combine(golden, "llama.cpp-ggml-vocab-qwen2.gguf.inp")).Split("\n__ggml_vocab_test__\n");
        string[] outputs = File.ReadAllLines(Path.Combine(golden, "llama.cpp-ggml-vocab-qwen2.gguf.out"));
        var actual = TokenizeInvariant(Path.Combine(RepositoryPaths.Shared, Assets), inputs.Take(outputs.Length));
        for (int i = 0; i < outputs.Length; i++)
            Assert.True(outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).SequenceEqual(actual[i]), $"case {i} {JsonSerializer.Serialize(inputs[i])}");
    }

    [Fact]
    public void The_tiny_tokenizer_round_trips_text_with_special_tokens()
    {
        using var dir = new TempFolder();
        var built = TinyTokenizerBuilder.Build();
        TinyTokenizerBuilder.Write(built, dir.Path);
        var tokenizer = Qwen2Tokenizer.Load(dir.Path);
        string text = "<|im_start|>user\nWhat is in the image? 😀 naïve<|vision_bos|><|IMAGE|><|vision_eos|><|im_end|>\n";
        var ids = tokenizer.Encode(text);
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.Equal(built.SpecialIds["<|IMAGE|>"], tokenizer.TokenToId("<|IMAGE|>"));
        Assert.Contains(built.SpecialIds["<|im_start|>"], ids);
        Assert.True(ids.Count < System.Text.Encoding.UTF8.GetByteCount(text), "merges should shorten common words");
    }

    [Fact]
    public void A_folder_without_tokenizer_files_is_an_error_naming_it()
    {
        using var dir = new TempFolder();
        var error = Assert.Throws<FileNotFoundException>(() => Qwen2Tokenizer.Load(dir.Path));
        Assert.Contains(dir.Path, error.Message);
    }
}
