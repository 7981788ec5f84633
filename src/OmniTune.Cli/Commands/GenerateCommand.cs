using System.CommandLine;
using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Data.Text;
using OmniTune.Checkpoints.Conversion;
using OmniTune.Models.Qwen25Omni.Thinker;
using OmniTune.Training.Checkpointing;
using OmniTune.Training.Generation;
using OmniTune.Training.Lora;

namespace OmniTune.Cli.Commands;

/// <summary><c>omnitune generate --model DIR --prompt TEXT [--image F] [--audio F] [--video F]</c>.</summary>
static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face folder or training checkpoint root (latest iteration)", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "User message; <image>/<audio>/<video> tags are added for media not placed", Required = true };
        var images = new Option<string[]>("--image") { Description = "Image file(s)", AllowMultipleArgumentsPerToken = true };
        var audios = new Option<string[]>("--audio") { Description = "Audio file(s)", AllowMultipleArgumentsPerToken = true };
        var videos = new Option<string[]>("--video") { Description = "Video file(s)", AllowMultipleArgumentsPerToken = true };
        var audioInVideo = new Option<bool>("--use-audio-in-video") { Description = "Interleave each video's own audio track" };
        var maxTokens = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var system = new Option<string?>("--system") { Description = "System prompt (default: You are a helpful assistant.)" };
        var adapter = new Option<string?>("--adapter") { Description = "LoRA adapters (a folder with adapter_model.safetensors, or a LoRA checkpoint root) on top of --model" };
        var command = new Command("generate", "Answer a prompt with optional image, audio and video inputs")
        {
            model, prompt, images, audios, videos, audioInVideo, maxTokens, temperature, topP, seed, system, adapter,
        };
        command.SetAction(parse => CommandErrors.Run(() =>
        {
            var options = new GenerationOptions(parse.GetValue(maxTokens), parse.GetValue(temperature), parse.GetValue(topP), parse.GetValue(seed)).Validated();
            var located = CheckpointLocator.Locate(parse.GetValue(model)!);
            string[] i = parse.GetValue(images) ?? [], a = parse.GetValue(audios) ?? [], v = parse.GetValue(videos) ?? [];
            var processor = Qwen25OmniProcessor.Load(located.ConfigFolder, new ProcessorSettings { UseAudioInVideo = parse.GetValue(audioInVideo), ExifTranspose = true });
            string text = parse.GetValue(prompt)!;
            string Missing(string tag, int count) => string.Concat(Enumerable.Repeat(tag, Math.Max(0, count - (text.Split(tag).Length - 1))));
            text = Missing("<image>", i.Length) + Missing("<video>", v.Length) + (parse.GetValue(audioInVideo) ? "" : Missing("<audio>", a.Length)) + text;
            var encoded = processor.EncodePrompt([new ChatMessage(ChatRole.User, text)], new SampleMedia(i, v, a), parse.GetValue(system));
            var (inputs, _) = ThinkerInputsBuilder.FromConversation(encoded, parse.GetValue(audioInVideo));
            Qwen25OmniThinkerForConditionalGeneration thinker;
            IThinkerTensorSource source = located.Weights();
            if (parse.GetValue(adapter) is string adapterPath)
            {
                string adapterFolder = CheckpointLocator.Locate(adapterPath).AdapterFolder
                    ?? throw new ArgumentException($"--adapter {adapterPath}: no LoRA adapters there ({LoraAdapters.ConfigFile}, {LoraAdapters.WeightsFile})");
                source = new LoraMergedSource(source, adapterFolder);   // the one merge, whichever way the adapters were saved
            }
            using (source) thinker = ThinkerSourceLoader.Load(source);
            using (thinker)
            {
                var ids = ThinkerGenerator.Generate(thinker, inputs, processor.Template.StopTokenIds.ToHashSet(),
                    options with { TokenLimit = processor.Tokenizer.Count });
                Console.WriteLine(processor.Tokenizer.Decode(ids, skipSpecial: true));
            }
            return 0;
        }));
        return command;
    }
}
