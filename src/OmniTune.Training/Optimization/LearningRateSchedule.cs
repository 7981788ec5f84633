namespace OmniTune.Training.Optimization;

/// <summary>
/// Megatron's sample-based learning-rate schedule (mindspeed_mm.md §4.1): warm-up from <c>init</c> to <c>max</c> over
/// warm-up samples, then constant, linear or cosine decay to <c>min</c> over the decay samples. The schedule advances by
/// the global batch after every optimizer step, so iteration k (1-based) uses the rate at (k − 1)·GBS samples —
/// iteration 1 of a warm-up trains with the initial rate (0 by default).
/// </summary>
public sealed record LearningRateSchedule(double Max, double Min, double Init, string Style, long WarmupSamples, long DecaySamples)
{
    /// <summary>The schedule of a run: decay over lr-decay-iters (or train-iters) global batches, warm-up by fraction or iterations.</summary>
    public static LearningRateSchedule For(Arguments.TrainingArguments a)
    {
        long decay = (long)(a.LrDecayIters ?? a.TrainIters) * a.GlobalBatchSize;
        long warmup = a.LrWarmupFraction is double f ? (long)(f * decay) : (long)a.LrWarmupIters * a.GlobalBatchSize;
        return new LearningRateSchedule(a.Lr, a.MinLr, a.LrWarmupInit, a.LrDecayStyle, warmup, decay);
    }

    /// <summary>The rate after <paramref name="samples"/> consumed samples.</summary>
    public double At(long samples)
    {
        if (WarmupSamples > 0 && samples <= WarmupSamples) return Init + (Max - Init) * samples / WarmupSamples;
        if (Style == "constant") return Max;
        if (samples > DecaySamples) return Min;
        double ratio = (double)(samples - WarmupSamples) / (DecaySamples - WarmupSamples);
        double coefficient = Style == "cosine" ? 0.5 * (Math.Cos(Math.PI * ratio) + 1.0) : 1.0 - ratio;
        return Min + coefficient * (Max - Min);
    }

    /// <summary>The rate iteration <paramref name="iteration"/> (1-based) trains with.</summary>
    public double ForIteration(int iteration, int globalBatch) => At((long)(iteration - 1) * globalBatch);
}
