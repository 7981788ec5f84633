namespace OmniTune.Data.Text;

/// <summary>Roles of a conversation turn, as LLaMA-Factory names them.</summary>
public enum ChatRole
{
    /// <summary>The person asking.</summary>
    User,

    /// <summary>The model's answer (trained).</summary>
    Assistant,

    /// <summary>A system prompt (only as the first message).</summary>
    System,

    /// <summary>A tool call made by the assistant (trained).</summary>
    Function,

    /// <summary>A tool's result, in the user position.</summary>
    Observation,
}

/// <summary>One turn: its role and text (media placeholders already expanded or still <c>&lt;image&gt;</c> etc.).</summary>
/// <param name="Role">Who speaks.</param>
/// <param name="Content">What is said.</param>
public sealed record ChatMessage(ChatRole Role, string Content);
