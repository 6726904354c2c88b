"""What the peers output, and how it reaches the face rig and the metrics.

Every peer gives, per frame of its own, weights of (some of) the 15 Oculus visemes and one viseme
it picked. `VisemeTrack` holds that, in `OCULUS_VISEMES` order and names (each peer module maps
its own names: "viseme_I" -> "ih", uLipSync's "ee" -> "E", ...).

To the rig (the curves every metric is computed on), two ways:

- blend: an avatar plays viseme weights as morph targets, pose = sum_v w_v * target_v. Our rig
  has ARKit-52 blendshapes, so viseme v's morph target is the aligned teacher's ARKit pose of the
  viseme of the same name (`teacher/visemes.json`, the poses `distilface.formats` matches for
  the opposite direction; Oculus nn takes the teacher's LL). All weights 0 is the rest pose,
  whose lips touch (0.3 mm apart), like sil. Channels are clipped to ARKit's [0, 1].
- decision: the viseme the tool picked, shown at full weight (a one-hot blend). Its lips are
  closed exactly when the picked viseme's pose closes them on the rig (gap < CLOSED_GAP_MM: sil
  and PP) and open when the pose opens them (> OPEN_GAP_MM: every other viseme but SS), so the
  same metric code scores the tool's discrete closed / open decision.

Frame rates: a peer's frame j shows time `times_s[j]`; our frame k shows k / fps. Weights are
interpolated linearly to our frame times (held before the first and after the last frame),
decisions take the nearest frame (the earlier one on a tie).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from distilface.curves import Curves
from distilface.formats import OCULUS_FROM_TEACHER, OCULUS_VISEMES
from distilface.rig.arkit import ARKIT_52

VISEMES_JSON = Path(__file__).resolve().parent.parent / "teacher" / "visemes.json"


@dataclass
class VisemeTrack:
    """One utterance as a peer animated it, at the peer's own frame times."""

    times_s: np.ndarray  # (T,) time each frame shows, seconds
    weights: np.ndarray  # (T, 15) viseme weights in OCULUS_VISEMES order, as the tool drives a face
    decisions: list[str]  # (T,) the viseme the tool picked per frame (an OCULUS_VISEMES name)
    process_s: float  # the tool's own processing time (no process start-up, no file writing)

    def __post_init__(self) -> None:
        self.times_s = np.asarray(self.times_s, dtype=np.float64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (len(self.times_s), len(OCULUS_VISEMES)):
            raise ValueError(f"viseme track: weights {self.weights.shape} for {len(self.times_s)} frames "
                             f"x {len(OCULUS_VISEMES)} visemes")
        if len(self.decisions) != len(self.times_s):
            raise ValueError(f"viseme track: {len(self.decisions)} decisions for {len(self.times_s)} frames")
        unknown = set(self.decisions) - set(OCULUS_VISEMES)
        if unknown:
            raise ValueError(f"viseme track: unknown visemes {sorted(unknown)}")
        if len(self.times_s) > 1 and np.any(np.diff(self.times_s) <= 0):
            raise ValueError("viseme track: frame times must increase")

    def shifted(self, lead_s: float) -> "VisemeTrack":
        """The same animation shown `lead_s` earlier (audio played `lead_s` later)."""
        return VisemeTrack(self.times_s - lead_s, self.weights, self.decisions, self.process_s)


def weights_from_named(names: list[str], frames, rename: dict[str, str]) -> np.ndarray:
    """(T, len(names)) values named by a tool -> (T, 15) in OCULUS_VISEMES order via `rename`
    (tool name -> Oculus name). Raises ValueError for a name `rename` does not cover."""
    frames = np.asarray(frames, dtype=np.float64).reshape(-1, len(names))
    out = np.zeros((len(frames), len(OCULUS_VISEMES)))
    for i, name in enumerate(names):
        if name not in rename:
            raise ValueError(f"no Oculus viseme for the tool's {name!r}")
        out[:, OCULUS_VISEMES.index(rename[name])] += frames[:, i]
    return out


@lru_cache(maxsize=1)
def viseme_poses() -> np.ndarray:
    """(15, 52) ARKit pose of each Oculus viseme (OCULUS_VISEMES x ARKIT_52), the morph targets."""
    data = json.loads(VISEMES_JSON.read_text())["visemes"]
    poses = np.zeros((len(OCULUS_VISEMES), len(ARKIT_52)))
    for i, v in enumerate(OCULUS_VISEMES):
        for name, value in data[OCULUS_FROM_TEACHER.get(v, v)]["pose"].items():
            poses[i, ARKIT_52.index(name)] = value
    poses.setflags(write=False)
    return poses


def blend_curves(weights: np.ndarray, fps: float) -> Curves:
    """(T, 15) viseme weights -> ARKit-52 Curves: morph-target sum of the viseme poses, clipped to [0, 1]."""
    return Curves(fps, ARKIT_52, np.clip(np.asarray(weights) @ viseme_poses(), 0.0, 1.0))


def one_hot(decisions: list[str]) -> np.ndarray:
    """Viseme names -> (T, 15) one-hot weights."""
    out = np.zeros((len(decisions), len(OCULUS_VISEMES)))
    out[np.arange(len(decisions)), [OCULUS_VISEMES.index(d) for d in decisions]] = 1.0
    return out


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    return np.arange(num_frames) / fps


def resample_weights(track: VisemeTrack, fps: float, num_frames: int) -> np.ndarray:
    """Weights at our frame times k / fps, linearly interpolated -> (num_frames, 15)."""
    t = frame_times(num_frames, fps)
    if not len(track.times_s):
        return np.zeros((num_frames, len(OCULUS_VISEMES)))
    return np.stack([np.interp(t, track.times_s, track.weights[:, v]) for v in range(len(OCULUS_VISEMES))],
                    axis=1)


def resample_decisions(track: VisemeTrack, fps: float, num_frames: int) -> list[str]:
    """Decision of the peer frame nearest each of our frame times (the earlier one on a tie)."""
    if not len(track.times_s):
        return ["sil"] * num_frames
    t = frame_times(num_frames, fps)
    right = np.clip(np.searchsorted(track.times_s, t), 1, max(len(track.times_s) - 1, 1))
    left = right - 1
    if len(track.times_s) == 1:
        nearest = np.zeros(num_frames, dtype=int)
    else:
        nearest = np.where(np.abs(track.times_s[right] - t) < np.abs(t - track.times_s[left]), right, left)
    return [track.decisions[j] for j in nearest]


def track_curves(track: VisemeTrack, fps: float, num_frames: int) -> tuple[Curves, Curves]:
    """-> (blend, decision) ARKit curves at our frame rate (see the module docstring)."""
    blend = blend_curves(resample_weights(track, fps, num_frames), fps)
    decided = blend_curves(one_hot(resample_decisions(track, fps, num_frames)), fps)
    return blend, decided


def decisions_from_curves(curves: Curves) -> list[str]:
    """Our own models' pick per frame: the top viseme of `distilface.formats.oculus_visemes`."""
    from distilface.formats import oculus_visemes

    return [OCULUS_VISEMES[i] for i in oculus_visemes(curves).values.argmax(axis=1)]


def pose_gaps_mm(rig=None) -> dict[str, float]:
    """Lip gap (mm) of each viseme's full pose on the rig: which picks mean closed / open lips."""
    if rig is None:
        from distilface.rig.mesh import load_rig

        rig = load_rig()
    gaps = rig.lip_gap_mm(blend_curves(np.eye(len(OCULUS_VISEMES)), 1.0))
    return {v: float(g) for v, g in zip(OCULUS_VISEMES, gaps)}
