using OmniTune.Data.Media;
using OmniTune.Data.Processing;
using OmniTune.Data.Text;
using OmniTune.Models.Common;
using OmniTune.Models.Qwen25Omni.Loading;
using OmniTune.Models.Qwen25Omni.Tiny;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

public sealed class ProcessorEndToEndTests
{
    [Fact]
    public void A_conversation_with_an_image_an_audio_and_a_video_with_sound_runs_through_the_tiny_thinker()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string model = Path.Combine(dir.Path, "model");
        TinyQwen25Omni.Write(model, seed: 3);
        string image = MediaFixtures.Image(dir.Path, "circle.png", 120, 90);
        string tone = MediaFixtures.Tone(dir.Path, "tone.wav", 1.2);
        string video = MediaFixtures.Video(dir.Path, "clip.mp4", seconds: 3, width: 112, height: 112, fps: 8);
        var processor = Qwen25OmniProcessor.Load(model, new ProcessorSettings { UseAudioInVideo = true });
        var messages = new List<ChatMessage>
        {
            new(ChatRole.User, "<image>What shape? <video><audio>What happens?"),
            new(ChatRole.Assistant, "A red circle, a tone and a test pattern."),
        };
        // As in LLaMA-Factory's video+audio demo, the video's sound comes as its own file (here a tone).
        EncodedConversation encoded = processor.Encode(messages, new SampleMedia([image], [video], [tone]));
        Assert.Single(encoded.Images);
        Assert.Single(encoded.Audios);
        var (inputs, labels) = ThinkerInputsBuilder.FromConversation(encoded, useAudioInVideo: true);
        var (thinker, _, _) = ThinkerCheckpointLoader.Load(model);
        using (thinker)
        using (no_grad())
        {
            Tensor logits = thinker.Forward(inputs);
            Assert.Equal(inputs.InputIds.shape[1], logits.shape[1]);
            Assert.True(float.IsFinite(CausalLmLoss.Mean(logits, labels).item<float>()));
        }
        Assert.Equal("A red circle, a tone and a test pattern.<|im_end|>\n", processor.Tokenizer.Decode(encoded.Pairs[0].Target));
    }

    [Fact]
    public void Without_an_audio_list_each_video_contributes_its_own_track()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string model = Path.Combine(dir.Path, "model");
        TinyQwen25Omni.Write(model);
        string video = MediaFixtures.Video(dir.Path, "clip.mp4", seconds: 2);
        var processor = Qwen25OmniProcessor.Load(model, new ProcessorSettings { UseAudioInVideo = true });
        var encoded = processor.Encode([new(ChatRole.User, "<video>Describe."), new(ChatRole.Assistant, "Bars.")], new SampleMedia([], [video], []));
        Assert.Single(encoded.Audios);
        string source = processor.Tokenizer.Decode(encoded.Pairs[0].Source);
        Assert.Contains("<|vision_bos|><|audio_bos|><|VIDEO|>", source);
    }
}
