namespace OmniTune.Distributed.Pipeline;

/// <summary>Forward or backward of one micro-batch through one model chunk.</summary>
public enum PipelineStep
{
    /// <summary>Forward pass.</summary>
    Forward,

    /// <summary>Backward pass.</summary>
    Backward,
}

/// <summary>One entry of a stage's schedule.</summary>
/// <param name="Step">Forward or backward.</param>
/// <param name="MicroBatch">Micro-batch index within the step.</param>
/// <param name="Chunk">Virtual chunk (0 without virtual pipeline).</param>
public readonly record struct PipelineAction(PipelineStep Step, int MicroBatch, int Chunk)
{
    /// <inheritdoc/>
    public override string ToString() => $"{(Step == PipelineStep.Forward ? "F" : "B")}{MicroBatch}{(Chunk > 0 ? $".{Chunk}" : "")}";
}

/// <summary>
/// Pipeline schedules as data: what each stage does, in order, during one optimizer step. The shapes are Megatron-core's
/// (<c>forward_backward_pipelining_without_interleaving</c> and <c>_with_interleaving</c>): warm-up forwards, a steady
/// state alternating one forward and one backward, cool-down backwards. One executor runs any such list.
/// </summary>
public static class PipelineSchedule
{
    /// <summary>1F1B for <paramref name="stage"/> of <paramref name="stages"/> with <paramref name="microBatches"/> micro-batches.</summary>
    public static IReadOnlyList<PipelineAction> OneForwardOneBackward(int stages, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        int warmup = Math.Min(stages - stage - 1, microBatches), steady = microBatches - warmup;
        var actions = new List<PipelineAction>(2 * microBatches);
        for (int i = 0; i < warmup; i++) actions.Add(new(PipelineStep.Forward, i, 0));
        for (int i = 0; i < steady; i++)
        {
            actions.Add(new(PipelineStep.Forward, warmup + i, 0));
            actions.Add(new(PipelineStep.Backward, i, 0));
        }
        for (int i = steady; i < microBatches; i++) actions.Add(new(PipelineStep.Backward, i, 0));
        return actions;
    }

    /// <summary>
    /// Interleaved 1F1B with <paramref name="chunks"/> virtual chunks per stage. Micro-batches go through the chunks in
    /// groups of <paramref name="stages"/> (so their number must be a multiple of the stage count, as in Megatron).
    /// </summary>
    public static IReadOnlyList<PipelineAction> Interleaved(int stages, int chunks, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        if (chunks == 1) return OneForwardOneBackward(stages, stage, microBatches);
        if (microBatches % stages != 0)
        {
            throw new ArgumentException($"the interleaved schedule needs the number of micro-batches per step ({microBatches}) to be a multiple of " +
                                        $"the pipeline size ({stages}): adjust --global-batch-size");
        }
        int total = microBatches * chunks;
        int warmup = microBatches == stages ? total : Math.Min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
        int steady = total - warmup;
        PipelineAction At(int k, PipelineStep step)
        {
            int inGroup = k % (stages * chunks), chunk = inGroup / stages;
            int microBatch = k / (stages * chunks) * stages + k % stages;
            return new(step, microBatch, step == PipelineStep.Forward ? chunk : chunks - 1 - chunk);
        }
        var actions = new List<PipelineAction>(2 * total);
        for (int k = 0; k < warmup; k++) actions.Add(At(k, PipelineStep.Forward));
        for (int k = 0; k < steady; k++)
        {
            actions.Add(At(warmup + k, PipelineStep.Forward));
            actions.Add(At(k, PipelineStep.Backward));
        }
        for (int k = steady; k < total; k++) actions.Add(At(k, PipelineStep.Backward));
        return actions;
    }

    static void Check(int stages, int stage, int microBatches)
    {
        if (stages < 1 || stage < 0 || stage >= stages) throw new ArgumentOutOfRangeException(nameof(stage), $"stage {stage} of {stages}");
        if (microBatches < 1) throw new ArgumentOutOfRangeException(nameof(microBatches), "at least one micro-batch per step");
    }
}
