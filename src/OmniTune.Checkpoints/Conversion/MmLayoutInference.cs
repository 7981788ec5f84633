using System.Globalization;
using System.Text.RegularExpressions;
using OmniTune.Models.Qwen25Omni.Config;

namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// The parallel layout of a MindSpeed-MM checkpoint that records none (MindSpeed's <c>.pt</c> files): tensor- and
/// pipeline-parallel sizes from the rank folders (<c>mp_rank_TT[_PPP]</c>), virtual chunks from the <c>model{v}</c>
/// entries, layers per pipeline slot from the layer numbers each slot holds (a tower repeated over the slots, as
/// MindSpeed's shorter <c>vit_pp_layers</c> lists make it, gets its shortest period), each tower's tensor-parallel size
/// from the shape of one of its cut tensors, and a tied LM head from the absence of <c>output_layer</c>.
/// </summary>
public static partial class MmLayoutInference
{
    [GeneratedRegex(@"^mp_rank_(\d{2})(?:_(\d{3}))?$")]
    private static partial Regex RankFolder();

    /// <summary>Infers the layout of the rank files <paramref name="files"/> (by folder name) of <paramref name="folder"/>.</summary>
    public static (ParallelLayout Layout, bool TiedLmHead) Infer(Qwen25OmniThinkerConfig config, IReadOnlyDictionary<string, MmRankFile> files, string folder)
    {
        var ranks = files.Keys.Select(name => (name, match: RankFolder().Match(name))).ToList();
        string? odd = ranks.FirstOrDefault(r => !r.match.Success).name;
        if (odd is not null) throw new InvalidDataException($"{folder}/{odd}: not a rank folder name (mp_rank_TT or mp_rank_TT_PPP; expert parallel is not read)");
        int Int(Group g) => g.Success ? int.Parse(g.Value, CultureInfo.InvariantCulture) : 0;
        var coords = ranks.ToDictionary(r => (Tp: Int(r.match.Groups[1]), Pp: Int(r.match.Groups[2])), r => files[r.name]);
        int tp = coords.Keys.Max(c => c.Tp) + 1, pp = coords.Keys.Max(c => c.Pp) + 1;
        for (int t = 0; t < tp; t++)
        {
            for (int p = 0; p < pp; p++)
            {
                if (!coords.ContainsKey((t, p))) throw new FileNotFoundException($"{folder}: rank folder {(pp == 1 ? $"mp_rank_{t:D2}" : $"mp_rank_{t:D2}_{p:D3}")} is missing ({tp} TP × {pp} PP ranks expected from the others)");
            }
        }
        var chunkNames = coords[(0, 0)].Names.Select(n => n.StartsWith("model", StringComparison.Ordinal) && n.IndexOf('.', StringComparison.Ordinal) is int dot and > 5
            && int.TryParse(n[5..dot], out int v) ? v : -1).ToHashSet();
        int vpp = chunkNames.Contains(-1) ? 1 : Math.Max(1, chunkNames.Count == 0 ? 1 : chunkNames.Max() + 1);
        string Prefix(int chunk) => vpp == 1 ? "" : $"model{chunk}.";

        bool tied = !coords.Values.Any(f => f.Names.Any(n => n.EndsWith("text_decoder.output_layer.weight", StringComparison.Ordinal)));
        var map = MmTensorMap.For(config, tied);
        var towers = new[] { Tower.Text, Tower.Vision, Tower.Audio };
        var layerPrefix = towers.ToDictionary(t => t, t =>
        {
            MmTensor layer = map.First(m => m.Tower == t && m.Placement == Placement.Layer);
            return layer.Name[..(layer.Name.IndexOf($"layers.{layer.Layer}.", StringComparison.Ordinal) + "layers.".Length)];
        });
        int slots = pp * vpp;
        var counts = towers.ToDictionary(t => t, t => new int[slots]);
        for (int slot = 0; slot < slots; slot++)
        {
            string prefix = Prefix(slot / pp);
            MmRankFile file = coords[(0, slot % pp)];
            foreach (Tower t in towers)
            {
                string start = prefix + layerPrefix[t];
                counts[t][slot] = file.Names.Where(n => n.StartsWith(start, StringComparison.Ordinal))
                    .Select(n => n[start.Length..]).Select(rest => rest[..Math.Max(0, rest.IndexOf('.', StringComparison.Ordinal))]).Distinct().Count();
            }
        }
        int[][] Rows(Tower tower, int layers)
        {
            int[] c = counts[tower];
            for (int period = 1; period <= slots; period++)
            {
                if (slots % period != 0 || c.Take(period).Sum() != layers) continue;
                if (!Enumerable.Range(0, slots).All(g => c[g] == c[g % period])) continue;
                return period % pp == 0 ? Enumerable.Range(0, period / pp).Select(r => c.Skip(r * pp).Take(pp).ToArray()).ToArray() : [c.Take(period).ToArray()];
            }
            throw new InvalidDataException($"{folder}: the {tower} layers per pipeline slot [{string.Join(",", c)}] do not add up to the model's {layers} " +
                                           "(is config.json the one this checkpoint was converted from?)");
        }
        Rows(Tower.Text, config.Text.NumHiddenLayers);   // checks the sum
        int[][] llm = Enumerable.Range(0, vpp).Select(v => counts[Tower.Text].Skip(v * pp).Take(pp).ToArray()).ToArray();
        var layout = new ParallelLayout(llm, Rows(Tower.Vision, config.Vision.Depth), Rows(Tower.Audio, config.Audio.EncoderLayers), tp);

        // Each tower's TP from one of its cut tensors: the divisor of the rank count whose part shape matches what is stored.
        var plan = new PipelinePlan(layout);
        var shapes = Models.Qwen25Omni.Thinker.ThinkerWeightLayout.For(config, tied).ToDictionary(w => w.Key, w => w.Shape, StringComparer.Ordinal);
        int TpOf(Tower tower)
        {
            MmTensor cut = map.First(m => m.Tower == tower && m.Split != SplitKind.Replicated);
            int slot = plan.HomeSlot(cut);
            string name = plan.ChunkPrefix(slot / pp) + cut.LocalName(plan.LocalIndex(cut, slot)!.Value);
            long[] stored = coords[(0, slot % pp)].Info(name).Shape;
            long[][] sources = cut.Sources.Select(s => shapes[s]).ToArray();
            for (int parts = 1; parts <= tp; parts++)
            {
                if (tp % parts == 0 && TensorOps.PartShape(cut, sources, parts).SequenceEqual(stored)) return parts;
            }
            throw new InvalidDataException($"{folder}: '{name}' has shape [{string.Join(", ", stored)}], which is no tensor-parallel part of the model's " +
                                           $"{string.Join(" + ", sources.Select(s => "[" + string.Join(", ", s) + "]"))} at any size dividing {tp}");
        }
        int textTp = TpOf(Tower.Text), vitTp = TpOf(Tower.Vision), audioTp = TpOf(Tower.Audio);
        layout = layout with { TpSize = textTp, VitTpSize = vitTp == textTp ? 0 : vitTp, AudioTpSize = audioTp == textTp ? 0 : audioTp };
        layout.Validate(config);
        if (layout.MaxTp != tp) throw new InvalidDataException($"{folder}: {tp} tensor-parallel rank folders, but the towers' sizes {textTp}/{vitTp}/{audioTp} give {layout.MaxTp}");
        return (layout, tied);
    }
}
