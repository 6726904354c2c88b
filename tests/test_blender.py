"""`distilface animate -o face.glb` in a real, headless Blender (Debian's blender 3.4 with its own
Python and python3-numpy: `scripts/setup-extra.sh blender`): engines/blender/distilface_blender.py
imports it, and a second Blender run reads the saved .blend back. The face's rest pose, every shape
key, the key values at every frame and the deformed mesh at some frames are compared with the rig
and with the curves of the same clip; the speech must sit in the sequencer at frame 0. Blender's
importer alone (File > Import > glTF, a 24 fps scene) must read the same names and values."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distilface.curves import load_curves
from distilface.rig.gltf import write_face_glb
from distilface.rig.mesh import load_rig

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "engines" / "blender" / "distilface_blender.py"
EXAMPLE_WAV = REPO / "src" / "distilface" / "data" / "example_en.wav"
CLI = [sys.executable, "-m", "distilface.cli"]
BLENDER = os.environ.get("DISTILFACE_BLENDER") or shutil.which("blender")
# Blender as a Python module (PyPI `bpy`, each in its own environment: scripts/setup-extra.sh blender):
# 5.0, and 4.2 LTS, a build without sound (Audaspace), as some Blenders are.
BPY_PYTHONS = {"bpy": os.environ.get("DISTILFACE_BPY_PYTHON") or str(REPO / ".venv-bpy" / "bin" / "python"),
               "bpy42": os.environ.get("DISTILFACE_BPY42_PYTHON") or str(REPO / ".venv-bpy42" / "bin" / "python")}
# Blender runs on its own Python as a user's would: not this test's virtual environment (Debian's
# blender takes the first python3 on PATH as its prefix). Probes import the add-on's helpers.
BLENDER_ENV = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
BLENDER_ENV["PATH"] = "/usr/local/bin:/usr/bin:/bin"
BLENDER_ENV["DISTILFACE_ADDON_DIR"] = str(ADDON.parent)

# `blender -b --factory-startup [FILE.blend] --python SCRIPT | --python-expr EXPR -- ARGS` for the
# bpy module: open the file or the factory settings, then run the script with Blender's argv.
BPY_LAUNCH = r"""
import runpy, sys
import bpy
args = sys.argv[1:]
cut = args.index("--") if "--" in args else len(args)
head, script, expr, blend = args[:cut], None, None, None
i = 0
while i < len(head):
    if head[i] in ("--python", "--python-expr"):
        script, expr = (head[i + 1], None) if head[i] == "--python" else (None, head[i + 1])
        i += 2
    else:
        blend, i = head[i], i + 1
if blend:
    bpy.ops.wm.open_mainfile(filepath=blend)
else:
    bpy.ops.wm.read_factory_settings()
sys.argv = ["blender", *args]
if script:
    runpy.run_path(script, run_name="__main__")
else:
    exec(expr, {"__name__": "__main__"})
