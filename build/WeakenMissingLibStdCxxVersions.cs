// Compiled by MSBuild's RoslynCodeTaskFactory (see LibTorchSharpGlibcxxFix.targets); not part of any project.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakenMissingLibStdCxxVersions : Task
{
    const uint ShtRela = 4, ShtRel = 9, ShtDynsym = 11, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
    const ushort VerFlagWeak = 0x2;

    static readonly string[] WellKnownLibStdCxx =
    {
        "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
    };

    [Required] public ITaskItem[] Libraries { get; set; } = Array.Empty<ITaskItem>();
    public string SystemLibStdCxx { get; set; } = "";

    public override bool Execute()
    {
        string? system = string.IsNullOrEmpty(SystemLibStdCxx) ? WellKnownLibStdCxx.FirstOrDefault(File.Exists) : SystemLibStdCxx;
        if (system == null || !File.Exists(system))
        {
            Log.LogWarning("LibTorchSharp fix: no system libstdc++.so.6 found; set LibTorchSharpSystemLibStdCxx. Skipping.");
            return true;
        }
        byte[] systemBytes = File.ReadAllBytes(system);
        foreach (ITaskItem item in Libraries)
        {
            string path = item.GetMetadata("FullPath");
            try
            {
                Patch(path, system, systemBytes);
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
            {
                Log.LogError("LibTorchSharp fix: cannot patch {0}: {1}", path, e.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }

    sealed class Section
    {
        public uint Type; public long Offset; public long Size; public uint Link; public long EntrySize;
    }

    void Patch(string path, string system, byte[] systemBytes)
    {
        byte[] elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("not a little-endian ELF64 file");
        long shoff = BitConverter.ToInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        var sections = new List<Section>();
        for (int i = 0; i < shnum; i++)
        {
            long h = shoff + (long)i * shentsize;
            sections.Add(new Section
            {
                Type = BitConverter.ToUInt32(elf, (int)h + 4),
                Offset = BitConverter.ToInt64(elf, (int)h + 24),
                Size = BitConverter.ToInt64(elf, (int)h + 32),
                Link = BitConverter.ToUInt32(elf, (int)h + 40),
                EntrySize = BitConverter.ToInt64(elf, (int)h + 56),
            });
        }
        Section? verneed = sections.FirstOrDefault(s => s.Type == ShtGnuVerneed);
        if (verneed == null) return;
        Section dynstr = sections[(int)verneed.Link];

        // Collect the libstdc++ version needs (Vernaux entries) that the system library does not define.
        var missing = new List<(int AuxOffset, ushort Index, string Name)>();
        long needOffset = verneed.Offset;
        while (true)
        {
            ushort count = BitConverter.ToUInt16(elf, (int)needOffset + 2);
            string file = ReadString(elf, dynstr.Offset + BitConverter.ToUInt32(elf, (int)needOffset + 4));
            long auxOffset = needOffset + BitConverter.ToUInt32(elf, (int)needOffset + 8);
            for (int a = 0; a < count; a++)
            {
                ushort flags = BitConverter.ToUInt16(elf, (int)auxOffset + 4);
                ushort index = BitConverter.ToUInt16(elf, (int)auxOffset + 6);
                string name = ReadString(elf, dynstr.Offset + BitConverter.ToUInt32(elf, (int)auxOffset + 8));
                if (file.StartsWith("libstdc++.so", StringComparison.Ordinal) && (flags & VerFlagWeak) == 0 && !Defines(systemBytes, name))
                    missing.Add(((int)auxOffset, index, name));
                uint nextAux = BitConverter.ToUInt32(elf, (int)auxOffset + 12);
                if (nextAux == 0) break;
                auxOffset += nextAux;
            }
            uint next = BitConverter.ToUInt32(elf, (int)needOffset + 12);
            if (next == 0) break;
            needOffset += next;
        }
        if (missing.Count == 0) return;

        // Safety: a relocation that binds a symbol of a missing version means the library really needs it.
        Section? versym = sections.FirstOrDefault(s => s.Type == ShtGnuVersym);
        Section? dynsym = sections.FirstOrDefault(s => s.Type == ShtDynsym);
        if (versym == null || dynsym == null) throw new InvalidDataException(".gnu.version or .dynsym missing");
        int dynsymIndex = sections.IndexOf(dynsym);
        Section symNames = sections[(int)dynsym.Link];
        var missingIndexes = new HashSet<ushort>(missing.Select(m => m.Index));
        foreach (Section rel in sections.Where(s => (s.Type == ShtRela || s.Type == ShtRel) && s.Link == dynsymIndex))
        {
            long entry = rel.EntrySize > 0 ? rel.EntrySize : (rel.Type == ShtRela ? 24 : 16);
            for (long r = rel.Offset; r + entry <= rel.Offset + rel.Size; r += entry)
            {
                long symbol = (long)(BitConverter.ToUInt64(elf, (int)r + 8) >> 32);
                if (symbol == 0) continue;
                ushort version = (ushort)(BitConverter.ToUInt16(elf, (int)(versym.Offset + symbol * 2)) & 0x7fff);
                if (!missingIndexes.Contains(version)) continue;
                string name = ReadString(elf, symNames.Offset + BitConverter.ToUInt32(elf, (int)(dynsym.Offset + symbol * 24)));
                string versionName = missing.First(m => m.Index == version).Name;
                throw new InvalidDataException($"it really uses {name}@{versionName}, which {system} lacks: a newer libstdc++ is required");
            }
        }

        foreach (var m in missing)
        {
            ushort flags = BitConverter.ToUInt16(elf, m.AuxOffset + 4);
            BitConverter.GetBytes((ushort)(flags | VerFlagWeak)).CopyTo(elf, m.AuxOffset + 4);
        }

        // Write a sibling file and swap it in, so a hard link into the NuGet cache is never written through;
        // keep the original timestamp so incremental copies keep skipping the file.
        DateTime modified = File.GetLastWriteTimeUtc(path);
        string temp = path + ".weakened.tmp";
        File.Copy(path, temp, overwrite: true);
        File.WriteAllBytes(temp, elf);
        File.SetLastWriteTimeUtc(temp, modified);
        File.Delete(path);
        File.Move(temp, path);
        Log.LogMessage(MessageImportance.High, "LibTorchSharp fix: marked {0} weak in {1} ({2} lacks it).",
            string.Join(", ", missing.Select(m => m.Name)), path, system);
    }

    static bool Defines(byte[] library, string version)
    {
        byte[] needle = Encoding.ASCII.GetBytes("\0" + version + "\0");
        for (int i = 0; i + needle.Length <= library.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && library[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    static string ReadString(byte[] data, long offset)
    {
        int end = (int)offset;
        while (data[end] != 0) end++;
        return Encoding.ASCII.GetString(data, (int)offset, end - (int)offset);
    }
}
