using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OmniTune.Data.Text;

/// <summary>
/// The Qwen2 byte-level BPE tokenizer as Hugging Face's <c>Qwen2Tokenizer</c> encodes: added tokens (special or not)
/// are split out first and never normalised; every other segment is NFC-normalised, split by Qwen's pre-tokenizer
/// regex and encoded with byte-level BPE. No BOS/EOS is added. The BPE itself is Microsoft.ML.Tokenizers' BpeTokenizer.
/// </summary>
public sealed partial class Qwen2Tokenizer
{
    /// <summary>Qwen2's pre-tokenizer pattern (from its tokenizer.json).</summary>
    public const string PreTokenizerPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    readonly BpeTokenizer bpe;
    readonly Dictionary<string, int> added;
    readonly Dictionary<int, string> addedById;
    readonly HashSet<int> special;
    readonly Regex? addedPattern;

    Qwen2Tokenizer(BpeTokenizer bpe, int regularCount, Dictionary<string, int> added, HashSet<int> special)
    {
        this.bpe = bpe;
        RegularCount = regularCount;
        this.added = added;
        this.special = special;
        addedById = added.ToDictionary(p => p.Value, p => p.Key);
        addedPattern = added.Count == 0
            ? null
            : new Regex(string.Join("|", added.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)), RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    /// <summary>Regular (BPE) token ids: 0 .. RegularCount − 1.</summary>
    public int RegularCount { get; }

    /// <summary>Added tokens by text.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => added;

    /// <summary>All ids the tokenizer can produce (regular + added).</summary>
    public int Count => Math.Max(RegularCount, added.Count == 0 ? 0 : added.Values.Max() + 1);

    /// <summary>
    /// Loads a tokenizer from a Hugging Face model folder: vocab.json + merges.txt with added tokens from
    /// tokenizer_config.json's added_tokens_decoder and/or added_tokens.json; or tokenizer.json alone.
    /// </summary>
    public static Qwen2Tokenizer Load(string folder)
    {
        string vocabPath = Path.Combine(folder, "vocab.json"), mergesPath = Path.Combine(folder, "merges.txt");
        string tokenizerJson = Path.Combine(folder, "tokenizer.json");
        Dictionary<string, int> vocab;
        List<string> merges;
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        if (File.Exists(vocabPath) && File.Exists(mergesPath))
        {
            vocab = ReadJson<Dictionary<string, int>>(vocabPath);
            merges = File.ReadLines(mergesPath).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();
        }
        else if (File.Exists(tokenizerJson))
        {
            (vocab, merges) = ReadTokenizerJsonModel(tokenizerJson);
            ReadAddedTokensFromTokenizerJson(tokenizerJson, added, special);
        }
        else
        {
            throw new FileNotFoundException($"{folder}: no tokenizer files (vocab.json + merges.txt, or tokenizer.json)");
        }
        ReadAddedTokens(folder, added, special);
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(new Regex(PreTokenizerPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant), null),
        };
        return new Qwen2Tokenizer(BpeTokenizer.Create(options), vocab.Count, added, special);
    }

    /// <summary>Encodes text; added tokens in the text become their ids.</summary>
    public List<int> Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        int start = 0;
        if (addedPattern is not null)
        {
            for (Match m = addedPattern.Match(text); m.Success; m = m.NextMatch())
            {
                EncodeOrdinary(text.AsSpan(start, m.Index - start), ids);
                ids.Add(added[m.Value]);
                start = m.Index + m.Length;
            }
        }
        EncodeOrdinary(text.AsSpan(start), ids);
        return ids;
    }

    void EncodeOrdinary(ReadOnlySpan<char> segment, List<int> ids)
    {
        if (segment.IsEmpty) return;
        ids.AddRange(bpe.EncodeToIds(Nfc(segment), considerPreTokenization: true, considerNormalization: false));
    }

    /// <summary>
    /// NFC, as Hugging Face's Qwen2 tokenizer normalises. Not <see cref="string.Normalize()"/>: with .NET's invariant
    /// globalization (DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1, common in slim containers) that returns the text unchanged,
    /// so the ids would depend on the runtime's setting; ENSNormalize's NF carries its own Unicode data. Text below U+0300
    /// (no combining marks) is already NFC and skips it.
    /// </summary>
    static string Nfc(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (c >= '\u0300') return ADRaffy.ENSNormalize.ENSNormalize.NF.NFC(text.ToString());
        }
        return text.ToString();
    }

    /// <summary>Decodes ids to text (invalid UTF-8 becomes U+FFFD); special tokens are dropped with <paramref name="skipSpecial"/>.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecial = false)
    {
        var text = new StringBuilder();
        var run = new List<int>();
        void Flush()
        {
            if (run.Count == 0) return;
            text.Append(bpe.Decode(run));
            run.Clear();
        }
        foreach (int id in ids)
        {
            if (addedById.TryGetValue(id, out string? token))
            {
                Flush();
                if (!(skipSpecial && special.Contains(id))) text.Append(token);
            }
            else if (id >= 0 && id < RegularCount)
            {
                run.Add(id);
            }
            else
            {
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the tokenizer's {Count} ids");
            }
        }
        Flush();
        return text.ToString();
    }

    /// <summary>Id of a token string (added token or regular vocabulary entry).</summary>
    public int TokenToId(string token) =>
        added.TryGetValue(token, out int id) ? id
        : bpe.Vocabulary.TryGetValue(token, out id) ? id
        : throw new KeyNotFoundException($"token '{token}' is not in the tokenizer");

    /// <summary>Whether <paramref name="id"/> is a special token.</summary>
    public bool IsSpecial(int id) => special.Contains(id);

    static T ReadJson<T>(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty JSON");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
    }

    static void ReadAddedTokens(string folder, Dictionary<string, int> added, HashSet<int> special)
    {
        string config = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(config))
        {
            using var document = JsonDocument.Parse(File.ReadAllText(config));
            if (document.RootElement.TryGetProperty("added_tokens_decoder", out JsonElement decoder))
            {
                foreach (JsonProperty p in decoder.EnumerateObject())
                {
                    int id = int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture);
                    added[p.Value.GetProperty("content").GetString()!] = id;
                    if (!p.Value.TryGetProperty("special", out JsonElement s) || s.GetBoolean()) special.Add(id);
                }
            }
        }
        string addedPath = Path.Combine(folder, "added_tokens.json");
        if (File.Exists(addedPath))
        {
            foreach (var (token, id) in ReadJson<Dictionary<string, int>>(addedPath))
            {
                if (added.TryAdd(token, id)) special.Add(id);
            }
        }
    }

    static (Dictionary<string, int> Vocab, List<string> Merges) ReadTokenizerJsonModel(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement model = document.RootElement.GetProperty("model");
        var vocab = model.GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32(), StringComparer.Ordinal);
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!)
            .ToList();
        return (vocab, merges);
    }

    static void ReadAddedTokensFromTokenizerJson(string path, Dictionary<string, int> added, HashSet<int> special)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        if (!document.RootElement.TryGetProperty("added_tokens", out JsonElement list)) return;
        foreach (JsonElement token in list.EnumerateArray())
        {
            int id = token.GetProperty("id").GetInt32();
            added[token.GetProperty("content").GetString()!] = id;
            if (token.TryGetProperty("special", out JsonElement s) && s.GetBoolean()) special.Add(id);
        }
    }
}
