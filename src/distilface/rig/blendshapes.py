"""ARKit-52 blendshape deltas authored in code on MediaPipe's canonical face mesh.

No registry package ships a face with ARKit blendshapes, so they are built here from geometry:
landmark index sets of the MediaPipe face mesh (lip rings, eyelids, brows), smooth weight fields,
and a few rigid motions (the jaw rotates about a pivot in front of the ears). Everything is
deterministic; `build_blendshapes` takes well under a second.

Frame (same as `distilface.rig.mesh`): millimetres, x to the viewer's right (= the subject's
left, so ARKit "...Left" shapes act on +x), y up, z towards the viewer.

Two kinds of weight fields:
- harmonic fields: solve Laplace's equation on the mesh graph with the mouth and eye openings cut
  open (the canonical mesh fills them with triangles), so a field set to 1 on the lower lip and 0 on
  the upper lip falls off smoothly through the chin and cheeks but never leaks across the mouth;
- radial fields: a compact smooth bump (1 - (d/r)^2)^2 around a point, for corners, cheeks, brows.

The canonical mesh has its lips apart (inner gap 5.5 mm at the middle); `build_blendshapes` closes
them in the neutral it returns, so that the rest face (all weights 0) has the lips together.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from distilface.rig.arkit import ARKIT_52

# MediaPipe face mesh landmark rings (face_mesh_connections.py), ordered from the subject's right
# (-x) to the subject's left (+x). Inner rings bound the mouth opening; corners are shared.
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
INNER_CORNERS = (78, 308)
OUTER_CORNERS = (61, 291)  # subject's right, subject's left
CHIN_VERTEX = 152
# Eyes: "right"/"left" are the subject's, as in MediaPipe and ARKit.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
RIGHT_NOSE_WING, LEFT_NOSE_WING = 98, 327
RIGHT_CHEEK_PUFF, LEFT_CHEEK_PUFF = 207, 427  # buccal region lateral to the mouth
RIGHT_CHEEK_BONE, LEFT_CHEEK_BONE = 118, 347  # under the eyes

# Neutral: inner lip gap left after closing the canonical mesh's open mouth (mm).
REST_LIP_GAP_MM = 0.3
# jawOpen: how far the mid inner lips part at jawOpen=1 (mm), and the jaw's hinge.
JAW_OPEN_GAP_MM = 13.5
JAW_PIVOT_MM = np.array([0.0, -5.0, -20.0])  # in front of the ears, on the midline
JAW_OPEN_SLIDE_MM = np.array([0.0, -1.5, 2.0])  # condyle glides forward/down as the jaw opens
# mouthClose: share of the jaw-opening gap it takes back with the upper lip (rest: lower lip).
MOUTH_CLOSE_UPPER_SHARE = 0.2
# Reach of the lip fields beyond the lip rings, and of the mouth field around the mouth (mm).
LIP_FIELD_REACH_MM = 14.0
MOUTH_FIELD_REACH_MM = 26.0
# Width over which Left/Right halves of symmetric shapes cross over at the midline (mm).
SIDE_BLEND_HALF_WIDTH_MM = 12.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _bump(vertices_mm: np.ndarray, center_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Compact smooth radial weight: 1 at the center, 0 from `radius_mm` on. (V,)"""
    d = np.linalg.norm(vertices_mm - center_mm, axis=1) / radius_mm
    return np.where(d < 1.0, (1.0 - d * d) ** 2, 0.0)


def _side_weight(x_mm: np.ndarray, sign: float) -> np.ndarray:
    """Share of a symmetric shape taken by one side: the Left (+1) and Right (-1) shares sum to 1."""
    return _smoothstep((sign * x_mm + SIDE_BLEND_HALF_WIDTH_MM) / (2 * SIDE_BLEND_HALF_WIDTH_MM))


