"""What every speech engine provides: text + voice -> 16 kHz audio with exact phone timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from distilface.phones import PhoneSegment


class EngineError(RuntimeError):
    """The engine failed on this input (missing voice, empty output, unparsable timings)."""


@dataclass(frozen=True)
class Voice:
    """One audibly distinct voice: an engine voice plus fixed prosody/formant settings.

    `id` names the voice in manifests; train/val/test splits are made on it.
    `params` are engine-specific (e.g. espeak-ng pitch 0-99, range 0-99, rate in words/min).
    """

    id: str
    engine: str  # "espeak-ng" | "festival" | "flite" | "mbrola" | "kokoro"
    name: str  # the engine's own voice name
    language: str  # ISO 639-1, e.g. "en"
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Synthesis:
    audio: np.ndarray  # (samples,) float32 mono at SAMPLE_RATE_HZ
    phones: list[PhoneSegment]  # arpabet39 + sil, contiguous, covering [0, len(audio)/SR]


class Engine(Protocol):
    name: str

    def available(self) -> bool:
        """True when the engine and its voices are installed on this machine."""

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        """Speak `text`; raise EngineError on failure."""
