namespace OmniTune.Training.Lora;

/// <summary>Which tool's LoRA the target names mean.</summary>
public enum LoraFlavour
{
    /// <summary>
    /// Hugging Face module names (q_proj, k_proj, …): PEFT's adapters, one per linear layer, saved as a folder PEFT's
    /// <c>PeftModel.from_pretrained</c> loads onto the Hugging Face thinker.
    /// </summary>
    Peft,

    /// <summary>
    /// MindSpeed-MM's names (linear_qkv, linear_proj, linear_fc1, linear_fc2): PEFT on MindSpeed's fused layers — one
    /// adapter spans q, k and v (one A shared by the three), one spans gate and up — saved in MindSpeed's checkpoint
    /// layout and keys (<c>…linear_qkv.lora_A.default.weight</c> in <c>iter_*/mp_rank_*/model_optim_rng.pt</c>).
    /// </summary>
    MindSpeed,
}

/// <summary>LoRA hyper-parameters (MindSpeed-MM's --lora-* flags, mindspeed_mm.md §8).</summary>
/// <param name="TargetModules">MindSpeed names (linear_qkv, linear_proj, linear_fc1, linear_fc2) or Hugging Face names (q_proj, …), not both.</param>
/// <param name="Rank">r.</param>
/// <param name="Alpha">α; the update is scaled by α / r.</param>
/// <param name="Dropout">Dropout on the adapter input.</param>
/// <param name="SaveFullWeight">Also save merged full weights (MindSpeed's switch that never takes effect there).</param>
public sealed record LoraSettings(IReadOnlyList<string> TargetModules, int Rank = 8, double Alpha = 16, double Dropout = 0, bool SaveFullWeight = false)
{
    static readonly string[] MindSpeedNames = ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"];

    /// <summary>Scale of the adapter output.</summary>
    public double Scaling => Alpha / Rank;

    /// <summary>MindSpeed's fused adapters for MindSpeed names, PEFT's per-module ones for Hugging Face names; mixing them is an error.</summary>
    public LoraFlavour Flavour
    {
        get
        {
            int mindSpeed = TargetModules.Count(MindSpeedNames.Contains);
            if (mindSpeed > 0 && mindSpeed < TargetModules.Count)
            {
                throw new ArgumentException($"--lora-target-modules {string.Join(" ", TargetModules)} mixes MindSpeed-MM names (fused adapters, MindSpeed's layout) " +
                                            "with Hugging Face ones (one adapter per projection, PEFT's layout): use one kind");
            }
            return mindSpeed > 0 ? LoraFlavour.MindSpeed : LoraFlavour.Peft;
        }
    }

    /// <summary>Hugging Face linear-layer names each target stands for.</summary>
    public static IReadOnlyList<string> HuggingFaceNames(string target) => target switch
    {
        "linear_qkv" => ["q_proj", "k_proj", "v_proj", "q", "k", "v"],
        "linear_proj" => ["o_proj", "proj", "out_proj"],
        "linear_fc1" => ["gate_proj", "up_proj", "fc1"],
        "linear_fc2" => ["down_proj", "fc2"],
        "q_proj" or "k_proj" or "v_proj" or "o_proj" or "gate_proj" or "up_proj" or "down_proj" or "out_proj" or "fc1" or "fc2" or "q" or "k" or "v" or "proj" => [target],
        _ => throw new ArgumentException($"--lora-target-modules: unknown module '{target}' (linear_qkv, linear_proj, linear_fc1, linear_fc2 or q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"),
    };
}
