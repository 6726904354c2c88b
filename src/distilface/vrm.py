"""ARKit-52 curves -> VRM expression presets: the five mouth vowels and the two blinks.

Most VRM avatars (VRoid Studio's, and most others made for VTubing) have no ARKit ("perfect
sync") blendshapes: their mouth moves only through the presets A, I, U, E, O (VRM 0.x clip names,
which VMC receivers such as VSeeFace look up) or aa, ih, ou, ee, oh (VRM 1.0 expression names,
UniVRM 1.0, three-vrm). The students animate ARKit curves, so this module projects each frame's
mouth onto the five vowel poses:

    w = argmin_{w >= 0} |f(frame) - sum_k w_k f(template_k)|^2,  then clipped to <= 1

where template_k is the aligned teacher's ARKit pose of the vowel (teacher/visemes.json: A = aa,
I = iy, U = ou, E = E, O = oh) and f() the mouth features of the Oculus visemes (formats.py: L/R
pairs averaged, jawOpen and mouthClose replaced by the lip gap and the seal). A least-squares fit
rather than a nearest-template pick, because a VRM vowel is a shape *and* an amount: a frame half
way to the teacher's A gives A = 0.5, silence and sealed lips (the seal matches no vowel) give all
zeros, and in-between vowels mix (the teacher's ae -> A 0.45 and E 0.68). Non-negative, because a
negative vowel is not a shape an avatar has. The fit is exact non-negative least squares, solved
for all frames at once by trying every support of the 5 templates (31 least-squares fits, each a
precomputed pseudo-inverse; the optimum is the feasible support with the smallest residual), so it
needs no iterative solver and costs the same for every frame. Blinks pass through:
Blink_L = eyeBlinkLeft, Blink_R = eyeBlinkRight.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from distilface.curves import Curves
from distilface.formats import mouth_channels, mouth_features, pose_rows, teacher_poses

# (VRM 0.x clip name, VRM 1.0 expression name, source): a teacher viseme, or the ARKit curve passed on
PRESETS: tuple[tuple[str, str, str], ...] = (
    ("A", "aa", "aa"),
    ("I", "ih", "iy"),  # VRM's I is the spread "ee" of Japanese i: the teacher's iy, not ih
    ("U", "ou", "ou"),
    ("E", "ee", "E"),
    ("O", "oh", "oh"),
    ("Blink_L", "blinkLeft", "eyeBlinkLeft"),
    ("Blink_R", "blinkRight", "eyeBlinkRight"),
)
VOWELS = 5  # the first five presets are fitted; the rest are ARKit curves passed on
VRM_VERSIONS = {"0": tuple(p[0] for p in PRESETS), "1": tuple(p[1] for p in PRESETS)}
FEASIBLE_TOL = 1e-12  # a support's coefficient this far below 0 still counts as >= 0 (rounding)


class _Fit(NamedTuple):
    channels: tuple[str, ...]  # the ARKit channels the mouth features read
    templates: np.ndarray  # (5, F) the vowel poses as mouth features
    pinv: np.ndarray  # (80, F) the pseudo-inverse rows of the 31 supports, stacked
    owner: np.ndarray  # (80,) the template each row of pinv weighs
    member: np.ndarray  # (80, 31) 1 where a row of pinv belongs to the support: sums per support as a product
    rows: np.ndarray  # (32, 5) per support, then the empty one: the row of each template's weight, 80 (a zero) if absent


@lru_cache(maxsize=1)
def _vowel_fit() -> _Fit:
    poses = teacher_poses([p[2] for p in PRESETS[:VOWELS]])
    channels = mouth_channels(poses)
    templates = mouth_features(channels, pose_rows(poses, channels))
    supports = [list(s) for r in range(1, VOWELS + 1) for s in itertools.combinations(range(VOWELS), r)]
    # w_S = (A A^T)^-1 A x for A = templates[S]: the least-squares coefficients on support S
    pinv = np.concatenate([np.linalg.solve(templates[s] @ templates[s].T, templates[s]) for s in supports])
    starts = np.cumsum([0] + [len(s) for s in supports[:-1]])
    rows = np.full((len(supports) + 1, VOWELS), len(pinv))
    member = np.zeros((len(pinv), len(supports)))
    for k, s in enumerate(supports):
        rows[k, s] = starts[k] + np.arange(len(s))
        member[starts[k]:starts[k] + len(s), k] = 1.0
    return _Fit(channels, templates, pinv, np.concatenate(supports), member, rows)


def vowel_weights(features: np.ndarray) -> np.ndarray:
    """(N, F) mouth features -> (N, 5) non-negative least-squares weights of the vowel templates
    (not clipped)."""
    fit = _vowel_fit()
    x = np.asarray(features, np.float64)
    coef = x @ fit.pinv.T  # (N, 80): every support's coefficients side by side
    proj = x @ fit.templates.T  # (N, 5): <x, template_k>
    # the residual of a least-squares fit is |x|^2 - <w, A x>; only the second term differs by support
    gain = (coef * proj[:, fit.owner]) @ fit.member  # (N, 31)
    gain[(coef < -FEASIBLE_TOL) @ fit.member > 0] = -np.inf  # a negative weight: not a feasible support
    best = gain.argmax(axis=1)
    best[gain[np.arange(len(x)), best] <= 0] = len(fit.rows) - 1  # nothing gains: the empty support, w = 0
    coef = np.concatenate([coef, np.zeros((len(x), 1))], axis=1)
    return np.maximum(np.take_along_axis(coef, fit.rows[best], axis=1), 0.0)


class VrmMapper:
    """ARKit frames -> VRM preset values, for a fixed order of input names.

    `VrmMapper(names)(values)`: (N, len(names)) or (len(names),) -> (N, 7) or (7,) float32, in the
    order of `VRM_VERSIONS[version]`. ValueError at construction naming the ARKit curves missing."""

    def __init__(self, names: tuple[str, ...] | list[str], version: str = "0") -> None:
        if version not in VRM_VERSIONS:
            raise ValueError(f"VRM version {version!r}: expected one of {', '.join(VRM_VERSIONS)}")
        channels = _vowel_fit().channels
        passed = tuple(p[2] for p in PRESETS[VOWELS:])
        missing = [n for n in (*channels, *passed) if n not in names]
        if missing:
            raise ValueError(f"VRM presets need the ARKit curves {', '.join(missing)}, which these curves lack")
        self.names = VRM_VERSIONS[version]
        self._channels = channels
        self._mouth = [list(names).index(n) for n in channels]
        self._passed = [list(names).index(n) for n in passed]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, np.float64)
        one = v.ndim == 1
        v = v[None] if one else v
        vowels = np.minimum(vowel_weights(mouth_features(self._channels, v[:, self._mouth])), 1.0)
        out = np.concatenate([vowels, np.clip(v[:, self._passed], 0.0, 1.0)], axis=1).astype(np.float32)
        return out[0] if one else out


def vrm_curves(curves: Curves, version: str = "1") -> Curves:
    """ARKit curves -> Curves of the 7 VRM presets (VRM 1.0 names by default, "0" for VRM 0.x)."""
    return Curves(curves.fps, VRM_VERSIONS[version], VrmMapper(curves.names, version)(curves.values))