"""


def _command(kind: str, *args: str) -> list[str]:
    if kind == "blender":
        return [BLENDER, "-b", "--factory-startup", *args]
    return [BPY_PYTHONS[kind], "-c", BPY_LAUNCH, *args]


def _probe(kind: str) -> dict | None:
    """Whether this Blender runs (with numpy), and whether it was built with sound; None if absent."""
    if kind == "blender" and BLENDER is None or kind in BPY_PYTHONS and not Path(BPY_PYTHONS[kind]).exists():
        return None
    expr = "import bpy, json, numpy; print('PROBE', json.dumps({'sound': bpy.app.build_options.audaspace}))"
    r = subprocess.run(_command(kind, "--python-expr", expr), env=BLENDER_ENV, capture_output=True, text=True,
                       timeout=120)
    lines = [line for line in r.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(lines[0][6:]) if r.returncode == 0 and lines else None


PROBES = {kind: _probe(kind) for kind in ("blender", "bpy", "bpy42")}
KINDS = [pytest.param(kind, id=name, marks=pytest.mark.skipif(PROBES[kind] is None, reason=why))
         for kind, name, why in (
             ("blender", "blender-3.4", "Blender with numpy not installed (scripts/setup-extra.sh blender)"),
             ("bpy", "bpy-5.0", "bpy 5.0 not installed in .venv-bpy (scripts/setup-extra.sh blender)"),
             ("bpy42", "bpy-4.2", "bpy 4.2 not installed in .venv-bpy42 (scripts/setup-extra.sh blender)"))]


@pytest.fixture(params=KINDS)
def blender(request):
    """Runs a Blender (the Debian 3.4 binary, or a bpy module) as `blender -b ARGS` would;
    `.sound`: whether that build plays sound."""
    def run(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(_command(request.param, *args), env=env or BLENDER_ENV, capture_output=True,
                              text=True, timeout=timeout)
    run.command = lambda *args: _command(request.param, *args)
    run.sound = PROBES[request.param]["sound"]
    return run


# Read back inside Blender: everything the test compares, as JSON.
PROBE = r'''
import bpy, json, os, sys
sys.path.insert(0, os.environ["DISTILFACE_ADDON_DIR"])
from distilface_blender import fcurves
out, frames = sys.argv[-2], [int(f) for f in sys.argv[-1].split(",")]
sc = bpy.context.scene
face = [o for o in bpy.data.objects if o.type == "MESH"][0]
kb = face.data.shape_keys.key_blocks
doc = {"fps": sc.render.fps / sc.render.fps_base, "frame_start": sc.frame_start,
       "frame_end": sc.frame_end, "sync_mode": sc.sync_mode,
       "names": [k.name for k in kb][1:],
       "shapes": [[list(v.co) for v in k.data] for k in kb],
       "keyframes": {}, "values": [], "evaluated": {}, "sound": None}
for fc in fcurves(face.data.shape_keys.animation_data):
    doc["keyframes"][fc.data_path] = [list(p.co) for p in fc.keyframe_points]
for f in range(sc.frame_start, sc.frame_end + 1):
    sc.frame_set(f)
    doc["values"].append([k.value for k in kb][1:])
    if f in frames:
        mesh = face.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        doc["evaluated"][str(f)] = [list(v.co) for v in mesh.vertices]
ed = sc.sequence_editor
strips = list(ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all) if ed else []
if strips:
    s = strips[0]
    doc["sound"] = {"path": os.path.normpath(bpy.path.abspath(s.sound.filepath)), "frame_start": s.frame_start,
                    "frames": s.frame_final_duration}
json.dump(doc, open(out, "w"))
'''


def to_blender_m(mm: np.ndarray) -> np.ndarray:
    """The rig's millimetres (y up, facing +z, as in the .glb) -> Blender's metres, z up:
    the importer maps glTF (x, y, z) to (x, -z, y)."""
    m = np.asarray(mm, np.float64) * 1e-3
    return np.stack([m[..., 0], -m[..., 2], m[..., 1]], axis=-1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The example clip animated by the real CLI as .glb and as JSON (the same frames)."""
    d = tmp_path_factory.mktemp("blender")
    wav = d / "speech.wav"
    shutil.copy(EXAMPLE_WAV, wav)
    for out in ("face.glb", "face.json"):
        r = subprocess.run([*CLI, "animate", "speech.wav", "-o", out], cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return d, load_curves(d / "face.json")


def test_the_addon_opens_the_animation_with_its_speech(blender, clip, tmp_path):
    d, curves = clip
    rig = load_rig()
    blend = tmp_path / "face.blend"
    # From another directory: the sound file ("speech.wav", as animate was given it) is found beside
    # the .glb.
    r = r_import = blender("--python", str(ADDON), "--", str(d / "face.glb"), "--empty", "--save", str(blend))
    assert r.returncode == 0, r.stdout + r.stderr
    frames = curves.num_frames
    assert f"52 shape keys, frames 0..{frames - 1} at 30 fps" in r.stdout

    probe, dump = tmp_path / "probe.py", tmp_path / "dump.json"
    probe.write_text(PROBE)
    check = [0, 17, frames // 2, frames - 1]
    r = blender(str(blend), "--python", str(probe), "--", str(dump), ",".join(map(str, check)))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(dump.read_text())

    assert doc["fps"] == 30 and doc["frame_start"] == 0 and doc["frame_end"] == frames - 1
    assert doc["names"] == list(rig.names)
    shapes = np.array(doc["shapes"])  # (1 + 52, V, 3): the basis, then each key fully on
    np.testing.assert_allclose(shapes[0], to_blender_m(rig.neutral_mm), atol=1e-7)
    np.testing.assert_allclose(shapes[1:] - shapes[0], to_blender_m(rig.deltas_mm), atol=1e-7)

    # Keys on whole frames 0..T-1, and the value Blender plays at each frame is the curve's.
    weights = rig.weights(curves)  # (T, 52) in rig order
    for k, name in enumerate(rig.names):
        keys = np.array(doc["keyframes"][f'key_blocks["{name}"].value'])
        np.testing.assert_array_equal(keys[:, 0], np.arange(frames))
        np.testing.assert_allclose(keys[:, 1], weights[:, k], atol=1e-6)
    np.testing.assert_allclose(np.array(doc["values"]), weights, atol=1e-6)
    assert weights[:, rig.names.index("jawOpen")].max() > 0.1  # the clip is speech: the jaw moves
    for f in check:
        np.testing.assert_allclose(np.array(doc["evaluated"][str(f)]),
                                   to_blender_m(rig.vertices(weights[f])[0]), atol=1e-6)

    if not blender.sound:  # the animation without its speech, and a line that says why
        assert doc["sound"] is None
        assert f"built without sound (Audaspace): the animation is imported, the speech {d / 'speech.wav'} is not" \
            in r_import.stderr, r_import.stderr
        return
    seconds = sf.info(str(EXAMPLE_WAV)).duration
    assert doc["sound"]["path"] == str(d / "speech.wav")
    assert doc["sound"]["frame_start"] == 0
    assert abs(doc["sound"]["frames"] - seconds * 30) <= 1
    assert doc["sync_mode"] == "AUDIO_SYNC"


PLAIN_IMPORT = r'''
import bpy, json, os, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
sys.path.insert(0, sys.argv[-3])
import distilface_blender
distilface_blender._numpy_for_the_importer()  # Debian's numpy 1.24 (see the add-on)
bpy.ops.import_scene.gltf(filepath=sys.argv[-2])
face = bpy.data.objects["face"]
keys = {fc.data_path: [list(p.co) for p in fc.keyframe_points]
        for fc in distilface_blender.fcurves(face.data.shape_keys.animation_data)}
json.dump({"fps": bpy.context.scene.render.fps, "keys": keys}, open(sys.argv[-1], "w"))
'''


def test_blenders_own_importer_reads_the_names_and_values(blender, clip, tmp_path):
    """File > Import > glTF 2.0 in a default (24 fps) scene: the same values at the same times."""
    d, curves = clip
    rig = load_rig()
    script, dump = tmp_path / "plain.py", tmp_path / "plain.json"
    script.write_text(PLAIN_IMPORT)
    r = blender("--python", str(script), "--", str(ADDON.parent), str(d / "face.glb"), str(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(dump.read_text())
    assert doc["fps"] == 24
    weights = rig.weights(curves)
    for k, name in enumerate(rig.names):
        keys = np.array(doc["keys"][f'key_blocks["{name}"].value'])
        np.testing.assert_allclose(keys[:, 0], np.arange(len(weights)) * 24 / 30, atol=1e-4)
        np.testing.assert_allclose(keys[:, 1], weights[:, k], atol=1e-6)


def test_the_addon_names_the_file_and_the_problem(blender, tmp_path):
    still = write_face_glb(tmp_path / "still.glb")  # the face without an animation
    text = tmp_path / "notes.glb"
    text.write_text("not a model")
    for path, message in ((still, "no animation in the file"), (text, "not a glTF binary file")):
        r = blender("--python", str(ADDON), "--", str(path), "--empty")
        assert r.returncode == 1
        assert f"distilface: {path}: {message}" in r.stderr, r.stdout + r.stderr
    r = blender("--python", str(ADDON), "--", str(still), "--audio", str(tmp_path / "gone.wav"))
    assert f"{tmp_path / 'gone.wav'}: no such sound file" in r.stderr, r.stderr


def _addon_module():
    """The add-on read outside Blender (its Live Link decoder needs no bpy)."""
    sys.path.insert(0, str(ADDON.parent))
    try:
        import distilface_blender
    finally:
        sys.path.remove(str(ADDON.parent))
    return distilface_blender


def test_the_addons_live_link_decoder_reads_what_stream_sends():
    from distilface.rig.arkit import ARKIT_52
    from distilface.runtime.sinks import LiveLinkPacker

    addon = _addon_module()
    assert addon.ARKIT_ORDER == ARKIT_52
    names = tuple(reversed(ARKIT_52))  # the packer reorders by name
    values = np.linspace(0, 1, 52, dtype=np.float32)
    pack = LiveLinkPacker(names, 29.97, subject="Talker", device_id="dev")
    pack.start_frames = 1000.25
    got = addon.decode_livelink(pack(3, values))
    assert got["subject"] == "Talker" and got["fps"] == pytest.approx(30000 / 1001)
    assert got["frame"] == pytest.approx(1003.25, abs=1e-3)
    assert got["values"] == {n: pytest.approx(float(v)) for n, v in zip(names, values)}
    packet = pack(0, values)
    assert addon.decode_livelink(packet + b"\0")["values"]["jawOpen"] == got["values"]["jawOpen"]
    nan_sub = bytearray(packet)  # the float32 sub-frame follows the int32 frame after the two names
    at = 1 + 4 + len(b"dev") + 4 + len(b"Talker") + 4
    nan_sub[at: at + 4] = struct.pack(">f", float("nan"))
    for bad, message in ((packet[:-4], "not a Live Link Face packet"), (packet[:3], "not a Live Link"),
                         (bytes(nan_sub), "NaN or infinite"),
                         (b"\x05" + packet[1:], "version 5")):
        with pytest.raises(ValueError, match=message):
            addon.decode_livelink(bad)


LIVE_PROBE = r'''
import bpy, json, os, sys
sys.path.insert(0, os.environ["DISTILFACE_ADDON_DIR"])
from distilface_blender import fcurves
sc = bpy.context.scene
face = [o for o in bpy.data.objects if o.type == "MESH"][0]
keys = {fc.data_path: [list(p.co) for p in fc.keyframe_points]
        for fc in fcurves(face.data.shape_keys.animation_data)}
json.dump({"fps": sc.render.fps / sc.render.fps_base, "range": [sc.frame_start, sc.frame_end],
           "keys": keys}, open(sys.argv[-1], "w"))
'''


def test_the_addon_records_a_live_stream(blender, clip, tmp_path):
    """A real `distilface stream --output livelink` into the add-on's `--live --record` in Blender:
    every frame keyed on its own frame with the values the stream's NDJSON output shows. The face
    is an `animate` .glb: its own animation must not mix into the take."""
    import select
    import socket
    import time

    face = clip[0] / "face.glb"
    blend = tmp_path / "live.blend"
    rx = subprocess.Popen(blender.command("--python", str(ADDON), "--", str(face), "--empty", "--live", "0",
                                          "--record", "--idle-s", "3", "--wait-s", "150", "--save", str(blend)),
                          env=BLENDER_ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        port, deadline, seen = None, time.monotonic() + 120, []
        while port is None and time.monotonic() < deadline:  # never wait on a Blender that stalls
            if not select.select([rx.stdout], [], [], 1.0)[0]:
                continue
            line = rx.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "listening on UDP" in line:
                port = int(line.split()[-1])
        assert port, "Blender did not start listening: " + "".join(seen)[-2000:]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x06garbage", ("127.0.0.1", port))  # skipped and counted, not fatal
        # The add-on waits 150 s for a first packet: once (CI, the whole suite on 2 cores) it waited
        # 60 s and none came, though the stream ended well; alone the test takes 36 s.
        listening = time.monotonic()
        with open(tmp_path / "frames.ndjson", "w") as ndjson:
            stream = subprocess.run([*CLI, "stream", "--input", f"wav:{EXAMPLE_WAV}", "--output", "livelink",
                                     "--livelink-port", str(port), "--output", "ndjson"],
                                    stdout=ndjson, stderr=subprocess.PIPE, text=True, timeout=120)
        stream_s = time.monotonic() - listening
        assert stream.returncode == 0, stream.stderr
        out, _ = rx.communicate(timeout=180)
    finally:
        rx.kill()
    assert rx.returncode == 0, (f"{out}\nthe stream ended {stream_s:.1f} s after Blender listened; "
                                f"its stderr: {stream.stderr[-1500:]}")
    sent = [json.loads(line) for line in (tmp_path / "frames.ndjson").read_text().splitlines()]
    assert len(sent) == 99
    assert f"received 99 frames (1 malformed packets skipped), recorded 99" in out, out

    dump = tmp_path / "live.json"
    (tmp_path / "probe.py").write_text(LIVE_PROBE)
    r = blender(str(blend), "--python", str(tmp_path / "probe.py"), "--", str(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(dump.read_text())
    assert doc["fps"] == 30 and doc["range"] == [1, 99]  # from the scene's current frame, 1
    for name in ("jawOpen", "mouthClose", "mouthFunnel", "eyeBlinkLeft"):
        keys = np.array(doc["keys"][f'key_blocks["{name}"].value'])
        np.testing.assert_array_equal(keys[:, 0], np.arange(1, 100))
        np.testing.assert_allclose(keys[:, 1], [f["blendshapes"][name] for f in sent], atol=1e-6)
    assert max(f["blendshapes"]["jawOpen"] for f in sent) > 0.2  # speech opens the jaw


REGISTERED = r'''
import addon_utils, bpy, json, sys
addon, glb, bad, out = sys.argv[-4:]
bpy.ops.wm.read_factory_settings(use_empty=True)
# As a user installs it: Preferences > Add-ons > Install (from Disk), then the checkbox.
doc = {"install": list(bpy.ops.preferences.addon_install(filepath=addon))}
distilface_blender = addon_utils.enable("distilface_blender", default_set=True)
doc["where"] = distilface_blender.__file__
doc.update({"ops": [hasattr(bpy.ops.distilface, "live"), hasattr(bpy.ops.distilface, "live_stop")],
       "port": bpy.context.scene.distilface_port})
doc["import"] = list(bpy.ops.import_anim.distilface_glb(filepath=glb))
sc = bpy.context.scene
doc["scene"] = [sc.render.fps, sc.frame_start, sc.frame_end, len(distilface_blender.sound_strips(sc))]
try:
    bpy.ops.import_anim.distilface_glb(filepath=bad)
except RuntimeError as e:  # a background operator's error report
    doc["error"] = str(e)
addon_utils.disable("distilface_blender", default_set=True)
doc["after"] = hasattr(bpy.types.Scene, "distilface_port")
json.dump(doc, open(out, "w"))
'''


def test_the_addon_installs_and_its_import_operator_runs(blender, clip, tmp_path):
    d, curves = clip
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF")
    (tmp_path / "reg.py").write_text(REGISTERED)
    out = tmp_path / "reg.json"
    # Installed into this test's own user scripts folder, not the machine's.
    r = blender("--python", str(tmp_path / "reg.py"), "--", str(ADDON), str(d / "face.glb"), str(bad), str(out),
                env={**BLENDER_ENV, "HOME": str(tmp_path), "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts")})
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["install"] == ["FINISHED"]
    assert doc["where"] == str(tmp_path / "scripts" / "addons" / "distilface_blender.py")
    assert doc["ops"] == [True, True] and doc["port"] == 11111
    assert doc["import"] == ["FINISHED"]
    assert doc["scene"] == [30, 0, curves.num_frames - 1, 1 if blender.sound else 0]
    assert f"{bad}: not a glTF binary file (only 4 bytes)" in doc["error"]
    assert doc["after"] is False
