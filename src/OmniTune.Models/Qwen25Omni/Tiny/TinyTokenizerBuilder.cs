using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace OmniTune.Models.Qwen25Omni.Tiny;

/// <summary>The special tokens of a Qwen2.5-Omni tokenizer, in id order after the regular vocabulary.</summary>
public static class OmniSpecialTokens
{
    /// <summary>Added tokens in the order of ids 151643..151664 of the real tokenizer.</summary>
    public static readonly IReadOnlyList<string> InIdOrder =
    [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|box_end|>",
        "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>",
        "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
        "<|repo_name|>", "<|file_sep|>",
    ];
}

/// <summary>The files of a tiny byte-level BPE tokenizer and the ids they give.</summary>
/// <param name="Vocab">Regular tokens by id (bytes then merges).</param>
/// <param name="Merges">Merge rules in rank order.</param>
/// <param name="SpecialIds">Id of each special token.</param>
public sealed record TinyTokenizer(IReadOnlyList<string> Vocab, IReadOnlyList<(string Left, string Right)> Merges, IReadOnlyDictionary<string, int> SpecialIds)
{
    /// <summary>Total ids including special tokens.</summary>
    public int Count => Vocab.Count + SpecialIds.Count;

    /// <summary>Id of a regular token, or null.</summary>
    public int? IdOf(string token)
    {
        for (int i = 0; i < Vocab.Count; i++)
        {
            if (Vocab[i] == token) return i;
        }
        return null;
    }
}

/// <summary>
/// Trains a small byte-level BPE (GPT-2/Qwen2 format) on a built-in English corpus of chat words, so a tiny model has a
/// real tokenizer: 256 byte tokens, <c>mergeCount</c> merges, then the Qwen2.5-Omni special tokens.
/// </summary>
public static partial class TinyTokenizerBuilder
{
    const string Corpus = """
        system user assistant You are a helpful assistant. What is in the image? Describe the picture. What do you hear?
        The image shows a red circle on a blue background. The audio is a tone of four hundred hertz. The video shows a
        moving square. A cat sits on the mat. The dog runs in the park. There is a green triangle and a yellow square.
        What color is the shape? It is red. It is blue. It is green. It is yellow. How many objects are there? There are
        two objects. The sound is high. The sound is low. Please answer the question about the audio and the video.
        The quick brown fox jumps over the lazy dog. Hello world! Thank you. Yes. No. one two three four five six seven
        eight nine ten circle square triangle picture image video audio sound music speech voice question answer
        """;

    [GeneratedRegex(@"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex PreTokenizer();

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Trains the tokenizer deterministically.</summary>
    public static TinyTokenizer Build(int mergeCount = 256)
    {
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match m in PreTokenizer().Matches(Corpus.ReplaceLineEndings(" ")))
        {
            string w = ByteLevelAlphabet.Encode(m.Value);
            words[w] = words.GetValueOrDefault(w) + 1;
        }
        var split = words.ToDictionary(kv => kv.Key, kv => kv.Key.Select(c => c.ToString()).ToList(), StringComparer.Ordinal);
        var vocab = ByteLevelAlphabet.Ordered.Select(p => p.Char.ToString()).ToList();
        var merges = new List<(string, string)>();
        while (merges.Count < mergeCount)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (word, pieces) in split)
            {
                for (int i = 0; i + 1 < pieces.Count; i++)
                    pairs[(pieces[i], pieces[i + 1])] = pairs.GetValueOrDefault((pieces[i], pieces[i + 1])) + words[word];
            }
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal).ThenBy(p => p.Key.Item2, StringComparer.Ordinal).First().Key;
            merges.Add(best);
            vocab.Add(best.Item1 + best.Item2);
            foreach (var pieces in split.Values)
            {
                for (int i = 0; i + 1 < pieces.Count; i++)
                {
                    if (pieces[i] == best.Item1 && pieces[i + 1] == best.Item2)
                    {
                        pieces[i] = best.Item1 + best.Item2;
                        pieces.RemoveAt(i + 1);
                    }
                }
            }
        }
        var specials = OmniSpecialTokens.InIdOrder.Select((t, i) => (t, vocab.Count + i)).ToDictionary(p => p.t, p => p.Item2, StringComparer.Ordinal);
        return new TinyTokenizer(vocab, merges, specials);
    }

    /// <summary>Writes vocab.json, merges.txt, tokenizer_config.json, added_tokens.json and special_tokens_map.json.</summary>
    public static void Write(TinyTokenizer tokenizer, string folder)
    {
        var options = JsonOptions;
        var vocab = new JsonObject();
        for (int i = 0; i < tokenizer.Vocab.Count; i++) vocab[tokenizer.Vocab[i]] = i;
        File.WriteAllText(Path.Combine(folder, "vocab.json"), vocab.ToJsonString(options));
        File.WriteAllLines(Path.Combine(folder, "merges.txt"), tokenizer.Merges.Select(m => $"{m.Left} {m.Right}").Prepend("#version: 0.2"));

        var decoder = new JsonObject();
        foreach (var (token, id) in tokenizer.SpecialIds.OrderBy(p => p.Value))
        {
            decoder[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = token,
                ["lstrip"] = false,
                ["normalized"] = false,
                ["rstrip"] = false,
                ["single_word"] = false,
                ["special"] = true,
            };
        }
        var additional = new JsonArray(OmniSpecialTokens.InIdOrder.Where(t => t is not "<|endoftext|>").Select(t => (JsonNode)t!).ToArray());
        var config = new JsonObject
        {
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoder,
            ["additional_special_tokens"] = additional,
            ["bos_token"] = null,
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = "<|im_end|>",
            ["errors"] = "replace",
            ["model_max_length"] = 32768,
            ["pad_token"] = "<|endoftext|>",
            ["split_special_tokens"] = false,
            ["tokenizer_class"] = "Qwen2Tokenizer",
            ["unk_token"] = null,
        };
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), config.ToJsonString(options));
        var added = new JsonObject();
        foreach (var (token, id) in tokenizer.SpecialIds.OrderBy(p => p.Value)) added[token] = id;
        File.WriteAllText(Path.Combine(folder, "added_tokens.json"), added.ToJsonString(options));
        var map = new JsonObject
        {
            ["additional_special_tokens"] = additional.DeepClone(),
            ["eos_token"] = "<|im_end|>",
            ["pad_token"] = "<|endoftext|>",
        };
        File.WriteAllText(Path.Combine(folder, "special_tokens_map.json"), map.ToJsonString(options));
    }
}
