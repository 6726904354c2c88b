"""wawa-lipsync (npm): Web Audio AnalyserNode bytes (2048-point FFT) -> 7 band energies, volume
and spectral centroid, averaged over the last 10 analyses -> hand-set rules score the 15 Oculus
visemes -> the top one, with a bonus for the current viseme in its first 100 ms.

Run by `node/wawa.mjs` (see its header): the package's `Lipsync` class as its README uses it,
`processAudio()` once per animation frame at 60 fps, with a spec-following AnalyserNode at an
AudioContext rate of 48 kHz (what a browser usually runs; the 16 kHz clip is resampled by
scipy's polyphase filter, so the analyser's 2048 points span 43 ms as they do in a browser).
The package outputs one viseme; the weights are its example app's morph-target smoothing (lerp
towards the active viseme, see wawa.mjs). Our 30 fps frames are every second animation frame.

Visemes: the package's VISEMES names (viseme_sil ... viseme_U) -> sil ... ou as for headaudio.
Its pick per frame is `lipsync.viseme`.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

from distilface.audio import SAMPLE_RATE_HZ
from distilface.peers import nodejs
from distilface.peers.base import PeerInput
from distilface.peers.headaudio import ANIMATION_FPS, track_from_driver
from distilface.peers.visemes import VisemeTrack

PACKAGE = "wawa-lipsync"
SCRIPT = "wawa.mjs"
CONTEXT_RATE_HZ = 48000


class Wawa:
    name = "wawa-lipsync"
    package = f"npm {PACKAGE}"
    inputs = (f"audio (resampled to a {CONTEXT_RATE_HZ // 1000} kHz AudioContext), default Lipsync(); "
              "weights from its example app's smoothing")
    timing = f"processAudio() per animation frame at {ANIMATION_FPS} fps; every 2nd = 30 fps"
    languages = None

    def unavailable(self) -> str | None:
        return nodejs.unavailable(PACKAGE)

    def version(self) -> str:
        return nodejs.installed_version(PACKAGE) or "not installed"

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        up, down = CONTEXT_RATE_HZ // SAMPLE_RATE_HZ, 1
        if up * SAMPLE_RATE_HZ != CONTEXT_RATE_HZ:
            raise ValueError(f"context rate {CONTEXT_RATE_HZ} is not a multiple of {SAMPLE_RATE_HZ}")
        audios = [resample_poly(np.asarray(item.audio, dtype=np.float64), up, down).astype(np.float32)
                  for item in items]
        results = nodejs.run_driver(SCRIPT, audios, CONTEXT_RATE_HZ, ANIMATION_FPS)
        return [track_from_driver(r) for r in results]
