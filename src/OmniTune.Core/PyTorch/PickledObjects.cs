using System.Collections;
using System.Text;
using Razorvine.Pickle;
using static TorchSharp.torch;

namespace OmniTune.Core.PyTorch;

/// <summary>
/// An object of an allowed Python class that OmniTune does not interpret (an argparse Namespace entry such as a Megatron
/// enum, a numpy array of RNG state, a torch.device…): its class, its constructor arguments and its state, as data.
/// Nothing of it is ever executed.
/// </summary>
public sealed class PickledObject(string className, object?[] arguments)
{
    /// <summary>module.name of the Python class.</summary>
    public string ClassName { get; } = className;

    /// <summary>The arguments it was rebuilt from.</summary>
    public object?[] Arguments { get; } = arguments;

    /// <summary>The state set after construction (pickle's BUILD), when any.</summary>
    public object? State { get; private set; }

    /// <summary>Called by the unpickler for BUILD.</summary>
    public void __setstate__(object? state) => State = state;

    /// <inheritdoc/>
    public override string ToString() => $"{ClassName}({string.Join(", ", Arguments.Select(a => a?.ToString() ?? "None"))})";
}

/// <summary>
/// collections.OrderedDict, with attributes such as a state dict's <c>_metadata</c> kept apart. A Hashtable because
/// Razorvine's unpickler fills dictionaries as one, so key order is not kept (nothing here depends on it).
/// </summary>
#pragma warning disable CA1010 // the unpickler fills it as a non-generic Hashtable
public sealed class PickledOrderedDict : Hashtable
#pragma warning restore CA1010
{
    /// <summary>Instance attributes set by BUILD (a module state dict carries <c>_metadata</c>).</summary>
    public object? Attributes { get; private set; }

    /// <summary>Called by the unpickler for BUILD.</summary>
    public void __setstate__(object? state) => Attributes = state;
}

/// <summary>
/// A tensor of a PyTorch file, not yet read: its storage (an entry of the archive), element offset, shape and strides.
/// </summary>
public sealed record PickledTensor(string StorageKey, ScalarType DType, long StorageElements, long Offset, long[] Shape, long[] Stride)
{
    /// <summary>Elements of the tensor.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Whether the tensor is stored contiguously (C order) from its offset.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int d = Shape.Length - 1; d >= 0; d--)
            {
                if (Shape[d] != 1 && Stride[d] != expected) return false;
                expected *= Shape[d];
            }
            return true;
        }
    }

    /// <summary>Elements of the storage the tensor spans, from element 0 (offset + furthest element + 1).</summary>
    public long Extent => ElementCount == 0 ? Offset : Offset + Shape.Select((s, d) => (s - 1) * Stride[d]).Sum() + 1;
}

/// <summary>A storage reference from the pickle's persistent ids, before a tensor is built on it.</summary>
sealed record PickledStorage(string Key, ScalarType DType, long Elements);

/// <summary>
/// The Python globals a PyTorch checkpoint may name, and what each becomes. Anything else is refused before unpickling
/// (<see cref="PickleGlobals"/>). Classes of the <c>megatron.</c> and <c>mindspeed</c> packages (enums and option
/// objects in a training checkpoint's <c>args</c>) become inert <see cref="PickledObject"/>s.
/// </summary>
static class PickleAllowList
{
    static readonly HashSet<string> TorchDTypes =
    [
        "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int", "int16", "short",
        "int8", "uint8", "bool", "complex64", "cfloat", "complex128", "cdouble",
    ];

    /// <summary>Storage class names of the persistent ids and the element type each holds.</summary>
    public static readonly IReadOnlyDictionary<string, ScalarType> Storages = new Dictionary<string, ScalarType>(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = ScalarType.Float64,
        ["FloatStorage"] = ScalarType.Float32,
        ["HalfStorage"] = ScalarType.Float16,
        ["BFloat16Storage"] = ScalarType.BFloat16,
        ["LongStorage"] = ScalarType.Int64,
        ["IntStorage"] = ScalarType.Int32,
        ["ShortStorage"] = ScalarType.Int16,
        ["CharStorage"] = ScalarType.Int8,
        ["ByteStorage"] = ScalarType.Byte,
        ["BoolStorage"] = ScalarType.Bool,
        ["UntypedStorage"] = ScalarType.Byte,
    };

    static readonly Dictionary<string, IObjectConstructor> Exact = new(StringComparer.Ordinal)
    {
        ["torch._utils._rebuild_tensor_v2"] = new TensorConstructor(),
        ["torch._utils._rebuild_tensor"] = new TensorConstructor(),
        ["torch._utils._rebuild_parameter"] = new FirstArgument(),
        ["torch._utils._rebuild_parameter_with_state"] = new FirstArgument(),
        ["collections.OrderedDict"] = new OrderedDictConstructor(),
        ["_codecs.encode"] = new CodecsEncode(),
        ["argparse.Namespace"] = new Inert("argparse.Namespace"),
        ["torch.device"] = new Inert("torch.device"),
        ["torch.Size"] = new FirstArgument(),
        ["builtins.set"] = new Inert("builtins.set"),
        ["__builtin__.set"] = new Inert("builtins.set"),
        ["builtins.slice"] = new Inert("builtins.slice"),
        ["numpy.core.multiarray._reconstruct"] = new Inert("numpy.ndarray"),
        ["numpy._core.multiarray._reconstruct"] = new Inert("numpy.ndarray"),
        ["numpy.core.multiarray.scalar"] = new Inert("numpy.scalar"),
        ["numpy._core.multiarray.scalar"] = new Inert("numpy.scalar"),
        ["numpy.ndarray"] = new Inert("numpy.ndarray"),
        ["numpy.dtype"] = new Inert("numpy.dtype"),
        ["__builtin__.getattr"] = new Attribute(),   // how Python pickles an enum member: getattr(EnumClass, 'name')
        ["builtins.getattr"] = new Attribute(),
    };

