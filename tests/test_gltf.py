"""The face rig as .glb: reloaded with pygltflib, every array compared with the rig and the curves;
the real `distilface animate ... -o out.glb`; optional gltf-validator and three.js checks (node)."""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distilface.curves import Curves
from distilface.formats import format_for, write_curves
from distilface.rig import blendshapes as bs
from distilface.rig.arkit import ARKIT_52
from distilface.rig.gltf import face_triangles, glb_bytes, write_face_glb, write_glb
from distilface.rig.mesh import load_rig

pygltflib = pytest.importorskip("pygltflib")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WAV = REPO / "src" / "distilface" / "data" / "example_en.wav"
CLI = [sys.executable, "-m", "distilface.cli"]
# gltf-validator and three from npm, for the optional checks: `npm install --no-save
# gltf-validator three` in the repo root (node_modules/ is ignored), or point this elsewhere.
NODE_MODULES = Path(os.environ.get("DISTILFACE_NODE_MODULES", REPO / "node_modules"))

NUMPY_DTYPE = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
NUM_COMPONENTS = {"SCALAR": 1, "VEC3": 3}


def read_accessor(gltf, index: int) -> np.ndarray:
    """An accessor's data from the GLB's binary chunk -> (count,) or (count, n)."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    n = NUM_COMPONENTS[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    data = np.frombuffer(gltf.binary_blob(), dtype=np.dtype(NUMPY_DTYPE[acc.componentType]).newbyteorder("<"),
                         count=acc.count * n, offset=start)
    assert view.byteStride in (None, 0, data.itemsize * n)  # tightly packed
    return data.reshape(acc.count, n) if n > 1 else data


def load(path):
    return pygltflib.GLTF2.load_binary(str(path))


@pytest.fixture(scope="module")
def rig():
    return load_rig()


@pytest.fixture(scope="module")
def curves():
    """Random weights for the 52 channels in shuffled order plus one channel the rig lacks."""
    rng = np.random.default_rng(3)
    names = [ARKIT_52[k] for k in rng.permutation(len(ARKIT_52))] + ["headYaw"]
    return Curves(25.0, tuple(names), rng.uniform(-0.1, 1.1, size=(37, len(names))))


def test_glb_header_and_chunks(tmp_path, curves):
    path = write_glb(tmp_path / "a.glb", curves)
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    doc = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == 0x004E4942 and bin_len % 4 == 0
    assert 20 + json_len + 8 + bin_len == len(data)
    assert doc["asset"]["version"] == "2.0"
    assert doc["buffers"] == [{"byteLength": bin_len}]
    for view in doc["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= bin_len
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind
    assert len(data) < 1_000_000  # float32 and 468 vertices: ~0.6 MB with normal targets


def test_face_mesh_and_morph_targets(tmp_path, rig):
    gltf = load(write_face_glb(tmp_path / "face.glb"))
    assert not gltf.animations
    assert gltf.scenes[gltf.scene].nodes == [0] and gltf.nodes[0].mesh == 0
    mesh = gltf.meshes[0]
    assert len(mesh.primitives) == 1
    prim = mesh.primitives[0]
    assert prim.mode in (None, 4)

    positions = read_accessor(gltf, prim.attributes.POSITION)
    assert positions.shape == (468, 3) == rig.neutral_mm.shape
    np.testing.assert_array_equal(positions, (rig.neutral_mm.astype(np.float64) * 1e-3).astype(np.float32))
    acc = gltf.accessors[prim.attributes.POSITION]
    assert acc.min == positions.min(axis=0).tolist() and acc.max == positions.max(axis=0).tolist()

    # the rig's triangles less the 18 that fill the mouth; winding kept (counter-clockwise from the front)
    tris = read_accessor(gltf, prim.indices).reshape(-1, 3)
    assert tris.dtype == np.uint16 and len(tris) == len(rig.triangles) - 18 == 880
    mouth = set(bs.UPPER_INNER_LIP) | set(bs.LOWER_INNER_LIP)
    kept = [t for t in rig.triangles.tolist() if not set(t) <= mouth]
    assert tris.tolist() == kept

    normals = read_accessor(gltf, prim.attributes.NORMAL)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    expected_normals = bs._vertex_normals(rig.neutral_mm.astype(np.float64), tris)  # the rig's own helper
    np.testing.assert_allclose(normals, expected_normals, atol=1e-6)
    nose_tip = int(np.argmax(rig.neutral_mm[:, 2]))
    assert normals[nose_tip, 2] > 0.9  # out of the face, towards the viewer (+z)

    assert mesh.extras["targetNames"] == list(ARKIT_52)
    assert mesh.weights == [0.0] * 52
    assert len(prim.targets) == 52
    jaw = ARKIT_52.index("jawOpen")
    for k, target in enumerate(prim.targets):
        deltas = read_accessor(gltf, target["POSITION"])
        np.testing.assert_array_equal(deltas, (rig.deltas_mm[k].astype(np.float64) * 1e-3).astype(np.float32))
        acc = gltf.accessors[target["POSITION"]]
        assert acc.min == deltas.min(axis=0).tolist() and acc.max == deltas.max(axis=0).tolist()
        normal_deltas = read_accessor(gltf, target["NORMAL"])
        if k == jaw:  # neutral normal + delta = the normal of the mesh with the jaw open
            posed = bs._vertex_normals((rig.neutral_mm + rig.deltas_mm[k]).astype(np.float64), tris)
            np.testing.assert_allclose(normals + normal_deltas, posed, atol=1e-6)
            assert np.abs(normal_deltas).max() > 0.1
        if not rig.deltas_mm[k].any():  # tongueOut, eye looks: nothing moves
            assert not deltas.any() and not normal_deltas.any()


def test_without_normal_targets_or_with_the_mouth_fill(rig):
    doc_bytes = glb_bytes(rig, morph_normals=False, keep_mouth_fill=True)
    (json_len,) = struct.unpack_from("<I", doc_bytes, 12)
    doc = json.loads(doc_bytes[20:20 + json_len])
    prim = doc["meshes"][0]["primitives"][0]
    assert all(set(t) == {"POSITION"} for t in prim["targets"])
    assert doc["accessors"][prim["indices"]]["count"] == rig.triangles.size
    assert len(face_triangles(rig, keep_mouth_fill=True)) == len(rig.triangles)


def test_animation_keyframes_and_weights(tmp_path, curves, rig):
    gltf = load(write_glb(tmp_path / "a.glb", curves, sound_file="speech/hello.wav"))
    assert len(gltf.animations) == 1
    anim = gltf.animations[0]
    assert anim.name == "hello" and anim.extras == {"fps": 25.0, "soundFile": "speech/hello.wav"}
    assert len(anim.samplers) == 1 and len(anim.channels) == 1
    sampler, channel = anim.samplers[0], anim.channels[0]
    assert sampler.interpolation == "LINEAR"
    assert (channel.sampler, channel.target.node, channel.target.path) == (0, 0, "weights")

    times = read_accessor(gltf, sampler.input)
    assert times.dtype == np.float32 and len(times) == curves.num_frames == 37
    np.testing.assert_array_equal(times, (np.arange(37) / 25.0).astype(np.float32))
    assert gltf.accessors[sampler.input].min == [0.0]
    assert gltf.accessors[sampler.input].max == [float(np.float32(36 / 25.0))]  # duration 1.44 s
    assert abs(times[-1] - 1.44) < 1e-6

    weights = read_accessor(gltf, sampler.output)
    assert weights.shape == (37 * 52,)
    expected = curves.select(ARKIT_52).values  # (37, 52): the rig's channel order, headYaw dropped
    np.testing.assert_array_equal(weights.reshape(37, 52), expected.astype(np.float32))
    assert weights.reshape(37, 52)[5, 17] == np.float32(curves.channel("jawOpen")[5])


def test_single_frame_and_bad_curves(tmp_path):
    one = Curves(30.0, ARKIT_52, np.full((1, 52), 0.5))
    gltf = load(write_glb(tmp_path / "one.glb", one))
    np.testing.assert_array_equal(read_accessor(gltf, gltf.animations[0].samplers[0].input), [0.0])
    with pytest.raises(ValueError, match="missing jawOpen"):
        glb_bytes(curves=Curves(30.0, ARKIT_52[:17], np.zeros((3, 17))))
    with pytest.raises(ValueError, match="at least one frame"):
        glb_bytes(curves=Curves(30.0, ARKIT_52, np.zeros((0, 52))))
    assert not (tmp_path / "bad.glb").exists()


def test_write_curves_picks_glb_by_extension(tmp_path, curves):
    assert format_for("out.glb") == "glb" and format_for("OUT.GLB") == "glb"
    assert format_for("x.bin", "glb") == "glb"
    path = write_curves(curves, tmp_path / "c.glb", sound_file="a.wav")
    assert path.read_bytes() == glb_bytes(curves=curves, sound_file="a.wav")


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"distilface {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


def test_cli_animate_writes_glb_equal_to_json(tmp_path):
    """The real CLI with the shipped default student: .glb keyframes = the .json curves."""
    run_cli("animate", EXAMPLE_WAV, "-o", tmp_path / "out.glb", "--no-progress")
    run_cli("animate", EXAMPLE_WAV, "-o", tmp_path / "out.json", "--no-progress")
    ref = json.loads((tmp_path / "out.json").read_text())
    frames = np.asarray(ref["frames"])  # (T, C), rounded to 1e-6 in JSON
    assert ref["names"] == list(ARKIT_52) and len(frames) > 30
    gltf = load(tmp_path / "out.glb")
    sampler = gltf.animations[0].samplers[0]
    times = read_accessor(gltf, sampler.input)
    weights = read_accessor(gltf, sampler.output).reshape(-1, 52)
    assert len(times) == len(weights) == len(frames)
    np.testing.assert_allclose(times, np.arange(len(frames)) / ref["fps"], atol=1e-6)
    np.testing.assert_allclose(weights, frames, atol=1.5e-6)
    assert gltf.animations[0].extras["soundFile"] == str(EXAMPLE_WAV)
    assert gltf.meshes[0].extras["targetNames"] == list(ARKIT_52)


# -- optional: node tools, skipped unless installed ------------------------------------------

def node_module(name: str) -> Path:
    if shutil.which("node") is None or not (NODE_MODULES / name / "package.json").exists():
        pytest.skip(f"needs node and {name} in {NODE_MODULES} (npm install --no-save {name})")
    return NODE_MODULES / name


VALIDATE_JS = """
const validator = require(process.argv[1]);
const data = new Uint8Array(require('fs').readFileSync(process.argv[2]));
validator.validateBytes(data, {maxIssues: 100}).then(r => console.log(JSON.stringify(r.issues)))
  .catch(e => { console.error(e); process.exit(2); });
