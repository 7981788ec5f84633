using Microsoft.Win32.SafeHandles;
using OmniTune.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Core.Safetensors;

/// <summary>
/// One safetensors file read lazily: opening reads only the header; each tensor or slice is read with positional reads
/// (pread) straight into the tensor's memory when asked for, so a reader's memory is bounded by what it holds, not by
/// the file. (A memory mapping would do the same work but count every touched page of the file in the process's RSS.)
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    readonly SafeFileHandle handle;
    readonly SafetensorsHeader header;
    bool disposed;

    SafetensorsFile(string path, SafetensorsHeader header, SafeFileHandle handle)
    {
        Path = path;
        this.header = header;
        this.handle = handle;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Tensors by key, in header order.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors => header.Tensors;

    /// <summary>The header's <c>__metadata__</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata => header.Metadata;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: safetensors file not found", path);
        long length = new FileInfo(path).Length;
        SafetensorsHeader header;
        using (var stream = File.OpenRead(path))
        {
            header = SafetensorsHeader.Read(path, stream, length);
        }
        return new SafetensorsFile(path, header, File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess));
    }

    /// <summary>The header entry of <paramref name="name"/>; an error naming the file when absent.</summary>
    public SafetensorsTensorInfo Info(string name) =>
        header.Tensors.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"{Path}: no tensor '{name}'");

    /// <summary>Copies a whole tensor out of the file (CPU, its stored dtype) and moves it to <paramref name="device"/>.</summary>
    public Tensor Read(string name, Device? device = null)
    {
        SafetensorsTensorInfo info = Info(name);
        Tensor result = empty(info.Shape, info.DType);
        Copy(header.DataStart + info.Begin, TensorMemory.DataPointer(result), info.ByteCount);
        return ToDevice(result, device);
    }

    /// <summary>
    /// Copies <paramref name="length"/> entries starting at <paramref name="start"/> along dimension <paramref name="dim"/>
    /// (rows with dim 0, columns with dim 1), reading only those bytes.
    /// </summary>
    public Tensor ReadSlice(string name, int dim, long start, long length, Device? device = null)
    {
        SafetensorsTensorInfo info = Info(name);
        if (dim < 0 || dim >= info.Shape.Length)
            throw new ArgumentOutOfRangeException(nameof(dim), $"{Path}: tensor '{name}' has {info.Shape.Length} dimensions; cannot slice dimension {dim}");
        long size = info.Shape[dim];
        if (start < 0 || length < 0 || start + length > size)
            throw new ArgumentOutOfRangeException(nameof(start), $"{Path}: slice [{start}, {start + length}) of dimension {dim} is outside tensor '{name}' of size {size}");
        long outer = info.Shape.Take(dim).Aggregate(1L, (a, b) => a * b);
        long innerBytes = info.Shape.Skip(dim + 1).Aggregate((long)TensorMemory.ElementSize(info.DType), (a, b) => a * b);
        long[] shape = (long[])info.Shape.Clone();
        shape[dim] = length;
        Tensor result = empty(shape, info.DType);
        IntPtr destination = TensorMemory.DataPointer(result);
        long chunk = length * innerBytes;
        for (long o = 0; o < outer; o++)
        {
            long source = header.DataStart + info.Begin + ((o * size) + start) * innerBytes;
            Copy(source, destination + (nint)(o * chunk), chunk);
        }
        return ToDevice(result, device);
    }

    void Copy(long fileOffset, IntPtr destination, long byteCount)
    {
        if (byteCount == 0) return;
        ObjectDisposedException.ThrowIf(disposed, this);
        byte* target = (byte*)destination;
        while (byteCount > 0)
        {
            int chunk = (int)Math.Min(byteCount, 1 << 30);
            int read = RandomAccess.Read(handle, new Span<byte>(target, chunk), fileOffset);
            if (read <= 0) throw new SafetensorsFormatException(Path, $"unexpected end of file at byte {fileOffset}: the file is truncated");
            target += read;
            fileOffset += read;
            byteCount -= read;
        }
    }

    static Tensor ToDevice(Tensor cpu, Device? device)
    {
        if (device == null || device.type == DeviceType.CPU) return cpu;
        using (cpu) return cpu.to(device);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        handle.Dispose();
    }
}
