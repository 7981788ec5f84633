namespace OmniTune.Training.Arguments;

/// <summary>How token losses become the step loss (mindspeed_mm.md §7).</summary>
public enum LossMode
{
    /// <summary>Token mean per micro-batch, then mean over micro-batches.</summary>
    Default,

    /// <summary>Token mean per sample, mean over samples of the micro-batch, then mean over micro-batches.</summary>
    PerSample,

    /// <summary>Sum over every token of the step divided by the step's token count.</summary>
    PerToken,
}
