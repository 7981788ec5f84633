namespace OmniTune.Models.Qwen25Omni.Tiny;

/// <summary>
/// GPT-2's reversible byte → printable-character map used by byte-level BPE vocabularies (Qwen2 included): token ids
/// 0..255 are these characters in this order ("!" = 0).
/// </summary>
public static class ByteLevelAlphabet
{
    /// <summary>The 256 characters, indexed by their order in the vocabulary.</summary>
    public static readonly IReadOnlyList<(byte Byte, char Char)> Ordered = Build();

    /// <summary>Character for each byte value.</summary>
    public static readonly IReadOnlyDictionary<byte, char> CharOf = Ordered.ToDictionary(p => p.Byte, p => p.Char);

    static List<(byte, char)> Build()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1)
            .Concat(Enumerable.Range('¡', '¬' - '¡' + 1))
            .Concat(Enumerable.Range('®', 'ÿ' - '®' + 1))
            .ToList();
        var result = printable.Select(b => ((byte)b, (char)b)).ToList();
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            if (printable.Contains(b)) continue;
            result.Add(((byte)b, (char)(256 + next++)));
        }
        return result;
    }

    /// <summary>Vocabulary id of each byte's single-byte token.</summary>
    public static readonly IReadOnlyDictionary<byte, int> IdOf = Ordered.Select((p, id) => (p.Byte, id)).ToDictionary(p => p.Byte, p => p.id);

    /// <summary>Maps UTF-8 bytes of <paramref name="text"/> to alphabet characters.</summary>
    public static string Encode(string text) => new(System.Text.Encoding.UTF8.GetBytes(text).Select(b => CharOf[b]).ToArray());
}
