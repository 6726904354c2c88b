"""@met4citizen/headaudio (npm): an AudioWorklet that turns 16 kHz audio into MFCC vectors
(512-sample frames, 256 hop), classifies each against the shipped Gaussian prototypes
(model-en-mixed.bin, Mahalanobis distance, majority vote over 6) behind an energy gate, and a node
that eases the 15 Oculus viseme weights towards the active viseme (at most 0.65, PP and FF 0.75)
once per animation frame.

Run by `node/headaudio.mjs` (see its header): the package's own processor and node code, default
parameters, no silence calibration, AudioContext at 16 kHz, 128-sample render quanta, animation
frames at 60 fps; our 30 fps frames are every second animation frame (exact: frame k at k / 30 s).

Latency: the README (step 6) suggests delaying the speech audio by 50-100 ms to hide its
processing latency, and its example uses `DelayNode(delayTime: 0.1)`. `HeadAudio(audio_delay_ms=100)`
is that set-up: the same animation shown against audio played 100 ms later.

Visemes: viseme_aa, _E, _I, _O, _U, _PP, _SS, _TH, _DD, _FF, _kk, _nn, _RR, _CH, _sil ->
aa, E, ih, oh, ou, PP, SS, TH, DD, FF, kk, nn, RR, CH, sil. Its pick per frame is the node's
active viseme (sil when none). Version 0.1.0 never activates viseme_aa: the node tests
`if (viseme)` and aa's id is 0; run as shipped, that is what its users see.
"""

from __future__ import annotations

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.peers import nodejs
from distilface.peers.base import PeerInput
from distilface.peers.visemes import VisemeTrack, frame_times, weights_from_named

PACKAGE = "@met4citizen/headaudio"
SCRIPT = "headaudio.mjs"
ANIMATION_FPS = 60  # a browser's requestAnimationFrame rate
README_DELAY_MS = 100  # the README example's DelayNode
RENAME = {f"viseme_{k}": v for k, v in {
    "aa": "aa", "E": "E", "I": "ih", "O": "oh", "U": "ou", "PP": "PP", "SS": "SS", "TH": "TH", "DD": "DD",
    "FF": "FF", "kk": "kk", "nn": "nn", "RR": "RR", "CH": "CH", "sil": "sil"}.items()}


def track_from_driver(result: dict) -> VisemeTrack:
    """A driver's JSON object (headaudio.mjs or wawa.mjs) -> VisemeTrack at its animation frames."""
    frames = result["frames"]
    return VisemeTrack(frame_times(len(frames), float(result["fps"])),
                       weights_from_named(result["names"], frames, RENAME),
                       [RENAME[a] for a in result["active"]], result["process_ms"] / 1000.0)


class HeadAudio:
    package = f"npm {PACKAGE}"
    timing = f"animation frames at {ANIMATION_FPS} fps (128-sample quanta at 16 kHz); every 2nd = 30 fps"
    languages = None

    def __init__(self, audio_delay_ms: float = 0.0) -> None:
        self.audio_delay_ms = float(audio_delay_ms)
        self.name = "headaudio" + (f" (+{self.audio_delay_ms:g} ms audio delay)" if audio_delay_ms else "")
        self.inputs = ("audio (16 kHz AudioContext), default parameters, no silence calibration"
                       + (f"; speech audio delayed {self.audio_delay_ms:g} ms (README step 6)"
                          if audio_delay_ms else ""))

    def unavailable(self) -> str | None:
        return nodejs.unavailable(PACKAGE)

    def version(self) -> str:
        return nodejs.installed_version(PACKAGE) or "not installed"

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        # with a delay the animation must also run for the delay past the clip's end (silence then)
        pad = np.zeros(round(self.audio_delay_ms / 1000.0 * SAMPLE_RATE_HZ), dtype=np.float32)
        audios = [np.concatenate([np.asarray(item.audio, dtype=np.float32), pad]) for item in items]
        results = nodejs.run_driver(SCRIPT, audios, SAMPLE_RATE_HZ, ANIMATION_FPS)
        return [track_from_driver(r).shifted(self.audio_delay_ms / 1000.0) for r in results]