def _rot_x(angle_rad: float) -> np.ndarray:
    """Rotation about +x; a positive angle turns +z (front) towards -y (down)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _dist_to_set(vertices_mm: np.ndarray, idx) -> np.ndarray:
    """Distance from every vertex to the nearest vertex of `idx`. (V,)"""
    d = np.linalg.norm(vertices_mm[:, None, :] - vertices_mm[list(idx)][None, :, :], axis=2)
    return d.min(axis=1)


def opening_triangles(triangles: np.ndarray) -> np.ndarray:
    """Mask of the triangles that fill the mouth and eye openings of the canonical mesh. (F,) bool

    The renderer leaves the mouth ones out (a cavity is drawn there) and the rig's weight fields
    treat all of them as holes, so upper and lower lips (and lids) are not coupled.
    """
    mouth = set(UPPER_INNER_LIP) | set(LOWER_INNER_LIP)
    eyes = set(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER), set(LEFT_EYE_UPPER + LEFT_EYE_LOWER)
    return np.array([set(tri) <= mouth or set(tri) <= eyes[0] or set(tri) <= eyes[1]
                     for tri in triangles.tolist()])


class _Harmonic:
    """Harmonic interpolation on the mesh graph with openings cut (edge weights 1/length)."""

    def __init__(self, vertices_mm: np.ndarray, triangles: np.ndarray) -> None:
        tris = triangles[~opening_triangles(triangles)]
        edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
        edges = np.unique(np.sort(edges, axis=1), axis=0)  # (E, 2)
        w = 1.0 / np.linalg.norm(vertices_mm[edges[:, 0]] - vertices_mm[edges[:, 1]], axis=1)
        n = len(vertices_mm)
        adj = sp.coo_matrix((np.r_[w, w], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                            shape=(n, n)).tocsr()
        self.laplacian = (sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj).tocsr()
        self.num_vertices = n

    def solve(self, fixed: dict[int, float]) -> np.ndarray:
        """Values at `fixed` vertices held; the rest solve Laplace's equation. (V,)"""
        idx = np.fromiter(fixed.keys(), dtype=np.int64)
        val = np.fromiter(fixed.values(), dtype=np.float64)
        free = np.ones(self.num_vertices, dtype=bool)
        free[idx] = False
        out = np.zeros(self.num_vertices)
        out[idx] = val
        L = self.laplacian
        rhs = -L[free][:, idx] @ val
        out[free] = spla.spsolve(L[free][:, free].tocsc(), rhs)
        return out


def _close_lips(vertices_mm: np.ndarray, harmonic: _Harmonic) -> np.ndarray:
    """Neutral with the lips together: each inner-ring pair meets, leaving REST_LIP_GAP_MM. (V,3)"""
    fixed: dict[int, float] = {}
    upper_rings = (UPPER_INNER_LIP, UPPER_OUTER_LIP)
    lower_rings = (LOWER_INNER_LIP, LOWER_OUTER_LIP)
    for k, (u, l) in enumerate(zip(UPPER_INNER_LIP, LOWER_INNER_LIP)):
        if u == l:  # corner: already closed
            for ring in upper_rings + lower_rings:
                fixed[ring[k]] = 0.0
            continue
        half_mm = 0.5 * (vertices_mm[u, 1] - vertices_mm[l, 1] - REST_LIP_GAP_MM)
        for ring in upper_rings:  # move the whole lip, not just its edge, so it keeps its shape
            fixed[ring[k]] = -half_mm
        for ring in lower_rings:
            fixed[ring[k]] = half_mm
    far = _dist_to_set(vertices_mm, UPPER_OUTER_LIP + LOWER_OUTER_LIP) > LIP_FIELD_REACH_MM
    for i in np.flatnonzero(far):
        fixed.setdefault(int(i), 0.0)
    out = vertices_mm.astype(np.float64).copy()
    out[:, 1] += harmonic.solve(fixed)
    return out


