"""Lip-sync metrics, computed on the face mesh the curves drive (as the paper does on its rig).

Definitions (mm: millimetres of the rig mesh; frames at the curves' fps; frame k shows k / fps):

- PBM accuracy: share of /p b m/ phones whose lip gap (mid upper inner lip minus mid lower inner
  lip, vertical) drops below `CLOSED_GAP_MM` in at least one frame whose time lies in the phone
  interval widened by `PBM_TOLERANCE_S` on both sides (absorbs label/frame misalignment, like the
  paper's minimum "within a few frames").
- Open-vowel accuracy: share of frames inside open vowels (/aa ae ah ao aw ay/) whose lip gap
  exceeds `OPEN_GAP_MM`. Frames closer than `OPEN_EDGE_S` to the vowel's edges are not scored
  (the lips are still moving there), except that a vowel always scores its middle frame. Without
  this metric a model that never opens its mouth would score 100 % PBM.
- Jitter: mean magnitude of the lower-lip mid vertex acceleration, a_t = x_t - 2 x_{t-1} + x_{t-2}
  (paper eq. 9-10), in mm/frame^2 at the curves' frame rate (compare jitter at equal fps only).
- MSE: mean squared difference over frames and the channels both curve sets share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from distilface.curves import Curves
from distilface.phones import BILABIALS, OPEN_VOWELS, PhoneSegment

CLOSED_GAP_MM = 1.0
OPEN_GAP_MM = 2.0
PBM_TOLERANCE_S = 0.05
OPEN_EDGE_S = 0.02


def _frame_range(start_s: float, end_s: float, fps: float, num_frames: int) -> tuple[int, int]:
    """Half-open range of frames k with start_s <= k / fps <= end_s, clipped to [0, num_frames)."""
    lo = int(np.ceil(start_s * fps - 1e-9))
    hi = int(np.floor(end_s * fps + 1e-9)) + 1
    return max(lo, 0), min(hi, num_frames)


def pbm_hits(lip_gap_mm: np.ndarray, fps: float, phones: list[PhoneSegment],
             closed_gap_mm: float = CLOSED_GAP_MM, tolerance_s: float = PBM_TOLERANCE_S) -> tuple[int, int]:
    """(hits, total) over /p b m/ phones; phones wholly outside the frames are not counted."""
    hits = total = 0
    for seg in phones:
        if seg.phone not in BILABIALS:
            continue
        lo, hi = _frame_range(seg.start_s - tolerance_s, seg.end_s + tolerance_s, fps, len(lip_gap_mm))
        if hi <= lo:
            continue
        total += 1
        hits += int(lip_gap_mm[lo:hi].min() < closed_gap_mm)
    return hits, total


def open_vowel_hits(lip_gap_mm: np.ndarray, fps: float, phones: list[PhoneSegment],
                    open_gap_mm: float = OPEN_GAP_MM, edge_s: float = OPEN_EDGE_S) -> tuple[int, int]:
    """(open frames, scored frames) inside open vowels."""
    hits = total = 0
    for seg in phones:
        if seg.phone not in OPEN_VOWELS:
            continue
        lo, hi = _frame_range(seg.start_s + edge_s, seg.end_s - edge_s, fps, len(lip_gap_mm))
        if hi <= lo:  # short vowel: score the frame nearest its middle
            mid = int(round(0.5 * (seg.start_s + seg.end_s) * fps))
            if not 0 <= mid < len(lip_gap_mm):
                continue
            lo, hi = mid, mid + 1
        total += hi - lo
        hits += int((lip_gap_mm[lo:hi] > open_gap_mm).sum())
    return hits, total


def jitter(trajectory_mm: np.ndarray) -> float:
    """Mean acceleration magnitude of a (frames, dims) trajectory, mm/frame^2."""
    x = np.asarray(trajectory_mm, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if len(x) < 3:
        return float("nan")
    acc = x[2:] - 2 * x[1:-1] + x[:-2]
    return float(np.linalg.norm(acc, axis=1).mean())


def curve_mse(a: Curves, b: Curves) -> float:
    """MSE over shared channels and the common frames of two curve sets at the same fps."""
    if abs(a.fps - b.fps) > 1e-9:
        raise ValueError(f"curve_mse: frame rates differ ({a.fps} vs {b.fps})")
    shared = [n for n in a.names if n in b.names]
    if not shared:
        raise ValueError("curve_mse: no shared channels")
    n = min(a.num_frames, b.num_frames)
    diff = a.select(shared).values[:n] - b.select(shared).values[:n]
    return float(np.mean(diff.astype(np.float64) ** 2))


@dataclass
class LipSyncScores:
    pbm_hits: int = 0
    pbm_total: int = 0
    open_hits: int = 0
    open_total: int = 0
    jitter_sum: float = 0.0  # sum over utterances, weighted by frames
    jitter_frames: int = 0

    @property
    def pbm_accuracy(self) -> float:
        return self.pbm_hits / self.pbm_total if self.pbm_total else float("nan")

    @property
    def open_vowel_accuracy(self) -> float:
        return self.open_hits / self.open_total if self.open_total else float("nan")

    @property
    def jitter(self) -> float:
        return self.jitter_sum / self.jitter_frames if self.jitter_frames else float("nan")

    def add(self, other: "LipSyncScores") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    def summary(self) -> dict[str, float | int]:
        return {"pbm_accuracy": self.pbm_accuracy, "pbm_total": self.pbm_total,
                "open_vowel_accuracy": self.open_vowel_accuracy, "open_vowel_frames": self.open_total,
                "jitter_mm_per_frame2": self.jitter}


def score_curves(curves: Curves, phones: list[PhoneSegment], rig=None) -> LipSyncScores:
    """All lip metrics of one utterance's curves against its phone timings, on the face rig."""
    if rig is None:
        from distilface.rig.mesh import load_rig

        rig = load_rig()
    gap = rig.lip_gap_mm(curves)
    lower = rig.lower_lip_mm(curves)
    ph, pt = pbm_hits(gap, curves.fps, phones)
    oh, ot = open_vowel_hits(gap, curves.fps, phones)
    n_acc = max(len(lower) - 2, 0)
    j = jitter(lower) if n_acc else 0.0
    return LipSyncScores(ph, pt, oh, ot, j * n_acc, n_acc)
