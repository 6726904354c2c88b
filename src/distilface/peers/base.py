"""What every peer module provides: `Peer` (a small protocol) and its input, `PeerInput`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from distilface.peers.visemes import VisemeTrack


@dataclass
class PeerInput:
    audio: np.ndarray  # (samples,) float32, 16 kHz mono
    text: str = ""  # transcript; "" when none (only text-driven peers read it)
    language: str = "en"


class Peer(Protocol):
    name: str  # row name in the report
    package: str  # the registry package, "PyPI NAME" or "npm NAME"
    inputs: str  # what the tool is given, in words
    timing: str  # its own frame rate or timing and how it reaches ours, in words
    languages: tuple[str, ...] | None  # languages it can animate; None: any (audio only)

    def unavailable(self) -> str | None:
        """Why it cannot run here (not installed, ...); None when it can."""

    def version(self) -> str:
        """Installed version of the package."""

    def run(self, items: list[PeerInput]) -> list[VisemeTrack]:
        """One track per item, in order. Raises on a tool failure."""
