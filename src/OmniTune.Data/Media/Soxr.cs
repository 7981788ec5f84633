using System.Runtime.InteropServices;

namespace OmniTune.Data.Media;

/// <summary>
/// libsoxr's one-shot resampler at its "HQ" recipe (20-bit precision, linear phase): what librosa.load(sr=…) uses
/// (python-soxr, res_type "soxr_hq") and so MindSpeed-MM's audio path. Debian's libsoxr0 (a dependency of ffmpeg).
/// </summary>
public static partial class Soxr
{
    const string Library = "libsoxr.so.0";
    const uint HighQuality = 4;   // SOXR_HQ = SOXR_20_BITQ
    const int Float32Interleaved = 0;   // SOXR_FLOAT32_I

    [StructLayout(LayoutKind.Sequential)]
    struct QualitySpec
    {
        public double Precision, PhaseResponse, PassbandEnd, StopbandBegin;
        public IntPtr E;
        public nuint Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    struct IoSpec
    {
        public int InputType, OutputType;
        public double Scale;
        public IntPtr E;
        public nuint Flags;
    }

    [LibraryImport(Library, EntryPoint = "soxr_quality_spec")]
    private static partial QualitySpec QualitySpecOf(nuint recipe, nuint flags);

    [LibraryImport(Library, EntryPoint = "soxr_io_spec")]
    private static partial IoSpec IoSpecOf(int inputType, int outputType);

    [LibraryImport(Library, EntryPoint = "soxr_oneshot")]
    private static unsafe partial IntPtr OneShot(double inputRate, double outputRate, uint channels, float* input, nuint inputLength, nuint* inputDone,
        float* output, nuint outputLength, nuint* outputDone, IoSpec* io, QualitySpec* quality, IntPtr runtime);

    /// <summary>
    /// Mono <paramref name="samples"/> at <paramref name="inputRate"/> resampled to <paramref name="outputRate"/>, then cut
    /// or zero-padded to ⌈n · out / in⌉ samples, as librosa.resample does (its <c>fix_length</c>).
    /// </summary>
    public static unsafe float[] Resample(float[] samples, int inputRate, int outputRate)
    {
        if (inputRate == outputRate) return samples;
        int target = (int)Math.Ceiling(samples.Length * ((double)outputRate / inputRate));
        var output = new float[target + 2];
        QualitySpec quality = QualitySpecOf(HighQuality, 0);
        IoSpec io = IoSpecOf(Float32Interleaved, Float32Interleaved);
        nuint done = 0;
        fixed (float* input = samples)
        fixed (float* result = output)
        {
            IntPtr error = OneShot(inputRate, outputRate, 1, input, (nuint)samples.Length, null, result, (nuint)output.Length, &done, &io, &quality, IntPtr.Zero);
            if (error != IntPtr.Zero) throw new InvalidOperationException($"libsoxr: {Marshal.PtrToStringAnsi(error)}");
        }
        var fixedLength = new float[target];
        Array.Copy(output, fixedLength, Math.Min(target, (int)done));
        return fixedLength;
    }
}
