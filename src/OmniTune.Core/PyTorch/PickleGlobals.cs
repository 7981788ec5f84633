using System.Buffers.Binary;
using System.Text;

namespace OmniTune.Core.PyTorch;

/// <summary>
/// Lists the Python globals (module.name) a pickle refers to, by walking its opcodes without executing any, so a loader
/// can refuse a file before anything in it is constructed. Covers protocols 0–5; <c>STACK_GLOBAL</c> names are taken
/// from the strings pushed or fetched from the memo just before it. Razorvine.Pickle (the unpickler used afterwards)
/// has no per-load hook for globals, which is why this scan exists.
/// </summary>
public static class PickleGlobals
{
    /// <summary>The globals <paramref name="pickle"/> names, in order of appearance; an error names a truncated or unknown opcode.</summary>
    public static IReadOnlyList<string> Scan(ReadOnlySpan<byte> pickle, string path)
    {
        var found = new List<string>();
        var memo = new Dictionary<long, string>();
        long memoCount = 0;
        string? lastString = null, beforeLast = null;   // the two most recent string pushes (for STACK_GLOBAL)
        bool topIsString = false;
        int i = 0;

        ReadOnlySpan<byte> Take(ReadOnlySpan<byte> data, int count, byte op)
        {
            if (count < 0 || i + count > data.Length) throw new InvalidDataException($"{path}: pickle truncated inside opcode 0x{op:x2} at byte {i}");
            var slice = data.Slice(i, count);
            i += count;
            return slice;
        }
        string Line(ReadOnlySpan<byte> data, byte op)
        {
            int end = data[i..].IndexOf((byte)'\n');
            if (end < 0) throw new InvalidDataException($"{path}: pickle truncated inside opcode 0x{op:x2} at byte {i}");
            string text = Encoding.UTF8.GetString(data.Slice(i, end));
            i += end + 1;
            return text;
        }
        void PushString(string s)
        {
            beforeLast = lastString;
            lastString = s;
            topIsString = true;
        }
        void Memoize(long index)
        {
            if (topIsString && lastString is not null) memo[index] = lastString;
        }
        long Length(ReadOnlySpan<byte> bytes) => bytes.Length switch
        {
            1 => bytes[0],
            4 => BinaryPrimitives.ReadUInt32LittleEndian(bytes),
            _ => checked((long)BinaryPrimitives.ReadUInt64LittleEndian(bytes)),
        };

        while (i < pickle.Length)
        {
            byte op = pickle[i++];
            bool pushedString = false;
            switch (op)
            {
                case (byte)'.':   // STOP
                    return found;
                case (byte)'(' or (byte)'0' or (byte)'1' or (byte)'2' or (byte)'N' or (byte)'Q' or (byte)'R' or (byte)'a' or (byte)'b' or (byte)'d'
                    or (byte)'}' or (byte)'e' or (byte)'l' or (byte)']' or (byte)'o' or (byte)'s' or (byte)'t' or (byte)')' or (byte)'u'
                    or 0x81 or 0x85 or 0x86 or 0x87 or 0x88 or 0x89 or 0x8f or 0x90 or 0x91 or 0x92 or 0x97 or 0x98:
                    break;
                case 0x94:   // MEMOIZE
                    Memoize(memoCount++);
                    pushedString = topIsString;
                    break;
                case (byte)'F' or (byte)'I' or (byte)'L' or (byte)'P':
                    Line(pickle, op);
                    break;
                case (byte)'S' or (byte)'V':
                    PushString(Line(pickle, op));
                    pushedString = true;
                    break;
                case (byte)'g':
                    pushedString = memo.TryGetValue(long.Parse(Line(pickle, op), System.Globalization.CultureInfo.InvariantCulture), out string? got) && Push(got);
                    break;
                case (byte)'p':
                    {
                        long index = long.Parse(Line(pickle, op), System.Globalization.CultureInfo.InvariantCulture);
                        Memoize(index);
                        memoCount = Math.Max(memoCount, index + 1);
                        pushedString = topIsString;
                        break;
                    }
                case (byte)'c' or (byte)'i':   // GLOBAL, INST
                    {
                        string module = Line(pickle, op), name = Line(pickle, op);
                        found.Add(module + "." + name);
                        break;
                    }
                case 0x93:   // STACK_GLOBAL
                    if (beforeLast is null || lastString is null)
                        throw new InvalidDataException($"{path}: STACK_GLOBAL at byte {i - 1} without the module and name strings before it");
                    found.Add(beforeLast + "." + lastString);
                    break;
                case (byte)'K' or (byte)'h' or (byte)'q' or 0x80:   // BININT1, BINGET, BINPUT, PROTO
                    {
                        byte value = Take(pickle, 1, op)[0];
                        if (op == (byte)'h') pushedString = memo.TryGetValue(value, out string? s) && Push(s);
                        if (op == (byte)'q')
                        {
                            Memoize(value);
                            memoCount = Math.Max(memoCount, value + 1L);
                            pushedString = topIsString;
                        }
                        break;
                    }
                case (byte)'M':
                    Take(pickle, 2, op);
                    break;
                case (byte)'J' or (byte)'j' or (byte)'r':   // BININT, LONG_BINGET, LONG_BINPUT
                    {
                        uint value = BinaryPrimitives.ReadUInt32LittleEndian(Take(pickle, 4, op));
                        if (op == (byte)'j') pushedString = memo.TryGetValue(value, out string? s) && Push(s);
                        if (op == (byte)'r')
                        {
                            Memoize(value);
                            memoCount = Math.Max(memoCount, value + 1L);
                            pushedString = topIsString;
                        }
                        break;
                    }
                case (byte)'G' or 0x95:   // BINFLOAT, FRAME
                    Take(pickle, 8, op);
                    break;
                case 0x82 or 0x83 or 0x84:
                    throw new InvalidDataException($"{path}: the pickle uses the copyreg extension registry (opcode 0x{op:x2}), which is refused");
                case 0x8a or (byte)'U' or (byte)'C' or 0x8c:   // LONG1, SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE
                case 0x8b or (byte)'T' or (byte)'X' or (byte)'B':   // LONG4, BINSTRING, BINUNICODE, BINBYTES
                case 0x8d or 0x8e or 0x96:   // BINUNICODE8, BINBYTES8, BYTEARRAY8
                    {
                        int width = op switch
                        {
                            0x8a or (byte)'U' or (byte)'C' or 0x8c => 1,
                            0x8b or (byte)'T' or (byte)'X' or (byte)'B' => 4,
                            _ => 8,
                        };
                        long length = Length(Take(pickle, width, op));
                        if (length > int.MaxValue) throw new InvalidDataException($"{path}: pickle item of {length} bytes at byte {i}");
                        var payload = Take(pickle, (int)length, op);
                        if (op is (byte)'X' or 0x8c or 0x8d or (byte)'U' or (byte)'T')
                        {
                            PushString(Encoding.UTF8.GetString(payload));
                            pushedString = true;
                        }
                        break;
                    }
                default:
                    throw new InvalidDataException($"{path}: unknown pickle opcode 0x{op:x2} at byte {i - 1}");
            }
            topIsString = pushedString;
        }
        throw new InvalidDataException($"{path}: pickle ends without STOP");

        bool Push(string s)
        {
            PushString(s);
            return true;
        }
    }
}
