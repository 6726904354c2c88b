"""The face rig: MediaPipe's canonical face mesh driven by ARKit-52 linear blendshapes.

Coordinate frame, used by everything under `distilface.rig`: millimetres; x to the viewer's right
(which is the subject's left: ARKit "...Left" shapes move +x vertices), y up, z out of the face
towards the viewer; origin roughly at the centre of the head as MediaPipe defines it.

    vertices(w) = neutral_mm + sum_k w[k] * deltas_mm[k]

The mesh comes from `data/canonical_face.npz` (see data/NOTICE.md and
scripts/extract_face_mesh.py); the deltas are authored in `distilface.rig.blendshapes`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from distilface.curves import Curves
from distilface.rig.arkit import ARKIT_52
from distilface.rig.blendshapes import build_blendshapes

# Mid-line vertices of the inner lip contour (MediaPipe landmark ids).
UPPER_LIP_MID_VERTEX = 13
LOWER_LIP_MID_VERTEX = 14
Y_AXIS = 1

MESH_FILE = "canonical_face.npz"


# eq=False: arrays do not compare as booleans; identity hashing lets renderers cache per rig.
@dataclass(frozen=True, eq=False)
class FaceRig:
    neutral_mm: np.ndarray  # (V, 3) float32, lips closed
    deltas_mm: np.ndarray  # (C, V, 3) float32, one per name
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise seen from the front
    names: tuple[str, ...] = ARKIT_52

    def __post_init__(self) -> None:
        if self.deltas_mm.shape != (len(self.names),) + self.neutral_mm.shape:
            raise ValueError(f"rig: deltas {self.deltas_mm.shape} do not match {len(self.names)} names "
                             f"x neutral {self.neutral_mm.shape}")

    @property
    def num_vertices(self) -> int:
        return self.neutral_mm.shape[0]

    def weights(self, weights: np.ndarray | Curves) -> np.ndarray:
        """Weights as (T, C) float32 in this rig's channel order.

        Accepts a (C,) or (T, C) array already in `names` order, or Curves, whose channels are
        matched by name: channels the rig lacks are ignored, rig channels the curves lack are 0.
        """
        if isinstance(weights, Curves):
            out = np.zeros((weights.num_frames, len(self.names)), dtype=np.float32)
            for k, name in enumerate(self.names):
                if name in weights.names:
                    out[:, k] = weights.channel(name)
            return out
        w = np.asarray(weights, dtype=np.float32)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2 or w.shape[1] != len(self.names):
            raise ValueError(f"rig: weights must be (T, {len(self.names)}), got {w.shape}")
        return w

    def vertices(self, weights: np.ndarray | Curves) -> np.ndarray:
        """Posed vertices in mm. weights (T, C) or (C,) or Curves -> (T, V, 3) float32."""
        w = self.weights(weights)  # (T, C)
        flat = self.deltas_mm.reshape(len(self.names), -1)  # (C, V*3)
        return self.neutral_mm[None] + (w @ flat).reshape(len(w), *self.neutral_mm.shape)

    def _vertex_track(self, weights: np.ndarray | Curves, vertex: int) -> np.ndarray:
        """One vertex's trajectory without posing the whole mesh. (T, 3)"""
        w = self.weights(weights)  # (T, C)
        return self.neutral_mm[vertex][None] + w @ self.deltas_mm[:, vertex, :]

    def upper_lip_mm(self, weights: np.ndarray | Curves) -> np.ndarray:
        """Mid upper inner lip position over time, mm. (T, 3)"""
        return self._vertex_track(weights, UPPER_LIP_MID_VERTEX)

    def lower_lip_mm(self, weights: np.ndarray | Curves) -> np.ndarray:
        """Mid lower inner lip position over time, mm. (T, 3)"""
        return self._vertex_track(weights, LOWER_LIP_MID_VERTEX)

    def lip_gap_mm(self, weights: np.ndarray | Curves) -> np.ndarray:
        """Vertical inner lip opening at the mid line, mm: upper minus lower lip y. (T,)

        About 0.3 at rest; negative when the lips press through each other.
        """
        return self.upper_lip_mm(weights)[:, Y_AXIS] - self.lower_lip_mm(weights)[:, Y_AXIS]


@functools.lru_cache(maxsize=1)
def load_rig() -> FaceRig:
    """The package's face rig (built once per process, ~20 ms). Treat its arrays as read-only."""
    with resources.files("distilface.rig").joinpath("data", MESH_FILE).open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            vertices_mm, triangles = z["vertices"], z["triangles"].astype(np.int32)
    neutral_mm, deltas_mm = build_blendshapes(vertices_mm, triangles)
    for a in (neutral_mm, deltas_mm, triangles):
        a.setflags(write=False)  # shared by every caller of the cached rig
    return FaceRig(neutral_mm=neutral_mm, deltas_mm=deltas_mm, triangles=triangles)
