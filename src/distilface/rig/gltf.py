"""The face rig as glTF 2.0 binary (.glb): mesh, 52 ARKit morph targets, optional animation.

Written with numpy alone, read by Blender's importer, three.js `GLTFLoader` and any glTF viewer:

    scene -> node "face" -> mesh "face", one primitive (TRIANGLES, one material "skin")
        attributes  POSITION, NORMAL (float32 VEC3; normals area-weighted from the triangles)
        indices     uint16 (uint32 beyond 65535 vertices)
        targets     one per rig channel: POSITION deltas, and NORMAL deltas (`morph_normals`),
                    the change of the vertex normals when the target is fully on
        weights     all 0 (the rest pose)
        extras      {"targetNames": [ARKit names in rig order]}: the convention both Blender
                    (shape key names) and three.js (`mesh.morphTargetDictionary`) read
    animation (only with curves) -> one sampler, LINEAR: input = frame times k / fps in seconds
        (float32, T keyframes), output = the weights, T x 52 float32 frame after frame; one
        channel, path "weights", on the face node. extras {"fps", "soundFile"}.

Units and frame: glTF is metres, y up, the asset's front facing +z; the rig is the same frame in
millimetres, so positions and deltas are scaled by 1e-3 and nothing else changes. The rig's
triangles are counter-clockwise from the front, glTF's front-face winding.

The canonical mesh fills the mouth opening with triangles. They are left out (as the renderer
does, `keep_mouth_fill=False`), otherwise an open jaw stretches a skin membrane over the mouth;
the opening shows whatever is behind the face (a viewer can put a dark cavity there). The
material is double-sided, so the inside of the lips is visible through an open mouth.

glTF has no standard way to carry audio, so the sound is not embedded: play the audio file next
to the animation (its name is in the animation's extras) starting at time 0.

Size: dense float32 targets, about 11 KB per target with normals (~0.6 MB for 52, most of it
zeros that compress well), plus 208 bytes per animation frame (6 KB per second at 30 fps).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from distilface.curves import Curves
from distilface.fileio import atomic_write
from distilface.rig import blendshapes as bs
from distilface.rig.mesh import FaceRig, load_rig

GLB_MAGIC = 0x46546C67  # "glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A  # "JSON"
CHUNK_BIN = 0x004E4942  # "BIN\0"
GLB_ALIGN = 4  # chunks and buffer views start on 4-byte boundaries (float32 data)

M_PER_MM = 1e-3

# glTF enums
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
MAX_UINT16_INDEX = 65534  # 65535 is the primitive-restart value, not a vertex index

SKIN_SRGB = (0.88, 0.72, 0.62)  # render.SKIN_RGB; glTF colour factors are linear light


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of one or more poses. (..., V, 3), (F, 3) -> (..., V, 3)

    A vertex in no triangle (or only in degenerate ones) gets +z, the face's forward axis."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = (v[..., triangles[:, k], :] for k in range(3))
    face_n = np.cross(b - a, c - a)  # (..., F, 3), length = twice the area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, (..., triangles[:, k], slice(None)), face_n)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])


def face_triangles(rig: FaceRig, keep_mouth_fill: bool = False) -> np.ndarray:
    """The triangles the glTF mesh uses: the rig's, less those filling the mouth. (F', 3) int"""
    if keep_mouth_fill:
        return rig.triangles
    mouth_ring = set(bs.UPPER_INNER_LIP) | set(bs.LOWER_INNER_LIP)
    is_mouth_fill = np.array([set(t) <= mouth_ring for t in rig.triangles.tolist()])
    return rig.triangles[~is_mouth_fill]


class _Bin:
    """The GLB's one binary buffer, grown by views; `add` returns the new accessor's index."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, type_: str, target: int | None = None, min_max: bool = False) -> int:
        """data: (count,) or (count, n) float32 / uint16 / uint32 -> accessor index."""
        component = {np.dtype(np.float32): FLOAT, np.dtype(np.uint16): UNSIGNED_SHORT,
                     np.dtype(np.uint32): UNSIGNED_INT}[data.dtype]
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        pad = -len(raw) % GLB_ALIGN
        self.parts.append(raw + b"\0" * pad)
        self.size += len(raw) + pad
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(data.shape[0]), "type": type_}
        if min_max:  # exact float32 values as doubles: validators compare them bit for bit
            flat = data.reshape(data.shape[0], -1)
            accessor["min"] = [float(x) for x in flat.min(axis=0)]
            accessor["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def glb_bytes(rig: FaceRig | None = None, curves: Curves | None = None, *, morph_normals: bool = True,
              keep_mouth_fill: bool = False, sound_file: str | None = None, name: str = "face") -> bytes:
    """The face rig (default: `load_rig()`) as a GLB file's bytes; with `curves`, an animation of
    its morph target weights (see the module docstring).

    `curves` must hold every rig channel (matched by name, in any order; other channels are
    ignored) and at least one frame: ValueError otherwise."""
    rig = load_rig() if rig is None else rig
    weights = None
    if curves is not None:
        missing = [n for n in rig.names if n not in curves.names]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"glTF animation needs the rig's {len(rig.names)} blendshape curves; "
                             f"missing {', '.join(missing[:5])}{more}")
        if curves.num_frames == 0:
            raise ValueError("glTF animation needs at least one frame of curves")
        weights = rig.weights(curves)  # (T, C) in rig order

    triangles = face_triangles(rig, keep_mouth_fill)
    neutral_m = rig.neutral_mm.astype(np.float64) * M_PER_MM  # (V, 3)
    deltas_m = rig.deltas_mm.astype(np.float64) * M_PER_MM  # (C, V, 3)
    normals = vertex_normals(neutral_m, triangles)  # (V, 3)

    buf = _Bin()
    index_dtype = np.uint16 if rig.num_vertices - 1 <= MAX_UINT16_INDEX else np.uint32
    attributes = {"POSITION": buf.add(neutral_m.astype(np.float32), "VEC3", ARRAY_BUFFER, min_max=True),
                  "NORMAL": buf.add(normals.astype(np.float32), "VEC3", ARRAY_BUFFER)}
    indices = buf.add(triangles.reshape(-1).astype(index_dtype), "SCALAR", ELEMENT_ARRAY_BUFFER)
    target_normals = None
    if morph_normals:  # (C, V, 3): normal of the fully applied target minus the rest normal
        target_normals = vertex_normals(neutral_m[None] + deltas_m, triangles) - normals
    targets = []
    for k in range(len(rig.names)):
        target = {"POSITION": buf.add(deltas_m[k].astype(np.float32), "VEC3", ARRAY_BUFFER, min_max=True)}
        if target_normals is not None:
            target["NORMAL"] = buf.add(target_normals[k].astype(np.float32), "VEC3", ARRAY_BUFFER)
        targets.append(target)

    skin = [round(_srgb_to_linear(c), 4) for c in SKIN_SRGB] + [1.0]
    doc: dict = {
        "asset": {"version": "2.0", "generator": "distilface"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "materials": [{"name": "skin", "doubleSided": True,
                       "pbrMetallicRoughness": {"baseColorFactor": skin, "metallicFactor": 0.0,
                                                "roughnessFactor": 0.6}}],
        "meshes": [{"name": name,
                    "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                                    "mode": 4, "targets": targets}],
                    "weights": [0.0] * len(rig.names),
                    "extras": {"targetNames": list(rig.names)}}],
    }
    if weights is not None:
        times_s = (np.arange(len(weights)) / curves.fps).astype(np.float32)  # (T,)
        time_acc = buf.add(times_s, "SCALAR", min_max=True)  # input min/max: required by the spec
        weight_acc = buf.add(weights.reshape(-1).astype(np.float32), "SCALAR")  # (T * C,) frame-major
        extras = {"fps": float(curves.fps)}
        if sound_file:
            extras["soundFile"] = str(sound_file)
        doc["animations"] = [{"name": Path(sound_file).stem if sound_file else "speech",
                              "samplers": [{"input": time_acc, "output": weight_acc,
                                            "interpolation": "LINEAR"}],
                              "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}],
                              "extras": extras}]
    doc["buffers"] = [{"byteLength": buf.size}]
    doc["bufferViews"] = buf.views
    doc["accessors"] = buf.accessors
    return _pack_glb(doc, b"".join(buf.parts))


def _pack_glb(doc: dict, binary: bytes) -> bytes:
    """12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded), all 4-byte aligned."""
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % GLB_ALIGN)
    binary += b"\0" * (-len(binary) % GLB_ALIGN)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
                     struct.pack("<II", len(text), CHUNK_JSON), text,
                     struct.pack("<II", len(binary), CHUNK_BIN), binary])


def write_glb(path: str | Path, curves: Curves | None = None, *, rig: FaceRig | None = None,
              morph_normals: bool = True, keep_mouth_fill: bool = False,
              sound_file: str | None = None) -> Path:
    """Write the face (and, with `curves`, its animation) to `path` as .glb, atomically. -> path"""
    path = Path(path)
    data = glb_bytes(rig, curves, morph_normals=morph_normals, keep_mouth_fill=keep_mouth_fill,
                     sound_file=sound_file)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def write_face_glb(path: str | Path, rig: FaceRig | None = None) -> Path:
    """Just the face mesh with its 52 named morph targets at rest, no animation (the web
    viewer's bundled `face.glb`). -> path"""
    return write_glb(path, rig=rig)
