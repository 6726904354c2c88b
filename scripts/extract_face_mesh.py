"""Extract MediaPipe's canonical face mesh into src/distilface/rig/data/canonical_face.npz.

One-off script, run by a developer; the package only reads the npz it writes and never needs npm.

Where the mesh lives: npm `@mediapipe/face_mesh` (Apache-2.0) ships
`face_mesh_solution_packed_assets.data`, an Emscripten file package: several files concatenated,
with their byte ranges listed in `face_mesh_solution_packed_assets_loader.js` as
`{"filename": ..., "start": ..., "end": ...}`. One of them is
`face_geometry/data/geometry_pipeline_metadata_landmarks.binarypb`, a serialized
`GeometryPipelineMetadata` protobuf:

    GeometryPipelineMetadata { Mesh3d canonical_mesh = 1; ... }
    Mesh3d { VertexType vertex_type = 1; PrimitiveType primitive_type = 2;
             repeated float vertex_buffer = 3;   // x, y, z, u, v per vertex (VERTEX_PT)
             repeated uint32 index_buffer = 4; } // 3 per triangle

The protobuf is small and flat, so it is decoded here by hand (no protobuf dependency).
The canonical mesh is in centimetres (x right, y up, z towards the viewer); we store millimetres.

Usage:
    python scripts/extract_face_mesh.py [--package-dir DIR] [--out PATH]

Without --package-dir the script runs `npm pack @mediapipe/face_mesh` in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

NPM_PACKAGE = "@mediapipe/face_mesh"
DATA_FILE = "face_mesh_solution_packed_assets.data"
LOADER_FILE = "face_mesh_solution_packed_assets_loader.js"
METADATA_SUFFIX = "face_geometry/data/geometry_pipeline_metadata_landmarks.binarypb"
CM_TO_MM = 10.0
FLOATS_PER_VERTEX = 5  # x, y, z, u, v (Mesh3d.VERTEX_PT)
NUM_VERTICES = 468
NUM_TRIANGLES = 898
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/distilface/rig/data/canonical_face.npz"

# Protobuf wire types.
WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


def npm_pack(dest: Path) -> Path:
    """Download and unpack the npm tarball into `dest`; return the folder holding its files."""
    out = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=dest, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(dest / out) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package"


def packed_file(package_dir: Path, suffix: str) -> bytes:
    """Bytes of one file inside the Emscripten package, located by the loader's offset table."""
    loader = (package_dir / LOADER_FILE).read_text()
    data = (package_dir / DATA_FILE).read_bytes()
    pattern = r'"filename":\s*"([^"]+)",\s*"start":\s*(\d+),\s*"end":\s*(\d+)'
    for name, start, end in re.findall(pattern, loader):
        if name.endswith(suffix):
            return data[int(start):int(end)]
    raise FileNotFoundError(f"{suffix} is not listed in {LOADER_FILE}")


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def proto_fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Decode one protobuf message into (field_number, wire_type, value) in wire order."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == WIRE_VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == WIRE_I64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == WIRE_LEN:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == WIRE_I32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")
        fields.append((field, wire, value))
    return fields


def parse_mesh3d(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Mesh3d -> (vertex_buffer float32 (N,), index_buffer int64 (M,)); packed or not."""
    floats: list[float] = []
    indices: list[int] = []
    for field, wire, value in proto_fields(buf):
        if field == 3:
            if wire == WIRE_LEN:
                floats.extend(struct.unpack(f"<{len(value) // 4}f", value))
            else:
                floats.append(struct.unpack("<f", value)[0])
        elif field == 4:
            if wire == WIRE_LEN:
                pos = 0
                while pos < len(value):
                    idx, pos = read_varint(value, pos)
                    indices.append(idx)
            else:
                indices.append(value)
    return np.asarray(floats, dtype=np.float32), np.asarray(indices, dtype=np.int64)


def extract(package_dir: Path) -> dict[str, np.ndarray]:
    metadata = packed_file(package_dir, METADATA_SUFFIX)
    meshes = [v for f, w, v in proto_fields(metadata) if f == 1 and w == WIRE_LEN]
    if len(meshes) != 1:
        raise ValueError(f"expected one canonical_mesh (field 1), found {len(meshes)}")
    vertex_buffer, index_buffer = parse_mesh3d(meshes[0])
    vertex_data = vertex_buffer.reshape(-1, FLOATS_PER_VERTEX)  # (V, 5)
    triangles = index_buffer.reshape(-1, 3).astype(np.int32)  # (F, 3)
    if vertex_data.shape[0] != NUM_VERTICES or triangles.shape[0] != NUM_TRIANGLES:
        raise ValueError(f"unexpected mesh size: {vertex_data.shape[0]} vertices, {triangles.shape[0]} triangles")
    if triangles.min() < 0 or triangles.max() >= NUM_VERTICES:
        raise ValueError("triangle index out of range")
    return {
        "vertices": (vertex_data[:, :3] * CM_TO_MM).astype(np.float32),  # (468, 3) mm
        "uvs": vertex_data[:, 3:5].astype(np.float32),  # (468, 2)
        "triangles": triangles,  # (898, 3)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, help="an unpacked @mediapipe/face_mesh (skips npm)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from distilface.fileio import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        package_dir = args.package_dir or npm_pack(Path(tmp))
        arrays = extract(package_dir)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(args.out) as f:
        f.write(buf.getvalue())
    args.out.chmod(0o644)  # package data: the temp file it was renamed from was private
    # Check what was written: it must load back identical.
    with np.load(args.out, allow_pickle=False) as z:
        for key, value in arrays.items():
            assert np.array_equal(z[key], value), key
    v = arrays["vertices"]
    print(f"wrote {args.out}: {len(v)} vertices, {len(arrays['triangles'])} triangles, "
          f"extent mm x {np.ptp(v[:, 0]):.1f} y {np.ptp(v[:, 1]):.1f} z {np.ptp(v[:, 2]):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
