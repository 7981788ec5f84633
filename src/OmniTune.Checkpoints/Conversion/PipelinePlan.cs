namespace OmniTune.Checkpoints.Conversion;

/// <summary>
/// Which pipeline slot holds which tensors (mindspeed_mm.md §1.6, the intended algorithm — correct also when a tower's
/// first non-empty slot is not slot 0): slot f = chunk · PP + stage; a tower with a shorter list is replicated
/// (slot g uses its entry g mod length); layers are renumbered from 0 within each slot.
/// </summary>
public sealed class PipelinePlan
{
    readonly Dictionary<Tower, int[]> layers;

    /// <summary>Builds the plan of a layout.</summary>
    public PipelinePlan(ParallelLayout layout)
    {
        Layout = layout;
        layers = new Dictionary<Tower, int[]>
        {
            [Tower.Text] = layout.LlmPpLayers.SelectMany(r => r).ToArray(),
            [Tower.Vision] = layout.VitPpLayers.SelectMany(r => r).ToArray(),
            [Tower.Audio] = layout.AudioPpLayers.SelectMany(r => r).ToArray(),
        };
        Slots = layout.PipelineSize * layout.VirtualSize;
        foreach (var (tower, list) in layers)
        {
            if (list.Length > Slots) throw new ArgumentException($"{tower} has {list.Length} pipeline slots, more than the LLM's {Slots}");
        }
    }

    /// <summary>The layout.</summary>
    public ParallelLayout Layout { get; }

    /// <summary>Slots (PP × VPP).</summary>
    public int Slots { get; }

    /// <summary>Local layer index of <paramref name="t"/> in slot <paramref name="slot"/>, or null when the slot does not hold it.</summary>
    public int? LocalIndex(MmTensor t, int slot)
    {
        int[] list = layers[t.Tower];
        int f = slot % list.Length;
        int first = Array.FindIndex(list, n => n > 0), last = Array.FindLastIndex(list, n => n > 0);
        switch (t.Placement)
        {
            case Placement.First: return f == first ? 0 : null;
            case Placement.Last: return f == last ? 0 : null;
            default:
                int start = list.Take(f).Sum();
                return t.Layer >= start && t.Layer < start + list[f] ? t.Layer - start : null;
        }
    }

    /// <summary>The first slot holding <paramref name="t"/> (where mm → hf reads it).</summary>
    public int HomeSlot(MmTensor t)
    {
        for (int g = 0; g < Slots; g++)
        {
            if (LocalIndex(t, g) is not null) return g;
        }
        throw new InvalidOperationException($"{t.Name} is in no pipeline slot");
    }

    /// <summary>Tensor-parallel parts of a tower.</summary>
    public int TpOf(Tower tower) => tower switch
    {
        Tower.Vision => Layout.VitTp,
        Tower.Audio => Layout.AudioTp,
        _ => Layout.TpSize,
    };

    /// <summary>Folder of (tp rank, pp stage): mp_rank_XX, or mp_rank_XX_YYY with pipeline parallel.</summary>
    public string Folder(int tp, int stage) => Layout.PipelineSize == 1 ? $"mp_rank_{tp:D2}" : $"mp_rank_{tp:D2}_{stage:D3}";

    /// <summary>Key prefix of a virtual chunk inside a file ("" without VPP, "model{v}." with).</summary>
    public string ChunkPrefix(int chunk) => Layout.VirtualSize == 1 ? "" : $"model{chunk}.";
}
