using System.IO.Compression;
using System.Text;
using OmniTune.Core.Safetensors;
using Razorvine.Pickle;
using static TorchSharp.torch;

namespace OmniTune.Core.PyTorch;

/// <summary>
/// Writes what <c>torch.save</c> writes: a zip (entries stored, not compressed) with <c>archive/data.pkl</c> (pickle
/// protocol 2, tensors as <c>torch._utils._rebuild_tensor_v2</c> over persistent storages), <c>archive/byteorder</c>,
/// one <c>archive/data/N</c> entry per tensor and <c>archive/version</c>. The object may hold dictionaries with string
/// keys, lists, numbers, strings, booleans, null and <see cref="TensorToWrite"/> leaves; the pickle is built from the
/// declarations first and each tensor is then produced and streamed on its own (memory bounded by the largest tensor).
/// Written to a temporary file renamed at the end.
/// </summary>
public static class PyTorchFileWriter
{
    const int FormatVersion = 3;

    static PyTorchFileWriter()
    {
        Pickler.registerCustomPickler(typeof(TensorToWrite), new TensorPickler());
        Pickler.registerCustomPickler(typeof(StorageClass), new StorageClassPickler());
        Pickler.registerCustomPickler(typeof(EmptyOrderedDict), new EmptyOrderedDictPickler());
    }

    /// <summary>Writes <paramref name="root"/> to <paramref name="path"/>; returns the tensor bytes written.</summary>
    public static long Write(string path, object root)
    {
        var pickler = new CheckpointPickler();
        byte[] pickle = pickler.dumps(root);
        string archiveName = System.IO.Path.GetFileNameWithoutExtension(path);
        string temporary = path + ".tmp";
        long bytes = 0;
        try
        {
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
            {
                void Entry(string name, Action<Stream> write)
                {
                    using Stream s = zip.CreateEntry($"{archiveName}/{name}", CompressionLevel.NoCompression).Open();
                    write(s);
                }
                Entry("data.pkl", s => s.Write(pickle));
                Entry("byteorder", s => s.Write(Encoding.ASCII.GetBytes("little")));
                for (int i = 0; i < pickler.Tensors.Count; i++)
                {
                    TensorToWrite tensor = pickler.Tensors[i];
                    Entry($"data/{i}", s => tensor.WriteBytes(s, path));
                    bytes += tensor.ByteCount;
                }
                Entry("version", s => s.Write(Encoding.ASCII.GetBytes($"{FormatVersion}\n")));
            }
            File.Move(temporary, path, overwrite: true);
            return bytes;
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Collects the tensors in the order their storages are named (data/0, data/1, …).</summary>
    sealed class CheckpointPickler : Pickler
    {
        public List<TensorToWrite> Tensors { get; } = [];

        public CheckpointPickler()
            : base(useMemo: false)
        {
        }

        protected override bool persistentId(object pid, out object? newpid)
        {
            if (pid is not StorageToWrite storage)
            {
                newpid = null;
                return false;
            }
            newpid = new object[] { "storage", new StorageClass(storage.ClassName), storage.Key, "cpu", storage.Elements };
            return true;
        }

        public string Add(TensorToWrite tensor)
        {
            Tensors.Add(tensor);
            return (Tensors.Count - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    sealed record StorageToWrite(string Key, string ClassName, long Elements);

    sealed record StorageClass(string Name);

    sealed class EmptyOrderedDict;

    static void Global(Stream outs, string module, string name)
    {
        outs.WriteByte(Opcodes.GLOBAL);
        byte[] text = Encoding.ASCII.GetBytes($"{module}\n{name}\n");
        outs.Write(text, 0, text.Length);
    }

    /// <summary><c>torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())</c>.</summary>
    sealed class TensorPickler : IObjectPickler
    {
        public void pickle(object o, Stream outs, Pickler currentPickler)
        {
            var tensor = (TensorToWrite)o;
            var pickler = (CheckpointPickler)currentPickler;
            string className = PickleAllowList.Storages.First(s => s.Value == tensor.DType && s.Key != "UntypedStorage").Key;
            long elements = tensor.Shape.Aggregate(1L, (a, b) => a * b);
            long[] stride = new long[tensor.Shape.Length];
            long step = 1;
            for (int d = stride.Length - 1; d >= 0; d--)
            {
                stride[d] = step;
                step *= tensor.Shape[d];
            }
            Global(outs, "torch._utils", "_rebuild_tensor_v2");
            currentPickler.save(new object[]
            {
                new StorageToWrite(pickler.Add(tensor), className, elements), 0,
                tensor.Shape.Select(s => (object)s).ToArray(), stride.Select(s => (object)s).ToArray(), false, new EmptyOrderedDict(),
            });
            outs.WriteByte(Opcodes.REDUCE);
        }
    }

    sealed class StorageClassPickler : IObjectPickler
    {
        public void pickle(object o, Stream outs, Pickler currentPickler) => Global(outs, "torch", ((StorageClass)o).Name);
    }

    sealed class EmptyOrderedDictPickler : IObjectPickler
    {
        public void pickle(object o, Stream outs, Pickler currentPickler)
        {
            Global(outs, "collections", "OrderedDict");
            outs.WriteByte(Opcodes.EMPTY_TUPLE);
            outs.WriteByte(Opcodes.REDUCE);
        }
    }
}
