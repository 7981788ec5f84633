using System.Diagnostics;
using System.Text;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Models.Qwen25Omni.Tiny;
using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Tests.Testing;

/// <summary>Outcome of the demo.</summary>
/// <param name="InitialLoss">Loss at step 1.</param>
/// <param name="FinalLoss">Loss at the last step.</param>
/// <param name="Expected">The trained answer.</param>
/// <param name="Generated">What greedy decoding produced after training.</param>
public sealed record TextDemoResult(float InitialLoss, float FinalLoss, string Expected, string Generated)
{
    /// <summary>Whether the model reproduces the answer exactly.</summary>
    public bool Reproduced => Generated == Expected;
}

/// <summary>
/// The main job until multimodal fine-tuning lands: write a tiny random Qwen2.5-Omni, load it back through the strict
/// Hugging Face loader, fine-tune the thinker's text decoder on one chat sample (loss on the answer only), then
/// generate the answer greedily. Tokens here are single bytes plus the Omni special tokens (the tokenizer's merges
/// are not applied yet: that is the processor's job).
/// </summary>
public static class TextOverfitDemo
{
    const string Question = "What color is the circle in the picture?";
    const string Answer = "The circle is red.";

    /// <summary>Runs the demo in <paramref name="folder"/>, writing progress lines to <paramref name="log"/>.</summary>
    public static TextDemoResult Run(string folder, int steps, int seed, TextWriter log, Device? device = null)
    {
        string modelFolder = Path.Combine(folder, "tiny-model");
        var config = TinyQwen25Omni.Write(modelFolder, seed);
        log.WriteLine($"[1/4] wrote tiny Qwen2.5-Omni to {modelFolder}");
        device ??= CPU;
        var (model, _, report) = ThinkerCheckpointLoader.Load(modelFolder, device);
        using (model)
        {
            log.WriteLine($"[2/4] {report.Describe()} on {device}");
            var t = config.Thinker;
            int newline = ByteLevelAlphabet.IdOf[(byte)'\n'];
            List<long> Bytes(string s) => Encoding.UTF8.GetBytes(s).Select(b => (long)ByteLevelAlphabet.IdOf[b]).ToList();
            var prompt = new List<long> { t.BosTokenId };
            prompt.AddRange(Bytes("user\n" + Question));
            prompt.AddRange([t.EosTokenId, newline, t.BosTokenId]);
            prompt.AddRange(Bytes("assistant\n"));
            var answer = Bytes(Answer);
            answer.AddRange([t.EosTokenId, newline]);
            long[] ids = [.. prompt, .. answer];
            long[] labels = [.. prompt.Select(_ => CausalLmLoss.IgnoreIndex), .. answer];

            random.manual_seed(seed);
            using var inputIds = tensor(ids, device: device).unsqueeze(0);
            using var labelIds = tensor(labels, device: device).unsqueeze(0);
            using var optimizer = optim.AdamW(model.parameters(), lr: 3e-3, weight_decay: 0.0);
            float initial = 0, final = 0;
            var clock = Stopwatch.StartNew();
            log.WriteLine($"[3/4] fine-tuning on one sample of {ids.Length} tokens for {steps} steps");
            for (int step = 1; step <= steps; step++)
            {
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                Tensor loss = CausalLmLoss.Mean(model.Forward(inputIds), labelIds);
                loss.backward();
                optimizer.step();
                float value = loss.item<float>();
                if (step == 1) initial = value;
                final = value;
                if (step == 1 || step % 10 == 0 || step == steps)
                    log.WriteLine($"  step {step,4}  loss {value:F4}  elapsed {clock.ElapsedMilliseconds} ms");
            }
            string generated = GreedyAnswer(model, prompt, t.EosTokenId, answer.Count + 4);
            log.WriteLine($"[4/4] greedy answer: \"{generated}\" (expected \"{Answer}\")");
            return new TextDemoResult(initial, final, Answer, generated);
        }
    }

    static string GreedyAnswer(Qwen25OmniThinkerForConditionalGeneration model, List<long> prompt, int eos, int maxTokens)
    {
        var ids = new List<long>(prompt);
        var bytes = new List<byte>();
        var byteOfId = ByteLevelAlphabet.IdOf.ToDictionary(p => p.Value, p => p.Key);
        using var noGrad = no_grad();
        for (int i = 0; i < maxTokens; i++)
        {
            using var scope = NewDisposeScope();
            using var input = tensor(ids.ToArray(), device: model.parameters().First().device).unsqueeze(0);
            long next = model.Forward(input)[0, -1].argmax().item<long>();
            if (next == eos || !byteOfId.TryGetValue((int)next, out byte b)) break;
            bytes.Add(b);
            ids.Add(next);
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