    static readonly object Gate = new();

    /// <summary>Whether <paramref name="global"/> may appear, and under what name it is known here.</summary>
    public static bool Allows(string global)
    {
        if (Exact.ContainsKey(global)) return true;
        int dot = global.LastIndexOf('.');
        string module = dot < 0 ? "" : global[..dot], name = global[(dot + 1)..];
        if (module == "torch" && (TorchDTypes.Contains(name) || Storages.ContainsKey(name))) return true;
        if (module == "torch.storage" && name == "UntypedStorage") return true;
        return module.StartsWith("megatron.", StringComparison.Ordinal) || module.StartsWith("mindspeed", StringComparison.Ordinal);
    }

    /// <summary>
    /// Unpickles <paramref name="pickle"/> after checking every global it names against this list (an unknown one is
    /// refused with its name). Razorvine's constructor registry is process-wide, so loads are serialised.
    /// </summary>
    public static object? Load(byte[] pickle, string path, Func<object, object> persistentLoad)
    {
        IReadOnlyList<string> globals = PickleGlobals.Scan(pickle, path);
        string? refused = globals.FirstOrDefault(g => !Allows(g));
        if (refused is not null)
        {
            throw new InvalidDataException($"{path}: refused to load: the pickle names the Python global '{refused}', which is not one a checkpoint holds " +
                                           "(tensors, storages, OrderedDict, argparse.Namespace, numpy RNG state, Megatron/MindSpeed enums); nothing was run");
        }
        lock (Gate)
        {
            foreach (string g in globals.Distinct())
            {
                int dot = g.LastIndexOf('.');
                Unpickler.registerConstructor(g[..dot], g[(dot + 1)..], Exact.TryGetValue(g, out var known) ? known : new Inert(g));
            }
            using var unpickler = new CheckpointUnpickler(persistentLoad);
            try
            {
                return unpickler.loads(pickle);
            }
            catch (PickleException e)
            {
                throw new InvalidDataException($"{path}: cannot unpickle: {e.Message}", e);
            }
        }
    }

    sealed class CheckpointUnpickler(Func<object, object> storage) : Unpickler
    {
        protected override object persistentLoad(object pid) => storage(pid);
    }

    /// <summary>A class or value named by a global (a storage type, a dtype, an enum class); called, it builds a <see cref="PickledObject"/>.</summary>
    internal sealed class Inert(string className) : IObjectConstructor
    {
        public string ClassName { get; } = className;

        public object construct(object[] args) => new PickledObject(ClassName, args);

        public override string ToString() => ClassName;
    }

    /// <summary><c>getattr(cls, name)</c> on an allowed class: the member's name, never looked up.</summary>
    sealed class Attribute : IObjectConstructor
    {
        public object construct(object[] args) =>
            args is [Inert owner, string name] ? new PickledObject(owner.ClassName + "." + name, [])
                : throw new PickleException($"getattr is only allowed on a class of the checkpoint (got {string.Join(", ", args.Select(a => a?.GetType().Name ?? "None"))})");
    }

    sealed class FirstArgument : IObjectConstructor
    {
        public object construct(object[] args) => args[0];
    }

    sealed class OrderedDictConstructor : IObjectConstructor
    {
        public object construct(object[] args)
        {
            var dict = new PickledOrderedDict();
            if (args.Length > 0 && args[0] is IEnumerable pairs)
            {
                foreach (object pair in pairs)
                {
                    if (pair is object[] { Length: 2 } kv) dict[kv[0]] = kv[1];
                }
            }
            return dict;
        }
    }

    /// <summary><c>_codecs.encode(text, 'latin1')</c>: how protocol-2 pickles store bytes.</summary>
    sealed class CodecsEncode : IObjectConstructor
    {
        public object construct(object[] args) => args[0] is string text ? Encoding.Latin1.GetBytes(text) : args[0];
    }

    /// <summary><c>torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, …)</c>.</summary>
    sealed class TensorConstructor : IObjectConstructor
    {
        public object construct(object[] args)
        {
            if (args.Length < 4 || args[0] is not PickledStorage storage)
                throw new PickleException($"tensor rebuilt from unexpected arguments ({string.Join(", ", args.Select(a => a?.GetType().Name ?? "None"))})");
            long[] Longs(object o) => ((IEnumerable)o).Cast<object>().Select(Convert.ToInt64).ToArray();
            return new PickledTensor(storage.Key, storage.DType, storage.Elements, Convert.ToInt64(args[1]), Longs(args[2]), Longs(args[3]));
        }
    }
}
