"""openfacefx (PyPI): offline FaceFX-style tracks of the 15 Oculus visemes as sparse keyframes
(Ramer-Douglas-Peucker reduced, sampled back by linear interpolation as engines play them).
It has no viseme recognition from audio; two of its modes fit an audio-in comparison:

- `OpenFaceFXEnergy` ("energy" mode, `generate_from_energy(wav)`, defaults): audio loudness
  only. Per-frame RMS (60 fps, window 2 / fps), noise gate at 0.06 of the 95th-percentile level,
  attack/release smoothing; the opening goes to aa (75 %) and E/O (25 %), the rest to sil. The
  package says itself that this is "an energy fallback, not lip-sync": no PP ever. Input: the
  clip as a 16-bit PCM WAV (the only format this mode reads), so it sees the whole clip at once
  (its level reference is the clip's 95th percentile).
- `OpenFaceFXNaive` ("naive" mode, `generate_naive(text, duration)`, defaults): the transcript
  and the clip's duration only, no audio content. Its G2P is given the CMU dictionary that
  ships in pocketsphinx (`G2P.load_cmudict`, as its docs advise for production; without it
  only 17 built-in words and letter rules); phones are spread over the duration by its
  duration priors, then its Cohen-Massaro coarticulation makes the curves (PP closures sealed).
  English only.

Frames: the track is sampled (its own `edits.sample`) at its 60 fps grid, j / 60 s, then linearly
to 30 fps (exact at even frames). Its pick per frame is the dominant channel by its own cue
export (`export_cues.dominant_cues`, rest below 0.1 -> sil). Names: sil, PP, ..., aa, E,
I -> ih, O -> oh, U -> ou.
"""

from __future__ import annotations

import math
import tempfile
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.peers.base import PeerInput
from distilface.peers.visemes import VisemeTrack, frame_times, weights_from_named

PACKAGE = "openfacefx"
NATIVE_FPS = 60.0  # the package's default
RENAME = {"sil": "sil", "PP": "PP", "FF": "FF", "TH": "TH", "DD": "DD", "kk": "kk", "CH": "CH", "SS": "SS",
          "nn": "nn", "RR": "RR", "aa": "aa", "E": "E", "I": "ih", "O": "oh", "U": "ou"}


def _unavailable() -> str | None:
    try:
        import openfacefx  # noqa: F401
    except ImportError as e:
        return f"PyPI openfacefx not installed ({e}); scripts/setup.sh installs it"
    return None


def track_to_visemes(track, duration_s: float, process_s: float) -> VisemeTrack:
    """An openfacefx FaceTrack -> VisemeTrack on its fps grid covering `duration_s`."""
    from openfacefx.edits import sample
    from openfacefx.export_cues import dominant_cues

    n = max(math.ceil(duration_s * track.fps - 1e-9), 1)
    t = frame_times(n, track.fps)
    names = list(RENAME)
    by_name = {c.name: c for c in track.channels}
    values = np.stack([sample(by_name[v], t) if v in by_name else np.zeros(n) for v in names], axis=1)
    cues = dominant_cues(track, rest_name="sil")  # contiguous (start, end, shape) from 0
    if cues:
        at = np.clip(np.searchsorted([c[0] for c in cues], t, side="right") - 1, 0, len(cues) - 1)
        decisions = [RENAME[cues[i][2]] for i in at]
    else:
        decisions = ["sil"] * n
    return VisemeTrack(t, weights_from_named(names, values, RENAME), decisions, process_s)


class OpenFaceFXEnergy:
    name = "openfacefx energy"
    package = f"PyPI {PACKAGE}"
    inputs = "audio only (whole clip as 16-bit WAV), energy mode defaults"
    timing = f"{NATIVE_FPS:g} fps keyframes, sampled and linear to 30 fps"
    languages = None

    def unavailable(self) -> str | None:
        return _unavailable()

    def version(self) -> str:
        return metadata.version(PACKAGE)

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        import soundfile as sf
        from openfacefx import generate_from_energy

        out = []
        with tempfile.TemporaryDirectory(prefix="distilface-peers-") as tmp:
            for i, item in enumerate(items):
                path = Path(tmp) / f"{i:05d}.wav"
                sf.write(path, np.asarray(item.audio, dtype=np.float32), SAMPLE_RATE_HZ, subtype="PCM_16")
                t0 = time.perf_counter()
                track = generate_from_energy(str(path), fps=NATIVE_FPS)
                out.append(track_to_visemes(track, len(item.audio) / SAMPLE_RATE_HZ, time.perf_counter() - t0))
        return out


@lru_cache(maxsize=1)
def _g2p_with_cmudict():
    """openfacefx G2P with the CMU dictionary shipped in pocketsphinx -> (g2p, entries loaded)."""
    import pocketsphinx
    from openfacefx import G2P

    g2p = G2P()
    entries = g2p.load_cmudict(str(Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"))
    return g2p, entries


class OpenFaceFXNaive:
    name = "openfacefx naive"
    package = f"PyPI {PACKAGE}"
    inputs = "transcript + clip duration (no audio content), CMUdict from pocketsphinx, naive mode defaults"
    timing = f"{NATIVE_FPS:g} fps keyframes, sampled and linear to 30 fps"
    languages = ("en",)

    def unavailable(self) -> str | None:
        return _unavailable()

    def version(self) -> str:
        return metadata.version(PACKAGE)

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        from openfacefx import generate_naive

        g2p, _ = _g2p_with_cmudict()
        out = []
        for item in items:
            if not item.text.strip():
                raise ValueError("openfacefx naive mode needs a transcript; an utterance has none")
            duration_s = len(item.audio) / SAMPLE_RATE_HZ
            t0 = time.perf_counter()
            track = generate_naive(item.text, duration_s, fps=NATIVE_FPS, g2p=g2p)
            out.append(track_to_visemes(track, duration_s, time.perf_counter() - t0))
        return out
