using System.Collections;
using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OmniTune.Distributed.TensorParallel;

/// <summary>How a plan parallelises one module.</summary>
public enum ParallelStyle
{
    /// <summary>Linear with output features cut (<see cref="ColumnParallelLinear"/>).</summary>
    Column,

    /// <summary>Linear with input features cut (<see cref="RowParallelLinear"/>).</summary>
    Row,

    /// <summary>Embedding with the vocabulary cut (<see cref="VocabParallelEmbedding"/>).</summary>
    Vocabulary,
}

/// <summary>A module path pattern ('*' stands for one path segment, e.g. a layer index) and its style.</summary>
/// <param name="Pattern">e.g. "model.layers.*.self_attn.q_proj".</param>
/// <param name="Style">How the matched modules are parallelised.</param>
public sealed record ParallelRule(string Pattern, ParallelStyle Style);

/// <summary>What applying a plan to one tower did: the group, and how each of its parameters is cut.</summary>
/// <param name="Tower">The tower, for messages.</param>
/// <param name="Group">The tower's tensor-parallel group.</param>
/// <param name="Shards">Parameter path (from the root module) → its cut; absent parameters are whole on every rank.</param>
/// <param name="SequenceParallel">Whether the tower's norms and residuals run on 1/size of the sequence.</param>
public sealed record ParallelizedTower(string Tower, IProcessGroup Group, IReadOnlyDictionary<string, TensorShard> Shards, bool SequenceParallel);

/// <summary>
/// Applies a tensor-parallel plan to a single-device model from outside (torchtitan's <c>parallelize_module</c>, our own
/// code): every module a rule matches is replaced, in its parent, by the parallel layer cut from it; a rule that matches
/// nothing is an error. The model's own code is untouched: its layers call whatever module sits in their fields.
/// </summary>
public static class TensorParallelPlan
{
    /// <summary>
    /// Parallelises the modules of <paramref name="root"/> that <paramref name="rules"/> name across <paramref name="group"/>
    /// (nothing when the group has one rank). <paramref name="sequenceDim"/> set: sequence parallel around the cut linears.
    /// </summary>
    public static ParallelizedTower Apply(nn.Module root, string tower, IReadOnlyList<ParallelRule> rules, IProcessGroup group, int? sequenceDim = null)
    {
        var shards = new Dictionary<string, TensorShard>(StringComparer.Ordinal);
        if (group.Size == 1) return new ParallelizedTower(tower, group, shards, false);
        var modules = root.named_modules().ToList();
        foreach (ParallelRule rule in rules)
        {
            var matched = modules.Where(m => Matches(rule.Pattern, m.name)).ToList();
            if (matched.Count == 0) throw new InvalidOperationException($"{tower} tensor-parallel plan: '{rule.Pattern}' matches no module");
            foreach (var (path, module) in matched)
            {
                nn.Module replacement = (rule.Style, module) switch
                {
                    (ParallelStyle.Column, Linear linear) => new ColumnParallelLinear(linear, group, sequenceDim),
                    (ParallelStyle.Row, Linear linear) => new RowParallelLinear(linear, group, sequenceDim),
                    (ParallelStyle.Vocabulary, Embedding embedding) => new VocabParallelEmbedding(embedding, group),
                    _ => throw new InvalidOperationException($"{tower} tensor-parallel plan: {path} is a {module.GetType().Name}, not what {rule.Style} parallelises"),
                };
                ModuleTree.Replace(root, path, replacement);
                foreach (var (name, shard) in ((IParallelLayer)replacement).Shards) shards[$"{path}.{name}"] = shard;
                module.Dispose();
            }
        }
        return new ParallelizedTower(tower, group, shards, sequenceDim is not null);
    }

    /// <summary>Whether <paramref name="path"/> matches <paramref name="pattern"/> segment by segment ('*' = any one segment).</summary>
    public static bool Matches(string pattern, string path)
    {
        string[] p = pattern.Split('.'), s = path.Split('.');
        return p.Length == s.Length && p.Zip(s).All(x => x.First == "*" || x.First == x.Second);
    }
}

/// <summary>Replacing a submodule in place, as Python's <c>setattr(parent, name, module)</c> does.</summary>
public static class ModuleTree
{
    static readonly FieldInfo Submodules = typeof(nn.Module).GetField("_internal_submodules", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp's Module._internal_submodules (TorchSharp changed; ModuleTree.Replace needs updating)");

    /// <summary>
    /// Puts <paramref name="replacement"/> where <paramref name="path"/> (relative to <paramref name="root"/>) was: in the
    /// parent's registry at the same position (parameter order is kept) and in every field of the parent that held the
    /// old module (fields of a type the replacement does not fit are an error naming it).
    /// </summary>
    public static void Replace(nn.Module root, string path, nn.Module replacement)
    {
        int dot = path.LastIndexOf('.');
        string parentPath = dot < 0 ? "" : path[..dot], name = path[(dot + 1)..];
        nn.Module parent = parentPath.Length == 0 ? root
            : root.named_modules().FirstOrDefault(m => m.name == parentPath).module ?? throw new ArgumentException($"no module '{parentPath}'");
        nn.Module old = parent.named_children().FirstOrDefault(c => c.name == name).module ?? throw new ArgumentException($"no module '{path}'");
        int fields = 0;
        for (Type? type = parent.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
        {
            foreach (FieldInfo field in type.GetFields(BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly))
            {
                object? value = field.GetValue(parent);
                if (ReferenceEquals(value, old))
                {
                    if (!field.FieldType.IsInstanceOfType(replacement))
                        throw new InvalidOperationException($"{path}: field {type.Name}.{field.Name} is a {field.FieldType.Name}; a {replacement.GetType().Name} cannot take its place");
                    field.SetValue(parent, replacement);
                    fields++;
                }
                else if (value is IList list && !field.FieldType.IsArray)
                {
                    for (int i = 0; i < list.Count; i++)
                    {
                        if (!ReferenceEquals(list[i], old)) continue;
                        list[i] = replacement;
                        fields++;
                    }
                }
            }
        }
        if (fields == 0) throw new InvalidOperationException($"{path}: no field of {parent.GetType().Name} holds the module, so it cannot be replaced");
        object registry = Submodules.GetValue(parent)!;
        PropertyInfo indexer = registry.GetType().GetProperty("Item", [typeof(string)])
            ?? throw new MissingMemberException("TorchSharp's OrderedDict indexer (TorchSharp changed; ModuleTree.Replace needs updating)");
        indexer.SetValue(registry, replacement, [name]);
    }
}
