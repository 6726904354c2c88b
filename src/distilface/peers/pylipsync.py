"""pylipsync (PyPI): a Python port of uLipSync. MFCC of a 64 ms window compared by cosine
similarity with one shipped template per phoneme (aa, ee, ih, oh, ou, silence), normalised to
sum 1, then scaled by loudness (log10 RMS mapped from [-2.5, -1.5] to [0, 1]); when silence
takes >= 0.3 of the similarity every other phoneme is zeroed.

Run as its README shows: `PhonemeAnalyzer()` with default settings,
`extract_phoneme_segments(audio, 16000)` (fps=60, window_size_ms=64: one frame every
16000 // 60 = 266 samples, its window centred on the frame's hop). No smoothing is added (the
package has none; uLipSync's Unity components smooth, this port does not).

Visemes: aa -> aa, ee -> E, ih -> ih, oh -> oh, ou -> ou, silence -> sil (uLipSync's A I U E O
profile). The weights drive the face as they are; with no PP the lips close only as the weights
fall towards 0 (quiet audio or silence). Its pick per frame is its `dominant_phoneme`, or sil
when every weight is 0 (the loudness gate: `dominant_phoneme` would then return the first
phoneme at weight 0). Frame j shows the centre of its hop, (start_j + hop / 2) / 16000 s.
"""

from __future__ import annotations

import time
from importlib import metadata

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.peers.base import PeerInput
from distilface.peers.visemes import VisemeTrack, weights_from_named

PACKAGE = "pylipsync"
NATIVE_FPS = 60  # the package's default
RENAME = {"aa": "aa", "ee": "E", "ih": "ih", "oh": "oh", "ou": "ou", "silence": "sil"}


class PyLipSync:
    name = "pylipsync"
    package = f"PyPI {PACKAGE}"
    inputs = "audio (16 kHz), defaults"
    timing = (f"{NATIVE_FPS} fps requested (hop {SAMPLE_RATE_HZ // NATIVE_FPS} samples), frame at its "
              "hop centre; linear to 30 fps")
    languages = None

    def __init__(self) -> None:
        self._analyzer = None

    def unavailable(self) -> str | None:
        try:
            import pylipsync  # noqa: F401
        except ImportError as e:
            return f"PyPI pylipsync not installed ({e}); scripts/setup.sh installs it"
        return None

    def version(self) -> str:
        return metadata.version(PACKAGE)

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        if self._analyzer is None:
            from pylipsync import PhonemeAnalyzer

            self._analyzer = PhonemeAnalyzer()
        return [self._run_one(np.asarray(item.audio, dtype=np.float32)) for item in items]

    def _run_one(self, audio: np.ndarray) -> VisemeTrack:
        t0 = time.perf_counter()
        segments = self._analyzer.extract_phoneme_segments(audio, SAMPLE_RATE_HZ, fps=NATIVE_FPS)
        process_s = time.perf_counter() - t0
        hop = SAMPLE_RATE_HZ // NATIVE_FPS
        names = [p.name for p in segments[0].phonemes] if segments else list(RENAME)
        frames = [[p.target for p in s.phonemes] for s in segments]
        if any([p.name for p in s.phonemes] != names for s in segments):
            raise RuntimeError("pylipsync: phoneme order changed between frames")
        decisions = []
        for s in segments:
            top = s.dominant_phoneme
            decisions.append(RENAME[top.name] if top.target > 0 else "sil")
        times_s = (np.array([s.start for s in segments], dtype=np.float64) + hop / 2) / SAMPLE_RATE_HZ
        return VisemeTrack(times_s, weights_from_named(names, frames, RENAME), decisions, process_s)
