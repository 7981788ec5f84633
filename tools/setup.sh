#!/usr/bin/env bash
# Installs what OmniTune needs from Debian's packages, once (idempotent). Needs root or sudo.
set -euo pipefail
needed=()
command -v ffmpeg >/dev/null 2>&1 || needed+=(ffmpeg)
command -v mpirun >/dev/null 2>&1 || needed+=(openmpi-bin libopenmpi-dev)
command -v readelf >/dev/null 2>&1 || needed+=(binutils)
# libsoxr: audio is resampled as librosa does (soxr HQ); ffmpeg depends on it too.
{ ldconfig -p 2>/dev/null | grep 'libsoxr\.so\.0 ' >/dev/null; } || needed+=(libsoxr0)   # grep reads all: no SIGPIPE under pipefail
# jemalloc: omnitune's allocator on Linux (Core/Native/CachingAllocator: freed tensor buffers reused, not zeroed again).
{ ldconfig -p 2>/dev/null | grep 'libjemalloc\.so\.2 ' >/dev/null; } || needed+=(libjemalloc2)
# Debian's python3 with Pillow: the test that compares our bicubic resize with Pillow's byte for byte.
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import PIL" >/dev/null 2>&1; } || needed+=(python3-pil)
# ... and soundfile + numpy: the test that compares our audio decoding with librosa.load's (bench/audio-resampling.py).
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import soundfile, numpy" >/dev/null 2>&1; } || needed+=(python3-soundfile python3-numpy)
# ... and torch: the tests that torch.load OmniTune's model_optim_rng.pt files (tools/pt-fixtures.py describe).
{ [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" >/dev/null 2>&1; } || needed+=(python3-torch)
if [ ${#needed[@]} -gt 0 ]; then
  echo "setup: installing ${needed[*]} from apt"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
