namespace OmniTune.Models.Qwen25Omni.Positions;

/// <summary>The audio encoder's length rules (reference §5.5).</summary>
public static class AudioLengths
{
    /// <summary>Frames after the stride-2 conv: (F − 1) // 2 + 1.</summary>
    public static int AfterConv(int melFrames) => FloorDiv(melFrames - 1, 2) + 1;

    /// <summary>LLM tokens of an audio of <paramref name="melFrames"/> mel frames: ((F−1)//2 + 1 − 2)//2 + 1.</summary>
    public static int Tokens(int melFrames) => FloorDiv(AfterConv(melFrames) - 2, 2) + 1;

    /// <summary>Python floor division.</summary>
    public static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);
}
