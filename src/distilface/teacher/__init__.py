"""Teachers: anything that turns audio (and what else it knows) into named curves.

The protocol is deliberately wide so that later teachers (a neural teacher on a packaged speech
encoder, a MeshTalk-style mesh teacher with PCA outputs) plug into `distilface label` unchanged:
a teacher declares its output channel names and value range, and `animate` returns `Curves` at
any requested frame rate.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from distilface.curves import Curves
from distilface.phones import PhoneSegment


@runtime_checkable
class Teacher(Protocol):
    id: str  # stable identifier including a hash of the configuration and data
    names: tuple[str, ...]  # output channels
    value_range: tuple[float, float]  # (0, 1) for blendshapes, (-1, 1) for rigs/PCA

    def animate(self, audio: np.ndarray, fps: float, *, phones: list[PhoneSegment] | None = None,
                text: str | None = None, utterance_id: str = "") -> Curves:
        """audio: (samples,) float32 at 16 kHz -> Curves (frames, len(names)) at `fps`.

        Frame k shows time k / fps; there are `curves.num_frames(len(audio) / 16000, fps)` frames.
        """

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this teacher; stored with the labels it makes."""


def build_teacher(name: str, **options: Any) -> Teacher:
    """Teacher registry: `aligned` is built in; more teachers register here."""
    if name == "aligned":
        from distilface.teacher.aligned import AlignedTeacher, AlignedTeacherConfig

        return AlignedTeacher(AlignedTeacherConfig(**options))
    raise ValueError(f"unknown teacher {name!r} (available: aligned)")
