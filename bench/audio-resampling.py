#!/usr/bin/env python3
"""How OmniTune's audio decoding compares with librosa.load(path, sr=16000), MindSpeed-MM's audio path.

librosa.load = soundfile (libsndfile) decode at the file's rate -> mean of the channels -> python-soxr "HQ" resample ->
fix_length to ceil(n * 16000 / rate). librosa is not packaged in Debian 12; this replays it with python3-soundfile and
Debian's libsoxr0 (ctypes, soxr_oneshot at SOXR_HQ, as python-soxr calls it). It prints, per file, the sample counts and
the largest and RMS differences of OmniTune's way (ffmpeg decode at the file's rate -> mean -> the same soxr call) and of
the previous way (ffmpeg -ac 1 -ar 16000, its own resampler).
Usage: python3 bench/audio-resampling.py FILE...   (needs python3-soundfile, python3-numpy: tools/setup.sh installs them)
       python3 bench/audio-resampling.py --raw OUT FILE   writes librosa's 16 kHz waveform of FILE as float32 (the tests' reference)
"""
import ctypes, json, math, subprocess, sys
import numpy as np
import soundfile

soxr = ctypes.CDLL("libsoxr.so.0")

class QualitySpec(ctypes.Structure):
    _fields_ = [("precision", ctypes.c_double), ("phase_response", ctypes.c_double), ("passband_end", ctypes.c_double),
                ("stopband_begin", ctypes.c_double), ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]

class IoSpec(ctypes.Structure):
    _fields_ = [("itype", ctypes.c_int), ("otype", ctypes.c_int), ("scale", ctypes.c_double), ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]

soxr.soxr_quality_spec.restype = QualitySpec
soxr.soxr_quality_spec.argtypes = [ctypes.c_ulong, ctypes.c_ulong]
soxr.soxr_io_spec.restype = IoSpec
soxr.soxr_io_spec.argtypes = [ctypes.c_int, ctypes.c_int]
soxr.soxr_oneshot.restype = ctypes.c_char_p


def soxr_hq(x, rate, target):
    if rate == target:
        return x
    x = np.ascontiguousarray(x, dtype=np.float32)
    olen = int(len(x) * target / rate + 1.0)
    y = np.zeros(olen, dtype=np.float32)
    done = ctypes.c_size_t(0)
    q = soxr.soxr_quality_spec(4, 0)
    io = soxr.soxr_io_spec(0, 0)
    err = soxr.soxr_oneshot(ctypes.c_double(rate), ctypes.c_double(target), ctypes.c_uint(1), x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(len(x)),
                            None, y.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(olen), ctypes.byref(done), ctypes.byref(io), ctypes.byref(q), None)
    if err:
        raise RuntimeError(err.decode())
    y = y[: done.value]
    n = int(math.ceil(len(x) * (float(target) / rate)))
    return np.pad(y, (0, max(0, n - len(y))))[:n]


def librosa_way(path):
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr_hq(data.mean(axis=1).astype(np.float32), rate, 16000)


def ffmpeg_raw(path, extra):
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", *extra, "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32)


def omnitune_way(path):
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels", "-of", "json", path],
                                     check=True, capture_output=True).stdout)["streams"][0]
    channels, rate = int(info["channels"]), int(info["sample_rate"])
    x = ffmpeg_raw(path, []).reshape(-1, channels).mean(axis=1).astype(np.float32)
    return soxr_hq(x, rate, 16000)


def frames(n):
    return (min(n, 4_800_000) + 159) // 160


if len(sys.argv) == 4 and sys.argv[1] == "--raw":
    librosa_way(sys.argv[3]).astype(np.float32).tofile(sys.argv[2])
    sys.exit(0)

for path in sys.argv[1:]:
    ref = librosa_way(path)
    for name, y in (("omnitune (ffmpeg decode + soxr HQ)", omnitune_way(path)), ("previous (ffmpeg -ar 16000)", ffmpeg_raw(path, ["-ac", "1", "-ar", "16000"]))):
        n = min(len(ref), len(y))
        d = ref[:n] - y[:n]
        print(f"{path}: librosa {len(ref)} samples ({frames(len(ref))} mel frames) vs {name} {len(y)} ({frames(len(y))}): "
              f"max |diff| {np.abs(d).max():.2e}, rms diff {math.sqrt(float(np.mean(d.astype(np.float64) ** 2))):.2e}, rms signal {math.sqrt(float(np.mean(ref.astype(np.float64) ** 2))):.2e}")
