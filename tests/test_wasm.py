"""The C runtime compiled to WebAssembly (distilface.runtime.wasm) and driven by the browser
viewer's and the web kit's module (runtime/js/distilface.js), run in Node: frames equal the torch student's offline
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
    spec = {"wasm": str(wasm_path), "dfn": str(dfn), "audio": str(tmp_path / "audio.f32"),
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
    # no WASI runtime needed: only stdio's few imports, which distilface.js answers with ENOSYS
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


# -- the web kit (`export --native --engine-kit --kit-target web`) --------------------------------

def _pcm(rate):
    x = resample(AUDIO, 16000, rate)
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")


@pytest.fixture(scope="module")
def web_kit(tmp_path_factory, wasm_file):
    import torch

    from distilface.checkpoint import save_checkpoint
    from distilface.cli import main
    from distilface.student import StudentConfig, build_student

    d = tmp_path_factory.mktemp("webkit")
    torch.manual_seed(0)
    student = build_student(StudentConfig(channels=16, context_groups=8)).eval()
    save_checkpoint(d / "tiny.pt", student)
    main(["export", str(d / "tiny.pt"), "--native", "-o", str(d / "kit" / "m.dfn"), "--engine-kit",
          "--kit-target", "web"])
    return d / "kit", student


def test_web_kit_files_and_sums(web_kit):
    import hashlib

    from distilface.cli import main

    kit, _ = web_kit
    meta = json.loads((kit / "kit.json").read_text())
    assert (meta["target"], meta["machine"]) == ("web", "wasm32") and "-msimd128" in meta["step_flags"]
    assert set(meta["files"]) == {"m.dfn", "distilface.wasm", "distilface.js", "example.mjs", "example.html"}
    for name, f in meta["files"].items():
        data = (kit / name).read_bytes()
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert (kit / "distilface.js").read_bytes() == (wasm.JS_DIR / "distilface.js").read_bytes()
    with pytest.raises(SystemExit, match="no --march"):
        main(["export", str(kit.parent / "tiny.pt"), "--native", "-o", str(kit.parent / "x" / "m.dfn"),
              "--engine-kit", "--kit-target", "web", "--march", "native"])
    assert not (kit.parent / "x").exists()  # refused before anything is written


def test_web_kit_node_example_streams_like_torch(web_kit):
    """example.mjs as its comment runs it: 16-bit PCM on stdin at 48, 16 and 44.1 kHz -> CSV."""
    kit, s = web_kit
    for rate, fps, smooth in ((48000, 30.0, False), (16000, 60.0, True), (44100, 30.0, True)):
        pcm = _pcm(rate)
        r = subprocess.run([NODE, str(kit / "example.mjs"), str(kit / "m.dfn"), f"{fps:g}", str(rate)]
                           + (["smooth"] if smooth else []), input=pcm.tobytes(), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().splitlines()
        assert lines[0].split(",") == ["frame", "time_s", *s.cfg.names]
        got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
        want = animate_audio(EnsembleSmoothed(s) if smooth else s,
                             resample(pcm.astype(np.float32) / 32768, rate, 16000), fps).values
        assert got.shape == (len(want), 2 + len(s.cfg.names))
        np.testing.assert_array_equal(got[:, 0], np.arange(len(want)))
        np.testing.assert_allclose(got[:, 1], np.arange(len(want)) / fps, atol=1e-6)
        np.testing.assert_allclose(got[:, 2:], want, atol=1e-4, rtol=0)
    (kit.parent / "bad.dfn").write_bytes((kit / "m.dfn").read_bytes()[:40])
    for args, message in (([str(kit.parent / "bad.dfn")], "example: bad.dfn: truncated header"),
                          ([str(kit / "m.dfn"), "30", "16001"], "cannot stream 16001 Hz audio: sample rate not supported"),
                          ([str(kit.parent / "none.dfn")], "none.dfn"),
                          ([], "usage: node example.mjs MODEL.dfn")):
        r = subprocess.run([NODE, str(kit / "example.mjs"), *args], input=b"", capture_output=True, timeout=60)
        assert r.returncode in (1, 2) and message in r.stderr.decode(), r.stderr.decode()


def test_web_kit_page_example_in_chromium(web_kit, tmp_path):
    """example.html served as its comment says (a plain HTTP server on the kit folder), in headless
    Chromium: a 48 kHz stereo WAV -> the torch student's frames (mono mix, resample_poly); the
    fake microphone at the device's rate -> frames."""
    import functools
    import http.server
    import threading

    import soundfile as sf
    from test_view import CHROMIUM, CHROMIUM_ARGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed (requirements.lock pins it)")
    if CHROMIUM is None:
        pytest.skip("Debian chromium not installed (scripts/setup.sh installs it)")
    kit, s = web_kit
    x = resample(AUDIO, 16000, 48000)
    sf.write(tmp_path / "speech48k.wav", np.stack([x, 0.25 * x], axis=1), 48000, subtype="PCM_16")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(kit))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"http://127.0.0.1:{srv.server_address[1]}/example.html")
            page.evaluate("window.kit.ready.then(() => true)")
            page.set_input_files("#file", str(tmp_path / "speech48k.wav"))
            page.wait_for_function("window.kit.result !== null", timeout=60_000)
            got = page.evaluate("window.kit.result")
            assert "error" not in got, got
            assert got["names"] == list(s.cfg.names) and got["rateHz"] == 48000
            want = animate_audio(s, load_audio(tmp_path / "speech48k.wav"), 30.0).values
            values = np.asarray(got["frames"])
            assert values.shape == want.shape
            np.testing.assert_allclose(values, want, atol=1e-4, rtol=0)
            assert page.locator("#csv").get_attribute("href").startswith("blob:")
            page.click("#mic")
            page.wait_for_function("window.kit.mic.frames >= 10", timeout=30_000)
            device_hz = page.evaluate("(async () => { const c = new AudioContext(); const r = c.sampleRate; "
                                      "await c.close(); return r; })()")
            assert page.evaluate("window.kit.mic.rateHz") == device_hz
            page.click("#mic")
            page.wait_for_function("!window.kit.mic.running", timeout=10_000)
        finally:
            browser.close()
            srv.shutdown()
    assert problems == []