"""

THREE_JS = """
const fs = await import('fs');
const { pathToFileURL } = await import('url');
const root = process.argv[1];
const { GLTFLoader } = await import(pathToFileURL(root + '/examples/jsm/loaders/GLTFLoader.js').href);
const buf = fs.readFileSync(process.argv[2]);
new GLTFLoader().parse(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), '', (gltf) => {
  let mesh = null;
  gltf.scene.traverse((o) => { if (o.isMesh) mesh = o; });
  const track = gltf.animations[0].tracks[0];
  console.log(JSON.stringify({vertices: mesh.geometry.attributes.position.count,
    dictionary: mesh.morphTargetDictionary, normals: mesh.geometry.morphAttributes.normal.length,
    track: track.name, duration: gltf.animations[0].duration,
    times: Array.from(track.times), values: Array.from(track.values)}));
}, (e) => { console.error(e); process.exit(2); });
"""


def test_gltf_validator_finds_no_issues(tmp_path, curves):
    validator = node_module("gltf-validator")
    for path in (write_glb(tmp_path / "a.glb", curves), write_face_glb(tmp_path / "face.glb")):
        proc = subprocess.run(["node", "-e", VALIDATE_JS, str(validator), str(path)],
                              capture_output=True, text=True, timeout=120, check=True)
        issues = json.loads(proc.stdout)
        assert (issues["numErrors"], issues["numWarnings"], issues["numInfos"]) == (0, 0, 0), issues["messages"]


def test_three_gltf_loader_reads_targets_and_animation(tmp_path, curves):
    three = node_module("three")
    path = write_glb(tmp_path / "a.glb", curves)
    proc = subprocess.run(["node", "--input-type=module", "-e", THREE_JS, str(three), str(path)],
                          capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(proc.stdout)
    assert out["vertices"] == 468 and out["normals"] == 52
    assert out["dictionary"] == {name: k for k, name in enumerate(ARKIT_52)}
    assert out["track"].endswith(".morphTargetInfluences")
    assert abs(out["duration"] - 36 / 25.0) < 1e-6
    np.testing.assert_allclose(out["times"], np.arange(37) / 25.0, atol=1e-6)
    values = np.reshape(out["values"], (37, 52))
    np.testing.assert_allclose(values, curves.select(ARKIT_52).values, atol=1e-7)
