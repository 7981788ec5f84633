using OmniTune.Data.Media;
using OmniTune.Tests.Testing;
using static TorchSharp.torch;

namespace OmniTune.Tests.Data;

public sealed class AudioFeatureTests
{
    static readonly ProcessorSettings Settings = new();

    [Fact]
    public void The_slaney_mel_filters_match_the_reference_values()
    {
        double[,] f = WhisperFeatures.MelFilters(128, 400, 16000);
        Assert.Equal(0.012373986, f[0, 1], 8);
        Assert.Equal(0.030392565, f[1, 1], 8);
        Assert.Equal(0.024747973, f[2, 2], 8);
        Assert.Equal(0.0067496827, f[64, 42], 9);
        Assert.Equal(0.018091518, f[64, 43], 8);
        double[] last = [0.00047569508, 0.0016171717, 0.0027586484, 0.003900125, 0.0050416017, 0.0044571208, 0.0033428406, 0.0022285604, 0.0011142802];
        for (int i = 0; i < last.Length; i++) Assert.Equal(last[i], f[127, 191 + i], 9);
        Assert.Equal(3.1909855, f.Cast<double>().Sum(), 6);
        Assert.Equal(23.38276, WhisperFeatures.MelToHertz(WhisperFeatures.HertzToMel(8000) / 129), 4);
        Assert.Equal(1, Enumerable.Range(0, 201).Count(k => f[0, k] != 0));
    }

    static float[] Tone(int samples, double hz = 440, double amplitude = 0.3) =>
        Enumerable.Range(0, samples).Select(i => (float)(amplitude * Math.Sin(2 * Math.PI * hz * i / 16000))).ToArray();

    /// <summary>Hugging Face's computation on the whole 300 s window: pad to 4.8 M samples, centred STFT with reflect padding, drop the last frame.</summary>
    static Tensor FullWindow(float[] samples)
    {
        var padded = new float[4_800_000];
        Array.Copy(samples, padded, Math.Min(samples.Length, padded.Length));
        Tensor x = tensor(padded);
        Tensor spec = stft(x, 400, 160, 400, hann_window(400, periodic: true), center: true, pad_mode: TorchSharp.PaddingModes.Reflect, return_complex: true);
        Tensor power = spec.narrow(1, 0, 30000).abs().pow(2);
        double[,] f = WhisperFeatures.MelFilters(128, 400, 16000);
        var flat = new float[128 * 201];
        for (int m = 0; m < 128; m++)
        {
            for (int k = 0; k < 201; k++) flat[m * 201 + k] = (float)f[m, k];
        }
        Tensor log = tensor(flat).reshape(128, 201).matmul(power).clamp_min(1e-10).log10();
        log = log.clamp_min(log.max().item<float>() - 8.0);
        return (log + 4.0) / 4.0;
    }

    [Theory]
    [InlineData(1600)]
    [InlineData(16000)]
    [InlineData(46421)]
    [InlineData(161)]
    public void Computing_only_the_valid_frames_equals_the_full_300_second_window(int samples)
    {
        float[] audio = Tone(samples);
        AudioInput input = WhisperFeatures.Compute(audio, Settings, "tone");
        Assert.Equal((samples + 159) / 160, input.Frames);
        Assert.Equal([128L, input.Frames], input.Features.shape);
        TensorAssert.Close(FullWindow(audio).narrow(1, 0, input.Frames), input.Features, 2e-5);
    }

    [Fact]
    public void Zero_length_audio_is_an_error_naming_the_file()
    {
        var error = Assert.Throws<MediaException>(() => WhisperFeatures.Compute([], Settings, "empty.wav"));
        Assert.Equal("empty.wav", error.FilePath);
        Assert.Contains("zero length", error.Message);
    }

    [Fact]
    public void A_synthesized_wav_decodes_through_ffmpeg_to_the_expected_frames()
    {
        Assert.True(MediaFixtures.HasFFmpeg, "ffmpeg is required (apt-get install ffmpeg)");
        using var dir = new TempFolder();
        string wav = MediaFixtures.Tone(dir.Path, "tone.wav", 1.5);
        AudioInput input = WhisperFeatures.FromFile(wav, Settings);
        Assert.Equal(150, input.Frames);
        string stereo = MediaFixtures.Tone(dir.Path, "stereo44k.wav", 1.0, rate: 44100, channels: 2);
        Assert.Equal(100, WhisperFeatures.FromFile(stereo, Settings).Frames);
        string empty = MediaFixtures.Tone(dir.Path, "empty.wav", 0);
        Assert.Contains("zero length", Assert.Throws<MediaException>(() => WhisperFeatures.FromFile(empty, Settings)).Message);
        string garbage = dir.File("garbage.mp3");
        File.WriteAllText(garbage, "this is not audio");
        Assert.Equal(garbage, Assert.Throws<MediaException>(() => WhisperFeatures.FromFile(garbage, Settings)).FilePath);
    }
}
