using System.IO.Compression;
using OmniTune.Core.Tensors;
using static TorchSharp.torch;

namespace OmniTune.Core.PyTorch;

/// <summary>
/// A file written by <c>torch.save</c> (PyTorch's zip format: <c>archive/data.pkl</c> plus one entry per storage under
/// <c>archive/data/</c>), opened lazily: the pickle is read at once (after <see cref="PickleGlobals"/> has checked every
/// class it names against the allowed list — nothing in the file is executed), tensors are <see cref="PickledTensor"/>
/// references read one at a time with <see cref="Read"/>, so memory is bounded by the tensor being read.
/// </summary>
public sealed class PyTorchFile : IDisposable
{
    readonly ZipArchive archive;
    readonly string prefix;

    PyTorchFile(string path, ZipArchive archive, string prefix, object? root)
    {
        Path = path;
        this.archive = archive;
        this.prefix = prefix;
        Root = root;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>The unpickled object: dictionaries (<see cref="System.Collections.IDictionary"/>), lists, tuples (object[]), numbers, strings, <see cref="PickledTensor"/>s and <see cref="PickledObject"/>s.</summary>
    public object? Root { get; }

    /// <summary>Whether <paramref name="path"/> starts like a zip file (PyTorch's format), as opposed to safetensors.</summary>
    public static bool IsZip(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = File.OpenRead(path);
        return stream.Read(head) == 4 && head[0] == 0x50 && head[1] == 0x4b && head[2] == 0x03 && head[3] == 0x04;
    }

    /// <summary>Opens <paramref name="path"/>; errors name the file and what is wrong with it.</summary>
    public static PyTorchFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        if (!IsZip(path))
            throw new InvalidDataException($"{path}: not a PyTorch zip file (the legacy torch.save format of PyTorch before 1.6 is not read: re-save it with a newer PyTorch)");
        var archive = ZipFile.OpenRead(path);
        try
        {
            ZipArchiveEntry pkl = archive.Entries.FirstOrDefault(e => e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1)
                ?? throw new InvalidDataException($"{path}: a zip file without data.pkl is not a torch.save file");
            string prefix = pkl.FullName[..^"data.pkl".Length];
            byte[] pickle = new byte[pkl.Length];
            using (Stream s = pkl.Open()) s.ReadExactly(pickle);
            object? root = PickleAllowList.Load(pickle, path, pid => Storage(pid, path));
            return new PyTorchFile(path, archive, prefix, root);
        }
        catch
        {
            archive.Dispose();
            throw;
        }
    }

    static object Storage(object pid, string path)
    {
        if (pid is not object[] { Length: 5 } id || id[0] as string != "storage")
            throw new InvalidDataException($"{path}: unknown persistent id in the pickle (expected ('storage', type, key, location, size))");
        string type = id[1]?.ToString() ?? "";
        string name = type[(type.LastIndexOf('.') + 1)..];
        if (!PickleAllowList.Storages.TryGetValue(name, out ScalarType dtype)) throw new InvalidDataException($"{path}: unknown storage type '{type}'");
        return new PickledStorage(Convert.ToString(id[2], System.Globalization.CultureInfo.InvariantCulture)!, dtype, Convert.ToInt64(id[4]));
    }

    /// <summary>Reads <paramref name="tensor"/> (CPU, its stored dtype, contiguous).</summary>
    public unsafe Tensor Read(PickledTensor tensor)
    {
        string name = prefix + "data/" + tensor.StorageKey;
        ZipArchiveEntry entry = archive.GetEntry(name) ?? throw new InvalidDataException($"{Path}: storage '{name}' named by the pickle is missing from the archive");
        int size = TensorMemory.ElementSize(tensor.DType);
        bool contiguous = tensor.IsContiguous;
        long first = contiguous ? tensor.Offset : 0, count = contiguous ? tensor.ElementCount : tensor.Extent;
        if ((first + count) * size > entry.Length)
            throw new InvalidDataException($"{Path}: storage '{name}' holds {entry.Length} bytes, the tensor needs {(first + count) * size} (truncated file?)");
        Tensor result = empty(count, tensor.DType);
        try
        {
            using Stream stream = entry.Open();
            Skip(stream, first * size);
            byte* target = (byte*)TensorMemory.DataPointer(result);
            for (long remaining = count * size; remaining > 0;)
            {
                int chunk = (int)Math.Min(remaining, 1 << 30);
                stream.ReadExactly(new Span<byte>(target, chunk));
                target += chunk;
                remaining -= chunk;
            }
            if (contiguous) return result.reshape(tensor.Shape);
            using (result) return result.as_strided(tensor.Shape, tensor.Stride, tensor.Offset).contiguous();
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    static void Skip(Stream stream, long bytes)
    {
        if (bytes == 0) return;
        if (stream.CanSeek)
        {
            stream.Seek(bytes, SeekOrigin.Current);
            return;
        }
        byte[] buffer = new byte[Math.Min(bytes, 1 << 20)];
        while (bytes > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(bytes, buffer.Length));
            if (read <= 0) throw new EndOfStreamException();
            bytes -= read;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => archive.Dispose();
}
