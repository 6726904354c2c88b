"""The Godot addon (engines/godot/addons/distilface) in a real, headless Godot 3 against a real
`distilface stream --output ws`: every frame arrives in order with the values the NDJSON output
of the same stream carries, and the newest frame ends up on the mesh's blend shapes, matched by
name case-insensitively (a curve the mesh lacks is skipped, a shape no curve names stays 0)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from distilface.audio import EXAMPLE_AUDIO

ROOT = Path(__file__).resolve().parents[1]
GODOT = os.environ.get("DISTILFACE_GODOT") or shutil.which("godot3-server") or shutil.which("godot3")
pytestmark = pytest.mark.skipif(GODOT is None, reason="Godot 3 not installed (scripts/setup.sh: godot3-server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_godot_receiver_applies_the_streams_frames(tmp_path):
    port = _free_port()
    cli = [sys.executable, "-m", "distilface.cli"] if not shutil.which("distilface") else ["distilface"]
    ndjson_path = tmp_path / "frames.ndjson"  # a file: a pipe left unread would stall the stream
    with open(ndjson_path, "w") as ndjson_file:
        server = subprocess.Popen([*cli, "stream", "--input", f"wav:{EXAMPLE_AUDIO}", "--output", "ws", "--output",
                                   "ndjson", "--ws-port", str(port), "--wait-viewers", "1"],
                                  stdout=ndjson_file, stderr=subprocess.PIPE, text=True)
    try:
        env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}  # Godot's user:// here
        out = tmp_path / "got.json"
        godot = subprocess.run([GODOT, "--no-window", "--path", str(ROOT / "engines" / "godot"), "--script",
                                "res://test/receive_test.gd", f"url=ws://127.0.0.1:{port}/frames", f"out={out}",
                                "timeout_s=60"], capture_output=True, text=True, timeout=120, env=env,
                               cwd=tmp_path)
        _, err = server.communicate(timeout=60)
        ndjson = ndjson_path.read_text()
    finally:
        server.kill()
    assert server.returncode == 0, err
    got = json.loads(out.read_text())
    assert godot.returncode == 0 and not got["timed_out"], godot.stderr
    sent = [json.loads(line) for line in ndjson.splitlines()]
    assert len(sent) == 99 and [r["frame"] for r in got["received"]] == list(range(99))
    for r, s in zip(got["received"], sent):
        assert r["jawOpen"] == s["blendshapes"]["jawOpen"] and r["mouthClose"] == s["blendshapes"]["mouthClose"]
    assert max(r["jawOpen"] for r in got["received"]) > 0.2  # speech opens the jaw
    last = sent[-1]["blendshapes"]
    assert got["last"]["blendshapes"] == last
    assert got["mesh"]["jawOpen"] == pytest.approx(last["jawOpen"], abs=1e-6)
    assert got["mesh"]["MouthClose"] == pytest.approx(last["mouthClose"], abs=1e-6)  # "mouthClose" by case
    assert got["mesh"]["notACurve"] == 0
