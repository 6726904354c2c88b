"""The C runtime compiled to WebAssembly (distilface.runtime.wasm) and driven by the browser
viewer's own module (web/src/native.js), run in Node: frames equal the torch student's offline
frames for any chunking, at 16 and 48 kHz, with and without smoothing; bad model files fail with
the C loader's message; the build is atomic and says what is missing. The in-browser run is in
tests/test_view.py."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distilface.animate import animate_audio
from distilface.audio import EXAMPLE_AUDIO, load_audio, resample
from distilface.checkpoint import load_student
from distilface.models import resolve_model
from distilface.runtime import wasm
from distilface.runtime.native import save_native
from distilface.smoothing import EnsembleSmoothed
from distilface.student import on_frame_grid

ROOT = Path(__file__).resolve().parents[1]
NATIVE_JS = ROOT / "web" / "src" / "native.js"
RUNNER = ROOT / "scripts" / "wasm_stream.mjs"
AUDIO = load_audio(EXAMPLE_AUDIO)[: 16000 * 3]
NODE = shutil.which("node") or shutil.which("nodejs")


@pytest.fixture(scope="module")
def wasm_file(tmp_path_factory):
    if NODE is None:
        pytest.skip("needs Node.js (scripts/setup.sh installs it)")
    try:
        return wasm.build_wasm(tmp_path_factory.mktemp("wasm") / "distilface.wasm")
    except wasm.WasmUnavailable as e:
        pytest.skip(str(e).splitlines()[0])


def run_node(tmp_path, wasm_path, dfn, audio, fps=30.0, rate_hz=16000, smooth=False, chunks=(16000,)):
    (tmp_path / "audio.f32").write_bytes(np.asarray(audio, np.float32).tobytes())
    spec = {"native": str(NATIVE_JS), "wasm": str(wasm_path), "dfn": str(dfn), "audio": str(tmp_path / "audio.f32"),
            "out": str(tmp_path / "frames.f32"), "fps": fps, "rateHz": rate_hz, "smooth": smooth,
            "chunks": list(chunks)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([NODE, str(RUNNER), str(tmp_path / "spec.json")], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip())
    info = json.loads(proc.stdout)
    frames = np.fromfile(tmp_path / "frames.f32", np.float32).reshape(info["frames"], len(info["names"]))
    return info, frames


CASES = {
    # the shipped default (log-mel front end) and the shipped C0/4 on the grid the viewer streams on
    "default 30 fps": ("default", 1, 30.0, 16000, False, (16000,)),
    "default 60 fps smoothed, 20 ms pushes": ("default", 1, 60.0, 16000, True, (320,)),
    "c0-4 grid 80, odd pushes": ("c0-4-256ms-ft", 80, 30.0, 16000, False, (1, 777, 4096, 50)),
    "c0-4 grid 80, 48 kHz microphone blocks": ("c0-4-256ms-ft", 80, 30.0, 48000, True, (1024,)),
}


@pytest.mark.parametrize("case", CASES)
def test_wasm_streams_equal_to_torch(tmp_path, wasm_file, case):
    model, grid, fps, rate, smooth, chunks = CASES[case]
    student = on_frame_grid(load_student(resolve_model(None if model == "default" else model))[0].eval(), grid)
    dfn = save_native(student, tmp_path / "m.dfn")
    x = resample(AUDIO, 16000, rate)
    info, got = run_node(tmp_path, wasm_file, dfn, x, fps, rate, smooth, chunks)
    assert info["names"] == list(student.cfg.names)
    weights = (0.25, 0.5, 0.25)
    want = animate_audio(EnsembleSmoothed(student, weights) if smooth else student,
                         resample(x, rate, 16000), fps).values
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)  # measured: up to 8e-7 (docs/viewer.md)


def test_wasm_bad_model_files_fail_with_the_loaders_message(tmp_path, wasm_file):
    student = load_student(resolve_model("c0-4-256ms-ft"))[0].eval()
    good = save_native(student, tmp_path / "good.dfn").read_bytes()
    for name, data, message in (("npz.dfn", b"PK\x03\x04" + good[4:], "not a DistilFace native model"),
                                ("cut.dfn", good[:100], "truncated header"),
                                ("long.dfn", good + b"\x00", "unexpected data after the weights")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RuntimeError, match=f"^m.dfn: {message}"):
            run_node(tmp_path, wasm_file, tmp_path / name, AUDIO[:4000])
    with pytest.raises(RuntimeError, match="cannot stream 16001 Hz audio: sample rate not supported"):
        run_node(tmp_path, wasm_file, tmp_path / "good.dfn", AUDIO[:4000], rate_hz=16001)


def test_wasm_build_is_atomic_and_names_what_is_missing(tmp_path, monkeypatch, wasm_file):
    data = wasm_file.read_bytes()
    assert data[:4] == b"\0asm"
    imports = subprocess.run([NODE, "-e", f"""
        const m = new WebAssembly.Module(require("fs").readFileSync({json.dumps(str(wasm_file))}));
        console.log(JSON.stringify(WebAssembly.Module.imports(m).map((i) => i.module + "." + i.name)));
        console.log(JSON.stringify(WebAssembly.Module.exports(m).map((e) => e.name)));"""],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    # no WASI runtime needed: only stdio's few imports, which native.js answers with ENOSYS
    assert set(json.loads(imports[0])) <= {"wasi_snapshot_preview1.fd_close", "wasi_snapshot_preview1.fd_seek",
                                           "wasi_snapshot_preview1.fd_write"}
    assert set(wasm.EXPORTS) <= set(json.loads(imports[1]))
    monkeypatch.setenv("DISTILFACE_WASM_CC", str(tmp_path / "no-such-clang"))
    out = tmp_path / "x.wasm"
    out.write_bytes(b"previous")
    with pytest.raises(wasm.WasmUnavailable, match="no-such-clang"):
        wasm.build_wasm(out)
    assert out.read_bytes() == b"previous"  # a failed build leaves what was there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wasm"]