def build_blendshapes(vertices_mm: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neutral (lips closed) and ARKit-52 deltas on the canonical mesh.

    vertices_mm: (V, 3) canonical mesh in mm; triangles: (F, 3).
    Returns neutral_mm (V, 3) float32 and deltas_mm (52, V, 3) float32 in ARKIT_52 order.
    """
    harmonic = _Harmonic(vertices_mm, triangles)
    v = _close_lips(vertices_mm, harmonic)  # (V, 3) neutral
    x = v[:, 0]
    n_vertices = len(v)
    deltas = {name: np.zeros((n_vertices, 3)) for name in ARKIT_52}

    def field(ones, zeros, far_from=None, reach_mm: float = LIP_FIELD_REACH_MM) -> np.ndarray:
        """Smoothstepped harmonic field: 1 on `ones`, 0 on `zeros` and beyond `reach_mm` of `far_from`."""
        fixed = {int(i): 0.0 for i in zeros}
        if far_from is not None:
            for i in np.flatnonzero(_dist_to_set(v, far_from) > reach_mm):
                fixed[int(i)] = 0.0
        fixed.update({int(i): 1.0 for i in ones})
        return _smoothstep(harmonic.solve(fixed))

    corners = set(INNER_CORNERS + OUTER_CORNERS)
    upper_lip = [i for i in UPPER_INNER_LIP + UPPER_OUTER_LIP if i not in corners]
    lower_lip = [i for i in LOWER_INNER_LIP + LOWER_OUTER_LIP if i not in corners]
    all_lips = UPPER_INNER_LIP + UPPER_OUTER_LIP + LOWER_INNER_LIP + LOWER_OUTER_LIP
    f_upper = field(upper_lip, lower_lip, far_from=all_lips)  # (V,)
    f_lower = field(lower_lip, upper_lip, far_from=all_lips)  # (V,)
    f_mouth = field(all_lips, [], far_from=all_lips, reach_mm=MOUTH_FIELD_REACH_MM)  # (V,)
    # Jaw: everything on the mandible. 1 on the lower lip and the jaw line, 0 on the upper lip and
    # above the nose base; the cheeks stretch between.
    jaw_line = [i for i in sorted(_boundary_vertices(triangles)) if v[i, 1] < -45.0]
    above = np.flatnonzero(v[:, 1] > -15.0)
    f_jaw = field(lower_lip + jaw_line + [CHIN_VERTEX], upper_lip + list(above))

    # --- jaw ---------------------------------------------------------------------------------
    def jaw_rotation(angle_rad: float) -> np.ndarray:
        moved = (v - JAW_PIVOT_MM) @ _rot_x(angle_rad).T + JAW_PIVOT_MM + JAW_OPEN_SLIDE_MM
        return f_jaw[:, None] * (moved - v)

    lower_mid, upper_mid = 14, 13
    lo, hi = 0.0, 0.6  # bisect the angle that parts the mid inner lips by JAW_OPEN_GAP_MM
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        gap_mm = -jaw_rotation(mid)[lower_mid, 1]
        lo, hi = (mid, hi) if gap_mm < JAW_OPEN_GAP_MM else (lo, mid)
    deltas["jawOpen"] = jaw_open = jaw_rotation(0.5 * (lo + hi))
    deltas["jawForward"] = f_jaw[:, None] * np.array([0.0, 0.0, 5.0])
    deltas["jawLeft"] = f_jaw[:, None] * np.array([6.0, 0.0, 0.0])
    deltas["jawRight"] = f_jaw[:, None] * np.array([-6.0, 0.0, 0.0])

    # --- mouthClose: lips sealed over an open jaw ----------------------------------------------
    # The lower lip takes back (1 - share) of the jaw's displacement, the upper lip comes down by
    # share of the local opening, so jawOpen + mouthClose leaves the rest gap along the whole slit.
    share = MOUTH_CLOSE_UPPER_SHARE
    ring_x = v[list(LOWER_INNER_LIP), 0]
    ring_open_mm = -jaw_open[list(LOWER_INNER_LIP), 1]  # how far each lower-ring point drops
    open_at_x = np.interp(x, ring_x, ring_open_mm)  # (V,) local opening, 0 beyond the corners
    close = -(1.0 - share) * f_lower[:, None] * jaw_open
    close[:, 1] -= share * f_upper * open_at_x
    deltas["mouthClose"] = close

    # --- rounding: funnel and pucker ------------------------------------------------------------
    mouth_center = v[[13, 14]].mean(axis=0)
    to_center_x = mouth_center[0] - x  # (V,)
    pucker = np.zeros_like(v)
    pucker[:, 0] = 0.35 * to_center_x * f_mouth  # corners come ~8.5 mm in each
    pucker[:, 2] = 8.0 * f_mouth ** 1.5  # lips push forward, most at the lips themselves
    pucker[:, 1] = -0.15 * f_upper + 0.15 * f_lower  # pressed together: closes the rest gap
    deltas["mouthPucker"] = pucker
    funnel = np.zeros_like(v)
    funnel[:, 0] = 0.22 * to_center_x * f_mouth
    funnel[:, 2] = 6.0 * f_mouth ** 1.5
    # lips part into an "O", the outer edges flare out (vermilion turned outwards)
    funnel[:, 1] = 2.5 * f_upper - 3.0 * f_lower
    outer_flare = field(UPPER_OUTER_LIP[1:-1], UPPER_INNER_LIP, far_from=all_lips, reach_mm=6.0)
    funnel[:, 1] += 1.0 * outer_flare
    funnel[:, 2] += 1.5 * outer_flare
    outer_flare = field(LOWER_OUTER_LIP[1:-1], LOWER_INNER_LIP, far_from=all_lips, reach_mm=6.0)
    funnel[:, 1] -= 1.0 * outer_flare
    funnel[:, 2] += 1.5 * outer_flare
    deltas["mouthFunnel"] = funnel

    deltas["mouthLeft"] = f_mouth[:, None] * np.array([7.0, 0.0, -1.0])
    deltas["mouthRight"] = f_mouth[:, None] * np.array([-7.0, 0.0, -1.0])

    # --- corners: smile, frown, dimple, stretch, press -------------------------------------------
    for side, sign, corner in (("Left", 1.0, OUTER_CORNERS[1]), ("Right", -1.0, OUTER_CORNERS[0])):
        f_corner = _bump(v, v[corner], 20.0)  # (V,)
        half = _side_weight(x, sign)  # (V,)
        deltas[f"mouthSmile{side}"] = f_corner[:, None] * np.array([sign * 6.0, 8.0, -3.0])
        cheek = _bump(v, v[LEFT_CHEEK_PUFF if sign > 0 else RIGHT_CHEEK_PUFF] + [0, 8.0, 0], 22.0)
        deltas[f"mouthSmile{side}"] += cheek[:, None] * np.array([sign * 1.0, 2.0, 1.5])
        deltas[f"mouthFrown{side}"] = f_corner[:, None] * np.array([sign * 1.0, -5.0, 0.0])
        deltas[f"mouthDimple{side}"] = f_corner[:, None] * np.array([sign * 3.0, 0.0, -4.0])
        stretch = f_corner[:, None] * np.array([sign * 6.0, -2.0, -2.0])
        stretch[:, 1] -= 1.5 * half * f_lower  # the lower lip is pulled flat and down
        deltas[f"mouthStretch{side}"] = stretch
        press = np.zeros_like(v)  # lips pressed and thinned on that side
        press[:, 1] = half * (-0.6 * f_upper + 0.6 * f_lower)
        press[:, 2] = -1.5 * half * (f_upper + f_lower)
        deltas[f"mouthPress{side}"] = press
        # lip parting without the jaw
        lower_down = np.zeros_like(v)
        lower_down[:, 1] = -6.0 * half * f_lower
        lower_down[:, 2] = 1.0 * half * f_lower
        deltas[f"mouthLowerDown{side}"] = lower_down
        upper_up = np.zeros_like(v)
        upper_up[:, 1] = 4.5 * half * f_upper
        upper_up[:, 2] = 1.0 * half * f_upper
        deltas[f"mouthUpperUp{side}"] = upper_up

    # --- rolls and shrugs -------------------------------------------------------------------------
    outer_lower = field(LOWER_OUTER_LIP[1:-1], LOWER_INNER_LIP + UPPER_INNER_LIP, far_from=all_lips, reach_mm=8.0)
    outer_upper = field(UPPER_OUTER_LIP[1:-1], UPPER_INNER_LIP + LOWER_INNER_LIP, far_from=all_lips, reach_mm=8.0)
    roll_lower = np.zeros_like(v)  # the lower lip turns in over the teeth: its outer edge rises
    roll_lower[:, 1] = 3.0 * outer_lower
    roll_lower[:, 2] = -3.0 * f_lower
    deltas["mouthRollLower"] = roll_lower
    roll_upper = np.zeros_like(v)
    roll_upper[:, 1] = -3.0 * outer_upper
    roll_upper[:, 2] = -3.0 * f_upper
    deltas["mouthRollUpper"] = roll_upper
    chin = _bump(v, v[CHIN_VERTEX] + [0.0, 20.0, 0.0], 35.0) * (v[:, 1] < v[14, 1])
    shrug_lower = np.zeros_like(v)  # chin raiser: lower lip and chin pushed up and out
    shrug_lower[:, 1] = 3.0 * np.maximum(f_lower, chin)
    shrug_lower[:, 2] = 2.5 * np.maximum(f_lower, chin)
    deltas["mouthShrugLower"] = shrug_lower
    deltas["mouthShrugUpper"] = f_upper[:, None] * np.array([0.0, 2.0, 2.0])

    # --- cheeks ------------------------------------------------------------------------------------
    normals = _vertex_normals(v, triangles)  # (V, 3)
    puff = np.zeros_like(v)
    squint_center = {}
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        puff_center = v[LEFT_CHEEK_PUFF if sign > 0 else RIGHT_CHEEK_PUFF] + [sign * 3.0, -6.0, 0.0]
        f_puff = _bump(v, puff_center, 30.0)[:, None]
        puff += 6.0 * f_puff * normals + f_puff * np.array([sign * 4.0, 0.0, 0.0])  # wider from the front
        squint_center[side] = v[LEFT_CHEEK_BONE if sign > 0 else RIGHT_CHEEK_BONE] + [0.0, -6.0, 0.0]
    puff += f_mouth[:, None] * np.array([0.0, 0.0, 1.5])  # lips pushed out by the air
    deltas["cheekPuff"] = puff
    for side in ("Left", "Right"):
        deltas[f"cheekSquint{side}"] = _bump(v, squint_center[side], 22.0)[:, None] * np.array([0.0, 4.0, 1.5])

    # --- eyes -----------------------------------------------------------------------------------------
    for side, upper, lower, brow in (("Left", LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_BROW),
                                     ("Right", RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_BROW)):
        lid_up = field(upper[1:-1], list(lower) + list(brow), far_from=upper, reach_mm=10.0)
        lid_lo = field(lower[1:-1], list(upper), far_from=lower, reach_mm=8.0)
        opening_mm = np.interp(x, v[list(lower), 0][np.argsort(v[list(lower), 0])],
                               (v[list(upper), 1] - v[list(lower), 1])[np.argsort(v[list(lower), 0])])
        blink = np.zeros_like(v)  # the upper lid comes down to 0.2 mm above the lower lid
        blink[:, 1] = -np.maximum(opening_mm - 0.2, 0.0) * lid_up
        deltas[f"eyeBlink{side}"] = blink
        deltas[f"eyeSquint{side}"] = (lid_lo[:, None] * np.array([0.0, 2.0, 0.3])
                                      + lid_up[:, None] * np.array([0.0, -1.5, 0.0]))
        deltas[f"eyeWide{side}"] = lid_up[:, None] * np.array([0.0, 2.5, 0.3])
        # No eyeballs in this mesh: gaze only moves the lids a little, as real lids follow the eye.
        deltas[f"eyeLookDown{side}"] = lid_up[:, None] * np.array([0.0, -2.0, 0.0])
        deltas[f"eyeLookUp{side}"] = lid_up[:, None] * np.array([0.0, 1.5, 0.0])

    # --- brows and nose ----------------------------------------------------------------------------------
    eye_guard = 1.0 - np.maximum(
        field(LEFT_EYE_UPPER + LEFT_EYE_LOWER, [], far_from=LEFT_EYE_UPPER, reach_mm=4.0),
        field(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER, [], far_from=RIGHT_EYE_UPPER, reach_mm=4.0))
    for side, sign, brow in (("Left", 1.0, LEFT_BROW), ("Right", -1.0, RIGHT_BROW)):
        brow_v = v[list(brow)]
        center = brow_v.mean(axis=0)
        inner = brow_v[np.argmin(sign * brow_v[:, 0])]
        outer = brow_v[np.argmax(sign * brow_v[:, 0])]
        f_brow = _bump(v, center, 28.0) * eye_guard
        deltas[f"browDown{side}"] = f_brow[:, None] * np.array([-sign * 1.5, -4.0, 0.0])
        deltas[f"browOuterUp{side}"] = (_bump(v, outer, 22.0) * eye_guard)[:, None] * np.array([0.0, 5.0, 0.0])
        deltas["browInnerUp"] += (_bump(v, inner, 20.0) * eye_guard)[:, None] * np.array([0.0, 5.0, 0.0])
        wing = v[LEFT_NOSE_WING if sign > 0 else RIGHT_NOSE_WING]
        deltas[f"noseSneer{side}"] = _bump(v, wing + [0.0, 2.0, 0.0], 16.0)[:, None] * np.array([0.0, 3.0, 0.5])
        deltas[f"noseSneer{side}"][:, 1] += 1.0 * _side_weight(x, sign) * f_upper

    # tongueOut stays zero: the mesh has no tongue.
    deltas_mm = np.stack([deltas[name] for name in ARKIT_52]).astype(np.float32)  # (52, V, 3)
    return v.astype(np.float32), deltas_mm


def _boundary_vertices(triangles: np.ndarray) -> frozenset[int]:
    """Vertices on the mesh's outer rim (edges used by one triangle only)."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return frozenset(uniq[counts == 1].ravel().tolist())


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals, pointing out of the face (+z at the nose tip). (V, 3)"""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    face_n = np.cross(b - a, c - a)  # (F, 3)
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, triangles[:, k], face_n)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