def test_web_kit_stream_lifetime_and_bad_samples(web_kit):
    """distilface.js's stream handle: free() twice is a no-op, any call after it throws (the module
    may have handed its memory to another stream); a refused rate leaks nothing; NaN and infinite
    samples are silence (the C stream zeroes them)."""
    kit, _ = web_kit
    script = kit / "lifetime.mjs"
    script.write_text(f"""
import {{ readFileSync }} from "node:fs";
import {{ WasmModel }} from "./distilface.js";
const model = await WasmModel.fromBytes(readFileSync("distilface.wasm"), readFileSync("m.dfn"), {{ name: "m" }});
const out = {{}};
const s = model.stream(30), other = model.stream(30);
s.free(); s.free();
try {{ s.push(new Float32Array(16000)); out.pushAfterFree = "no error"; }} catch (e) {{ out.pushAfterFree = e.message; }}
try {{ s.reset(); out.resetAfterFree = "no error"; }} catch (e) {{ out.resetAfterFree = e.message; }}
out.otherFrames = other.push(new Float32Array(16000)).length;  // untouched by the freed stream
const before = model.x.memory.buffer.byteLength;
for (let i = 0; i < 2000; i++) model.supportsRate(16001);
out.memoryGrowth = model.x.memory.buffer.byteLength - before;
const x = new Float32Array(16000).map((_, i) => 0.3 * Math.sin(0.05 * i)), z = x.slice();
for (let i = 4000; i < 4010; i++) {{ x[i] = i % 2 ? NaN : Infinity; z[i] = 0; }}
const a = model.stream(30), b = model.stream(30);
const fa = [...a.push(x), ...a.finish()], fb = [...b.push(z), ...b.finish()];
out.frames = fa.length;
out.finite = fa.every((f) => f.every(Number.isFinite));
out.equal = fa.length === fb.length && fa.every((f, k) => f.every((v, j) => v === fb[k][j]));
console.log(JSON.stringify(out));
""")
    r = subprocess.run([NODE, str(script)], cwd=kit, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["pushAfterFree"] == got["resetAfterFree"] == "stream: used after free()"
    assert got["otherFrames"] == 23  # one second pushed: the frames whose 256 ms of future are in
    assert got["memoryGrowth"] == 0
    assert got["frames"] == 30 and got["finite"] and got["equal"]
