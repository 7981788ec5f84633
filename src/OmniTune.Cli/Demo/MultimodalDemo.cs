using System.Globalization;
using System.Text.Json;
using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Data.Text;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Training.Arguments;
using OmniTune.Training.Generation;
using OmniTune.Training.Loop;

namespace OmniTune.Cli.Demo;

/// <summary>Outcome of the demo.</summary>
/// <param name="FirstLoss">Loss of the first iteration.</param>
/// <param name="LastLoss">Loss of the last iteration.</param>
/// <param name="Reproduced">Answers generated exactly.</param>
/// <param name="Total">Questions asked.</param>
public sealed record DemoResult(double FirstLoss, double LastLoss, int Reproduced, int Total);

/// <summary>
/// The README's main job: build a tiny Qwen2.5-Omni, synthesize a multimodal dataset, fine-tune it on CPU with
/// MindSpeed-MM-style model.json / data.json through <c>omnitune finetune</c>'s trainer, save, reload the checkpoint and
/// generate every answer, counting how many come back exactly.
/// </summary>
public static class MultimodalDemo
{
    /// <summary>Runs the demo in <paramref name="folder"/>.</summary>
    public static DemoResult Run(string folder, int steps, int seed, TextWriter log)
    {
        string model = Path.Combine(folder, "tiny-model"), data = Path.Combine(folder, "data"), checkpoints = Path.Combine(folder, "checkpoints");
        if (Directory.Exists(checkpoints)) Directory.Delete(checkpoints, recursive: true);
        TinyQwen25Omni.Write(model, seed);
        log.WriteLine($"[1/5] wrote a tiny Qwen2.5-Omni (all three towers) to {model}");
        var samples = DemoDataset.Write(data);
        log.WriteLine($"[2/5] synthesized {samples.Count} conversations (shapes, tones, videos with sound, text) in {data}");
        string dataJson = Path.Combine(folder, "data.json"), modelJson = Path.Combine(folder, "model.json");
        DemoDataset.WriteDataJson(dataJson, model, data, Path.Combine(folder, "cache"));
        File.WriteAllText(modelJson, """
            {
              "model_id": "qwen2_5_omni",
              "image_encoder": { "vision_encoder": { "freeze": true }, "vision_projector": { "freeze": false } },
              "audio_encoder": { "audio_encoder": { "freeze": false } },
              "text_decoder": { "freeze": false }
            }
            """);
        log.WriteLine($"[3/5] fine-tuning for {steps} iterations (model.json: frozen ViT; trainable projector, audio encoder and LLM)");
        string S(int v) => v.ToString(CultureInfo.InvariantCulture);
        var flags = MegatronFlags.Parse([
            "--mm-model", modelJson, "--mm-data", dataJson, "--micro-batch-size", "1", "--global-batch-size", "2", "--seq-length", "1024",
            "--lr", "3e-3", "--lr-decay-style", "cosine", "--lr-warmup-iters", "2", "--min-lr", "3e-4", "--weight-decay", "0", "--clip-grad", "1.0",
            "--train-iters", S(steps), "--seed", S(seed), "--save", checkpoints, "--save-interval", S(Math.Max(1, steps / 2)),
            "--log-interval", S(Math.Max(1, steps / 10)), "--log-tps", "--num-workers", "1"]);
        TrainingResult result = Trainer.Run(TrainingArguments.FromFlags(flags), log);

        log.WriteLine($"[4/5] reloading {result.ModelFolder} and answering every question (greedy)");
        var processor = Qwen25OmniProcessor.Load(result.ModelFolder!, new ProcessorSettings
        {
            UseAudioInVideo = true,
            ImageMaxPixels = 262144,
            VideoMaxPixels = 16384,
        });
        var (thinker, _, _) = ThinkerCheckpointLoader.Load(result.ModelFolder!);
        int reproduced = 0;
        using (thinker)
        {
            foreach (DemoSample s in samples)
            {
                var media = new SampleMedia(s.Images.Select(p => Path.Combine(data, p)).ToList(), s.Videos.Select(p => Path.Combine(data, p)).ToList(),
                    s.Audios.Select(p => Path.Combine(data, p)).ToList());
                var prompt = processor.EncodePrompt([new ChatMessage(ChatRole.User, s.Question)], media);
                var (inputs, _) = ThinkerInputsBuilder.FromConversation(prompt, useAudioInVideo: true);
                string answer = processor.Tokenizer.Decode(ThinkerGenerator.Generate(thinker, inputs, processor.Template.StopTokenIds.ToHashSet(),
                    new GenerationOptions(MaxNewTokens: 64, TokenLimit: processor.Tokenizer.Count)), skipSpecial: true);
                bool same = answer == s.Answer;
                if (same) reproduced++;
                log.WriteLine($"  {(same ? "ok  " : "miss")} {s.Question.Replace("<image>", "[image] ", StringComparison.Ordinal).Replace("<audio>", "[audio] ", StringComparison.Ordinal).Replace("<video>", "[video] ", StringComparison.Ordinal),-48} → \"{answer}\"");
            }
        }
        double first = result.StepLosses.Count > 0 ? result.StepLosses[0] : double.NaN, last = result.StepLosses.Count > 0 ? result.StepLosses[^1] : double.NaN;
        log.WriteLine($"[5/5] loss {first:F3} → {last:F3}; {reproduced} of {samples.Count} answers reproduced exactly; checkpoints and loss.png in {checkpoints}");
        return new DemoResult(first, last, reproduced, samples.Count);
    }
}
