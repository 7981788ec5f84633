namespace OmniTune.Distributed.Pipeline;

/// <summary>Layers [From, To) of one tower on one slot (empty when From == To).</summary>
/// <param name="From">First layer (global index).</param>
/// <param name="To">One past the last layer.</param>
public readonly record struct LayerRange(int From, int To)
{
    /// <summary>Number of layers.</summary>
    public int Count => To - From;

    /// <inheritdoc/>
    public override string ToString() => Count == 0 ? "-" : Count == 1 ? $"{From}" : $"{From}-{To - 1}";
}

/// <summary>
/// What one model chunk of one pipeline stage runs ("slot" <see cref="Index"/> = chunk · stages + stage, the order in
/// which a micro-batch passes them), and what crosses from this slot to the next.
/// </summary>
/// <param name="Index">Position in the pipeline order.</param>
/// <param name="Stage">Pipeline stage (rank in the pipeline group).</param>
/// <param name="Chunk">Virtual pipeline chunk.</param>
/// <param name="Vision">Vision encoder blocks.</param>
/// <param name="PatchEmbed">Whether the vision encoder starts here.</param>
/// <param name="Merger">Whether the vision encoder ends here (patch merger).</param>
/// <param name="Audio">Audio encoder layers.</param>
/// <param name="AudioFront">Whether the audio encoder starts here (conv stem).</param>
/// <param name="AudioBack">Whether the audio encoder ends here (ln_post, projection).</param>
/// <param name="Decoder">Text decoder layers.</param>
/// <param name="Embedding">Whether the decoder starts here (token embedding and the merge of the encoder outputs).</param>
/// <param name="Head">Whether the decoder ends here (final norm, LM head, loss).</param>
public sealed record StageSlot(int Index, int Stage, int Chunk, LayerRange Vision, bool PatchEmbed, bool Merger, LayerRange Audio,
    bool AudioFront, bool AudioBack, LayerRange Decoder, bool Embedding, bool Head)
{
    /// <summary>Whether a vision encoder pass is under way after this slot (started here or before, not finished).</summary>
    public bool VisionHiddenOut { get; init; }

    /// <summary>Whether finished vision tokens wait after this slot for the decoder's first slot.</summary>
    public bool VisionTokensOut { get; init; }

    /// <summary>Whether an audio encoder pass is under way after this slot.</summary>
    public bool AudioHiddenOut { get; init; }

    /// <summary>Whether finished audio tokens wait after this slot for the decoder's first slot.</summary>
    public bool AudioTokensOut { get; init; }

    /// <summary>Whether decoder hidden states leave this slot.</summary>
    public bool DecoderHiddenOut { get; init; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"stage {Stage} chunk {Chunk}: vision {Vision}{(PatchEmbed ? " +patch_embed" : "")}{(Merger ? " +merger" : "")}, audio {Audio}" +
        $"{(AudioFront ? " +conv" : "")}{(AudioBack ? " +proj" : "")}, decoder {Decoder}{(Embedding ? " +embedding" : "")}{(Head ? " +head" : "")}";
}

/// <summary>
/// Where every layer of every tower runs, from the towers' <c>pipeline_num_layers</c> (model.json), MindSpeed-MM's way:
/// each tower's list (one row per virtual chunk, one column per stage) places its layers in pipeline order; an
/// encoder starts (patch embedding / conv stem) on its first non-empty slot and ends (merger / projection) on its last;
/// the decoder's embedding and the merge of the encoder outputs sit on its first slot, the final norm, head and loss on
/// its last, which must be the pipeline's last slot. Every encoder must have finished by the slot where the decoder
/// starts. Beyond MindSpeed-MM, the audio encoder may span stages as the vision encoder can. A pure function of the
/// lists: tested alone.
/// </summary>
public sealed class StagePlan
{
    StagePlan(int stages, int chunks, IReadOnlyList<StageSlot> slots)
    {
        Stages = stages;
        Chunks = chunks;
        Slots = slots;
    }

    /// <summary>Pipeline stages.</summary>
    public int Stages { get; }

    /// <summary>Virtual chunks per stage.</summary>
    public int Chunks { get; }

    /// <summary>Every slot in pipeline order.</summary>
    public IReadOnlyList<StageSlot> Slots { get; }

    /// <summary>The slots a stage runs, chunk by chunk.</summary>
    public IReadOnlyList<StageSlot> SlotsOf(int stage) => Slots.Where(s => s.Stage == stage).OrderBy(s => s.Chunk).ToList();

    /// <summary>The slot of <paramref name="stage"/>'s chunk <paramref name="chunk"/>.</summary>
    public StageSlot Slot(int stage, int chunk) => Slots[chunk * Stages + stage];

    /// <summary>A tower's name and its list, as model.json gives it.</summary>
    /// <param name="Name">model.json path of the tower, for messages (e.g. "image_encoder.vision_encoder").</param>
    /// <param name="Layers">Rows = virtual chunks, columns = stages.</param>
    /// <param name="Total">The tower's layer count in the checkpoint's config.</param>
    public sealed record Tower(string Name, int[][] Layers, int Total);

    /// <summary>Builds and validates the plan; every error names the tower and the rule.</summary>
    public static StagePlan Build(Tower vision, Tower audio, Tower decoder, int stages, int chunks)
    {
        if (stages < 1 || chunks < 1) throw new ArgumentException($"pipeline size {stages} × virtual chunks {chunks} must both be at least 1");
        foreach (Tower t in new[] { vision, audio, decoder }) CheckShape(t, stages, chunks);
        int slots = stages * chunks;
        int[] v = Flatten(vision), a = Flatten(audio), d = Flatten(decoder);
        int decoderFirst = Array.FindIndex(d, n => n > 0), decoderLast = Array.FindLastIndex(d, n => n > 0);
        if (decoderLast != slots - 1)
        {
            throw new ArgumentException($"{decoder.Name}.pipeline_num_layers {Describe(decoder)}: the text decoder must end on the last stage" +
                (chunks > 1 ? " of the last virtual chunk" : "") + ", where the LM head and the loss run; its last layers are on " +
                SlotName(decoderLast, stages, chunks));
        }
        foreach (var (t, flat) in new[] { (vision, v), (audio, a) })
        {
            int last = Array.FindLastIndex(flat, n => n > 0);
            if (last > decoderFirst)
            {
                throw new ArgumentException(
                    $"{t.Name}.pipeline_num_layers {Describe(t)} with {decoder.Name}.pipeline_num_layers {Describe(decoder)}: the text decoder starts on " +
                    $"{SlotName(decoderFirst, stages, chunks)} but the {TowerWord(t)} still has layers on {SlotName(last, stages, chunks)}. Encoder layers must all " +
                    $"come before the decoder's first layer (the decoder may start on the stage where the encoders finish): e.g. put all {t.Total} " +
                    $"{TowerWord(t)} layers up to {SlotName(decoderFirst, stages, chunks)}, or start the decoder on {SlotName(last, stages, chunks)}");
            }
        }
        var list = new List<StageSlot>(slots);
        int vStart = 0, aStart = 0, dStart = 0;
        int vFirst = Array.FindIndex(v, n => n > 0), vLast = Array.FindLastIndex(v, n => n > 0);
        int aFirst = Array.FindIndex(a, n => n > 0), aLast = Array.FindLastIndex(a, n => n > 0);
        for (int f = 0; f < slots; f++)
        {
            list.Add(new StageSlot(f, f % stages, f / stages, new LayerRange(vStart, vStart + v[f]), f == vFirst, f == vLast,
                new LayerRange(aStart, aStart + a[f]), f == aFirst, f == aLast, new LayerRange(dStart, dStart + d[f]), f == decoderFirst, f == decoderLast)
            {
                VisionHiddenOut = vFirst <= f && f < vLast,
                VisionTokensOut = vLast <= f && f < decoderFirst,
                AudioHiddenOut = aFirst <= f && f < aLast,
                AudioTokensOut = aLast <= f && f < decoderFirst,
                DecoderHiddenOut = decoderFirst <= f && f < decoderLast,
            });
            (vStart, aStart, dStart) = (vStart + v[f], aStart + a[f], dStart + d[f]);
        }
        return new StagePlan(stages, chunks, list);
    }

    /// <summary>A plan with everything in one slot (no pipeline).</summary>
    public static StagePlan Single(int visionLayers, int audioLayers, int decoderLayers) =>
        Build(new Tower("vision", [[visionLayers]], visionLayers), new Tower("audio", [[audioLayers]], audioLayers), new Tower("decoder", [[decoderLayers]], decoderLayers), 1, 1);

    static void CheckShape(Tower t, int stages, int chunks)
    {
        if (t.Layers.Length != chunks || t.Layers.Any(r => r.Length != stages))
        {
            throw new ArgumentException($"{t.Name}.pipeline_num_layers {Describe(t)}: --pipeline-model-parallel-size {stages}" +
                (chunks > 1 ? $" with {chunks} virtual chunks needs {chunks} rows of {stages} numbers" : $" needs {stages} numbers (one per stage)"));
        }
        if (t.Layers.Any(r => r.Any(n => n < 0))) throw new ArgumentException($"{t.Name}.pipeline_num_layers {Describe(t)}: layer counts cannot be negative");
        int sum = t.Layers.Sum(r => r.Sum());
        if (sum != t.Total) throw new ArgumentException($"{t.Name}.pipeline_num_layers {Describe(t)} sums to {sum}, but the model has {t.Total} {TowerWord(t)} layers");
    }

    static int[] Flatten(Tower t) => t.Layers.SelectMany(r => r).ToArray();   // slot = chunk · stages + stage

    static string Describe(Tower t) => t.Layers.Length == 1 ? $"[{string.Join(",", t.Layers[0])}]" : $"[{string.Join(",", t.Layers.Select(r => $"[{string.Join(",", r)}]"))}]";

    static string SlotName(int slot, int stages, int chunks) => chunks == 1 ? $"stage {slot}" : $"stage {slot % stages} (chunk {slot / stages})";

    static string TowerWord(Tower t) => t.Name.Contains("vision", StringComparison.Ordinal) || t.Name.Contains("image", StringComparison.Ordinal) ? "vision encoder"
        : t.Name.Contains("audio", StringComparison.Ordinal) ? "audio encoder" : "text decoder";
}
