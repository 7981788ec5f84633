using TorchSharp;
using static TorchSharp.torch;

namespace OmniTune.Data.Media;

/// <summary>Log-mel features of one audio: [mel bins, F] float32 for its F valid frames.</summary>
/// <param name="Features">Valid frames only; the processor pads to the batch.</param>
/// <param name="Frames">F = ceil(samples / hop), capped at the 300 s window.</param>
public sealed record AudioInput(Tensor Features, int Frames);

/// <summary>
/// Whisper's log-mel spectrogram with the Qwen2.5-Omni settings (reference §8.7): 128 Slaney mel bins, n_fft 400,
/// hop 160, periodic Hann, centred frames with reflect padding, last frame dropped, log10 floored at 1e-10, clamped at
/// the audio's maximum − 8, (x + 4) / 4. Only the frames that touch real samples are computed; the 300 s zero padding
/// of Hugging Face's <c>max_length</c> mode is accounted for exactly (zeros after the audio, the clamp taken over every
/// frame that touches real samples).
/// </summary>
public static class WhisperFeatures
{
    /// <summary>Slaney mel filter bank [bins, fft/2+1] in float64 (HF <c>mel_filter_bank</c>, slaney scale and norm).</summary>
    public static double[,] MelFilters(int bins, int fftSize, int sampleRate, double minHz = 0, double maxHz = 8000)
    {
        int frequencies = fftSize / 2 + 1;
        double melMin = HertzToMel(minHz), melMax = HertzToMel(maxHz);
        var centers = new double[bins + 2];
        for (int i = 0; i < centers.Length; i++) centers[i] = MelToHertz(melMin + (melMax - melMin) * i / (bins + 1));
        var filters = new double[bins, frequencies];
        for (int k = 0; k < frequencies; k++)
        {
            double f = (double)(sampleRate / 2) * k / (frequencies - 1);
            for (int m = 0; m < bins; m++)
            {
                double down = (f - centers[m]) / (centers[m + 1] - centers[m]);
                double up = (centers[m + 2] - f) / (centers[m + 2] - centers[m + 1]);
                double weight = Math.Max(0, Math.Min(down, up));
                filters[m, k] = weight * 2.0 / (centers[m + 2] - centers[m]);
            }
        }
        return filters;
    }

    /// <summary>Slaney mel scale.</summary>
    public static double HertzToMel(double hz) => hz < 1000 ? 3.0 * hz / 200.0 : 15.0 + Math.Log(hz / 1000.0) * (27.0 / Math.Log(6.4));

    /// <summary>Inverse of <see cref="HertzToMel"/>.</summary>
    public static double MelToHertz(double mel) => mel < 15 ? 200.0 * mel / 3.0 : 1000.0 * Math.Exp(Math.Log(6.4) / 27.0 * (mel - 15.0));

    /// <summary>Computes the features of mono samples at the processor's rate.</summary>
    public static AudioInput Compute(float[] samples, ProcessorSettings s, string name)
    {
        if (samples.Length == 0) throw new MediaException(name, "audio has no samples (zero length)");
        int hop = s.HopLength, fft = s.FftSize, half = fft / 2;
        int maxSamples = s.ChunkLengthSeconds * s.AudioSamplingRate;
        int length = Math.Min(samples.Length, maxSamples);
        int validFrames = (length + hop - 1) / hop;
        int totalFrames = maxSamples / hop;   // frames of the padded 300 s window (last STFT frame dropped)
        // Frames whose window [j·hop − half, j·hop + half) touches a real sample.
        int touching = Math.Min(totalFrames, ((length - 1 + half) / hop) + 1);
        using var scope = NewDisposeScope();
        // Signal: reflect padding before sample 0, the audio, then the zeros of the 300 s window (and its reflect
        // padding at the very end when the audio fills the window).
        int needed = (touching - 1) * hop + fft;
        var signal = new float[needed];
        for (int i = 0; i < needed; i++)
        {
            long t = i - half;   // position in the padded 300 s signal
            if (t < 0) t = -t;
            else if (t >= maxSamples) t = 2L * (maxSamples - 1) - t;
            signal[i] = t < length ? samples[t] : 0f;
        }
        Tensor x = tensor(signal);
        Tensor window = hann_window(fft, periodic: true);
        Tensor spectrum = stft(x, fft, hop, fft, window, center: false, return_complex: true);   // [bins, touching]
        Tensor power = spectrum.abs().pow(2);
        Tensor filters = FilterTensor(s);
        Tensor mel = filters.matmul(power);                                                        // [mel, touching]
        Tensor log = mel.clamp_min(1e-10).log10();
        double max = log.max().item<float>();
        if (touching < totalFrames) max = Math.Max(max, -10.0);   // silent frames of the padding hold log10(1e-10)
        log = log.narrow(1, 0, validFrames).clamp_min(max - 8.0);
        Tensor features = ((log + 4.0) / 4.0).contiguous();
        return new AudioInput(features.MoveToOuterDisposeScope(), validFrames);
    }

    static readonly Dictionary<(int, int, int), float[]> FilterCache = [];

    static Tensor FilterTensor(ProcessorSettings s)
    {
        var key = (s.MelBins, s.FftSize, s.AudioSamplingRate);
        float[] flat;
        lock (FilterCache)
        {
            if (!FilterCache.TryGetValue(key, out flat!))
            {
                double[,] f = MelFilters(s.MelBins, s.FftSize, s.AudioSamplingRate);
                flat = new float[f.Length];
                int cols = f.GetLength(1);
                for (int m = 0; m < f.GetLength(0); m++)
                {
                    for (int k = 0; k < cols; k++) flat[m * cols + k] = (float)f[m, k];
                }
                FilterCache[key] = flat;
            }
        }
        return tensor(flat).reshape(s.MelBins, s.FftSize / 2 + 1);
    }

    /// <summary>Decodes any ffmpeg-readable file (or a video's audio track) and computes its features.</summary>
    public static AudioInput FromFile(string path, ProcessorSettings s) =>
        Compute(FFmpeg.DecodeAudio(path, s.AudioSamplingRate), s, path);
}
