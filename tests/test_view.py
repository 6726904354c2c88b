"""`distilface view`: the local server, and the page in headless Chromium driven by Playwright.

Needs the built page (scripts/setup.sh: `npm ci` + `node build.mjs` in web/) and, for the browser
tests, Debian's `chromium` and the `playwright` Python package (its own browsers are never
downloaded: Playwright drives the system Chromium). Skipped, with the reason, when one is missing.
One server and one page serve the whole module; the ONNX export lands in a temporary cache.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from distilface.audio import EXAMPLE_AUDIO
from distilface.view import STATIC_DIR, ViewConfig, Viewer, make_server, static_ready

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--autoplay-policy=no-user-gesture-required",  # the tests play audio without a click
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL on the CPU: same pixels everywhere
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a fake microphone, no prompt
    f"--use-file-for-fake-audio-capture={EXAMPLE_AUDIO}",  # that says the example clip, over and over
]
EXAMPLE_PHONES = EXAMPLE_AUDIO.with_suffix(".phones.tsv")
VIEWPORT = {"width": 1200, "height": 800}
INFERENCE_TOLERANCE = 1e-4  # onnxruntime-web vs torch `animate_audio`, max abs over all curves and frames
MOUTH_DIFF_MIN = 8.0  # mean abs difference of the mouth crops (0..255 levels), closure vs open vowel
SAME_DIFF_MAX = 0.5  # the same time shot twice

needs_build = pytest.mark.skipif(not static_ready(), reason=f"viewer not built ({STATIC_DIR}): run scripts/setup.sh")
try:
    import playwright.sync_api  # noqa: F401

    _why_no_browser = None if CHROMIUM else "Debian chromium not installed (scripts/setup.sh installs it)"
except ImportError:
    _why_no_browser = "playwright not installed (requirements.lock pins it)"
needs_browser = pytest.mark.skipif(_why_no_browser is not None or not static_ready(),
                                   reason=_why_no_browser or f"viewer not built ({STATIC_DIR}): run scripts/setup.sh")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("view-cache")


@pytest.fixture(scope="module")
def server(cache_dir):
    srv = make_server(ViewConfig(port=0, cache_dir=cache_dir))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Console:
    """Console messages and uncaught exceptions of a page; `problems()` lists errors and warnings."""

    def __init__(self, page) -> None:
        self.messages: list[tuple[str, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))

    def problems(self) -> list[tuple[str, str]]:
        return [(t, m) for t, m in self.messages if t in ("error", "warning", "pageerror")]


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport=VIEWPORT)
        console = Console(pg)
        pg.goto(server.url)
        pg.evaluate("window.distilface.ready")
        yield pg, console
        browser.close()


@pytest.fixture
def page(browser_page):
    return browser_page[0]


@pytest.fixture
def console(browser_page):
    return browser_page[1]


def _next_frame(page) -> None:
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _python_curves(path=EXAMPLE_AUDIO):
    """The shipped default's offline curves of an audio file (torch; the example clip by default),
    the tests' reference: `load_audio` mixes to mono and resamples with resample_poly."""
    import torch

    from distilface.animate import animate_audio
    from distilface.audio import load_audio
    from distilface.checkpoint import load_student
    from distilface.models import resolve_model

    torch.set_num_threads(1)
    model, _ = load_student(resolve_model(None))
    return animate_audio(model, load_audio(path), 30.0)


def _mouth_frames(curves) -> tuple[int, int]:
    """(bilabial closure, open vowel) frames of the example: the smallest lip gap of the rig inside a
    /p b m/ and the largest inside an open vowel, by the clip's phone timings."""
    from distilface.phones import BILABIALS, OPEN_VOWELS, read_phones
    from distilface.rig.mesh import load_rig

    gap = load_rig().lip_gap_mm(curves)
    times = curves.times_s
    phones = read_phones(EXAMPLE_PHONES)

    def inside(kinds):
        return np.array([any(s.start_s <= t < s.end_s and s.phone in kinds for s in phones) for t in times])

    closure = np.flatnonzero(inside(BILABIALS))[np.argmin(gap[inside(BILABIALS)])]
    vowel = np.flatnonzero(inside(OPEN_VOWELS))[np.argmax(gap[inside(OPEN_VOWELS)])]
    assert gap[closure] < 0.5 and gap[vowel] > 5.0, (gap[closure], gap[vowel])  # the curves do close and open
    return int(closure), int(vowel)


def _shot(page, rect: dict) -> np.ndarray:
    from PIL import Image

    png = page.screenshot(clip=rect)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


# -- the server alone -------------------------------------------------------------------------

def test_viewer_needs_the_built_page(tmp_path):
    with pytest.raises(FileNotFoundError, match="not built"):
        Viewer(ViewConfig(static_dir=tmp_path, cache_dir=tmp_path))


@needs_build
def test_the_microphone_page_opens_with_the_live_default(cache_dir):
    """--mode browser (the student in the page, on the microphone) selects the live default first;
    the other modes the offline default, and --model wins in every mode."""
    from distilface.models import registry

    reg = registry()
    for mode, model, want in (("browser", None, reg["live_default"]), ("clip", None, reg["default"]),
                              ("live", None, reg["default"]), ("browser", "c0-4-256ms-ft", "c0-4-256ms-ft")):
        config = Viewer(ViewConfig(mode=mode, model=model, cache_dir=cache_dir)).config()
        assert config["default_model"] == want, mode
        assert [m["name"] for m in config["models"] if m["default"]] == [want]


@needs_build
def test_server_binds_localhost_with_mime_types(server):
    assert server.server_address[0] == "127.0.0.1"
    base = server.url
    want = {"": "text/html", "app.js": "text/javascript", "app.css": "text/css",
            "ort/ort-wasm-simd-threaded.mjs": "text/javascript", "ort/ort-wasm-simd-threaded.wasm": "application/wasm",
            "face.glb": "model/gltf-binary", "config.json": "application/json", "clip/audio.wav": "audio/wav",
            "models/whisper-conv-256ms-ft.json": "application/json", "models/whisper-conv-256ms-ft.onnx": "application/octet-stream"}
    bodies = {}
    for path, ctype in want.items():
        status, headers, body = _get(base + path)
        assert status == 200, (path, body[:200])
        assert headers["Content-Type"].split(";")[0] == ctype, path
        bodies[path] = body
    assert bodies["ort/ort-wasm-simd-threaded.wasm"][:4] == b"\0asm"
    assert bodies["face.glb"][:4] == b"glTF"
    config = json.loads(bodies["config.json"])
    assert config["default_model"] == "whisper-conv-256ms-ft" and {m["name"] for m in config["models"]} >= {"whisper-conv-256ms-ft"}
    meta = json.loads(bodies["models/whisper-conv-256ms-ft.json"])
    assert meta["graph"] == "windowed" and len(meta["names"]) == 52
    assert meta["lookahead_samples"] == meta["span_samples"] - meta["past_samples"] == 3984  # docs/runtime.md
    # the <audio> element seeks with byte ranges
    status, headers, body = _get(base + "clip/audio.wav", {"Range": "bytes=4-11"})
    assert status == 206 and body == bodies["clip/audio.wav"][4:12]
    assert headers["Content-Range"] == f"bytes 4-11/{len(bodies['clip/audio.wav'])}"
    # nothing outside the built page, no unknown models
    for path in ("../view.py", "%2e%2e/view.py", "models/nope.json", "nothing.html"):
        assert _get(base + path)[0] == 404, path


@needs_build
def test_port_taken_is_one_clear_error(server, cache_dir):
    with pytest.raises(ValueError, match="cannot listen"):
        make_server(ViewConfig(port=server.server_address[1], cache_dir=cache_dir), prepare=False)


@needs_build
def test_view_cli_prints_url(cache_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "distilface.cli", "view", "--port", "0", "--no-browser",
                             "--cache-dir", str(cache_dir), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"distilface view: (http://127\.0\.0\.1:\d+/)\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        status, _, body = _get(m.group(1) + "config.json")
        assert status == 200 and json.loads(body)["clip"]["name"] == EXAMPLE_AUDIO.name
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- the page ---------------------------------------------------------------------------------

@needs_browser
def test_page_loads_without_console_errors(page, console):
    state = page.evaluate("window.distilface.state()")
    assert state["mode"] == "clip" and state["model"] == "whisper-conv-256ms-ft"
    assert state["clipFrames"] == 99  # 3.29 s at 30 fps
    assert "256 ms future context" in state["latency"] and "249.0 ms" in state["latency"]
    assert page.evaluate("Object.keys(window.distilface.weights()).length") == 52
    assert console.problems() == []


@needs_browser
def test_model_selector(page, console):
    """Another shipped model: its curves of the clip, its latency; then back to the default."""
    other = "c0-2-256ms"
    page.select_option("#model", other)
    # the server exports it on first use, then the page loads the clip's curves from it
    page.wait_for_function(f"document.getElementById('clip-status').textContent.endsWith('from {other}')", timeout=60_000)
    state = page.evaluate("window.distilface.state()")
    assert state["latency"].startswith(f"{other}: 256 ms future context") and state["clipFrames"] == 99
    page.evaluate("window.distilface.selectModel('whisper-conv-256ms-ft')")
    assert page.evaluate("window.distilface.state().model") == "whisper-conv-256ms-ft"
    assert console.problems() == []


@needs_browser
def test_plays_the_clip(page, console, server):
    page.evaluate("window.distilface.play()")
    page.wait_for_function("window.distilface.clipTime() > 0.6", timeout=10_000)
    page.evaluate("window.distilface.pause()")
    _next_frame(page)
    t = page.evaluate("window.distilface.clipTime()")
    # while playing, the face followed the curves: what it shows now is the curves at the audio's time
    curves = json.loads(_get(server.url + "clip/curves.json")[2])
    k = round(t * curves["fps"])
    shown = page.evaluate("window.distilface.weights().jawOpen")
    jaw = [f[curves["names"].index("jawOpen")] for f in curves["frames"]]
    assert min(jaw[k - 1:k + 2]) - 1e-6 <= shown <= max(jaw[k - 1:k + 2]) + 1e-6
    assert console.problems() == []


@needs_browser
def test_mouth_closure_and_open_vowel_look_different(page, console):
    curves = _python_curves()
    closure, vowel = _mouth_frames(curves)
    rect = page.evaluate("window.distilface.mouthRect()")
    shots = {}
    for name, k in (("closure", closure), ("vowel", vowel), ("closure again", closure)):
        weights = page.evaluate(f"window.distilface.seek({k} / 30)")
        assert weights["jawOpen"] == pytest.approx(curves.channel("jawOpen")[k], abs=1e-3)
        shots[name] = _shot(page, rect)
    differ = np.abs(shots["closure"] - shots["vowel"]).mean()
    same = np.abs(shots["closure"] - shots["closure again"]).mean()
    assert differ > MOUTH_DIFF_MIN, differ
    assert same < SAME_DIFF_MAX, same
    assert console.problems() == []


@needs_browser
def test_in_browser_inference_matches_python(page, console):
    """Mode 3 on the example clip (16 kHz: the browser does not resample it) == `animate_audio`."""
    page.click("button[data-mode=browser]")
    page.set_input_files("#browser-file", str(EXAMPLE_AUDIO))
    page.wait_for_function("window.distilface.browser().frames > 0", timeout=60_000)
    got = page.evaluate("window.distilface.browser(true)")
    want = _python_curves()
    assert got["curves"]["names"] == list(want.names)
    values = np.asarray(got["curves"]["frames"], dtype=np.float64)
    assert values.shape == want.values.shape == (99, 52)
    assert np.abs(values - want.values).max() < INFERENCE_TOLERANCE
    assert got["msPerFrame"] > 0
    # the C runtime as WebAssembly wherever this machine builds it (scripts/setup.sh installs clang)
    assert got["runtime"] == ("wasm" if _wasm_builds() else "onnxruntime-web")
    assert console.problems() == []


@needs_browser
def test_in_browser_file_at_44k_stereo_resampled_as_python(page, console, tmp_path):
    """A 44.1 kHz stereo WAV in mode 3: the page decodes it at the rate its header declares and the
    WebAssembly runtime resamples it in C, so frames equal Python's (mono mix, resample_poly)."""
    import soundfile as sf

    from distilface.audio import load_audio, resample

    if not _wasm_builds():
        pytest.skip("needs the WebAssembly runtime (clang for wasm32-wasi): onnxruntime-web takes the "
                    "browser's resampler")
    x = resample(load_audio(EXAMPLE_AUDIO), 16000, 44100)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), 44100, subtype="PCM_16")
    page.click("button[data-mode=browser]")
    page.set_input_files("#browser-file", str(path))
    page.wait_for_function("window.distilface.browser().frames > 0", timeout=60_000)
    got = page.evaluate("window.distilface.browser(true)")
    assert (got["runtime"], got["rateHz"]) == ("wasm", 44100)
    want = _python_curves(path)
    values = np.asarray(got["curves"]["frames"], dtype=np.float64)
    assert values.shape == want.values.shape
    print(f"44.1 kHz stereo through the page: largest difference {np.abs(values - want.values).max():.1e}")
    assert np.abs(values - want.values).max() < INFERENCE_TOLERANCE
    assert console.problems() == []


@functools.lru_cache(maxsize=1)
def _wasm_builds() -> bool:
    from distilface.runtime.wasm import builds_here

    return builds_here()


@needs_browser
def test_both_browser_runtimes_match_python(server, browser_page):
    """The served clip through each runtime the page has (`?runtime=onnx` forces onnxruntime-web's
    windowed graph; by default the C runtime as WebAssembly): the frames of `animate_audio`. Prints
    their ms per frame (docs/viewer.md)."""
    want = _python_curves()
    browser = browser_page[0].context.browser
    for runtime in ["onnx", "wasm"] if _wasm_builds() else ["onnx"]:
        pg = browser.new_page(viewport=VIEWPORT)
        try:
            console = Console(pg)
            pg.goto(server.url + ("?runtime=onnx" if runtime == "onnx" else ""))
            pg.evaluate("window.distilface.ready")
            got = pg.evaluate("window.distilface.inferClip()")
            values = np.asarray(got["frames"], dtype=np.float64)
            assert got["runtime"] == {"onnx": "onnxruntime-web", "wasm": "wasm"}[runtime]
            assert values.shape == want.values.shape
            assert np.abs(values - want.values).max() < INFERENCE_TOLERANCE
            print(f"{got['runtime']}: {got['msPerFrame']:.3f} ms per frame, largest difference "
                  f"{np.abs(values - want.values).max():.1e}")
            assert console.problems() == []
        finally:
            pg.close()


@needs_browser
def test_in_browser_microphone(page, console, tmp_path):
    """Mode 3 live: Chromium's fake microphone -> AudioWorklet -> the student -> frames; with the
    WebAssembly runtime at the device's own rate (resampled in C), with onnxruntime-web at 16 kHz."""
    page.click("button[data-mode=browser]")
    page.click("#mic-toggle")
    # the clip is 3.3 s (99 frames): 7 s of microphone hold at least one whole pass of it
    page.wait_for_function("window.distilface.browser().frames >= 210", timeout=60_000)
    got = page.evaluate("window.distilface.browser(true)")
    device_hz = page.evaluate("(async () => { const c = new AudioContext(); const r = c.sampleRate; await c.close(); return r; })()")
    assert got["rateHz"] == (device_hz if got["runtime"] == "wasm" else 16000)
    # The frames are the clip's, as `animate` makes them: the microphone's clip, repeated, against
    # the same clip repeated and animated offline at 10 x the frame rate, at the offset that fits
    # best (the capture's start is not known to the frame, nor to the sub-frame)
    import soundfile as sf

    import distilface
    from distilface.audio import load_audio

    names = got["curves"]["names"]
    live = np.array(got["curves"]["frames"])
    tiled = tmp_path / "tiled.wav"
    sf.write(tiled, np.tile(load_audio(EXAMPLE_AUDIO), 4), 16000, subtype="FLOAT")
    fine = distilface.animate_file(distilface.load_model(page.evaluate("window.distilface.state().model")), tiled,
                                   fps=300.0, progress=False)
    ref = fine.values[:, [fine.names.index(n) for n in names]]
    seg = live[-99:]  # the last clip's length of frames: the first ones may hold the device's start
    errs = [np.abs(seg - ref[shift:shift + 10 * len(seg):10]).mean() for shift in range(0, len(ref) - 10 * len(seg))]
    shift = int(np.argmin(errs))
    jaw = names.index("jawOpen")
    corr = np.corrcoef(seg[:, jaw], ref[shift:shift + 10 * len(seg):10, jaw])[0, 1]
    print(f"browser microphone vs offline: mean difference {errs[shift]:.4f}, jawOpen correlation {corr:.4f}")
    assert errs[shift] < 0.005 and corr > 0.98, (errs[shift], corr)
    page.click("#mic-toggle")
    page.wait_for_function("!window.distilface.browser().mic", timeout=10_000)
    assert page.evaluate("window.distilface.browser().source") == "mic"
    assert console.problems() == []


@needs_browser
def test_live_mode_shows_a_stream(page, console, server):
    """Mode 2: `distilface stream --input wav:... --output ws` to the page, every frame arrives."""
    onnx = server.viewer.model_onnx(server.viewer.default_model)  # onnxruntime alone: starts without torch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "distilface.cli", "stream", "--input", f"wav:{EXAMPLE_AUDIO}",
                             "--no-realtime", "--output", "ws", "--ws-port", "0", "--wait-viewers", "1",
                             "--model", str(onnx), "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if m := re.search(r"listening on (ws://\S+/frames)", line):
                url = m.group(1)
        assert url, "distilface stream did not announce its WebSocket"
        page.evaluate(f"window.distilface.connectLive({json.dumps(url)})")
        page.wait_for_function("window.distilface.live().ended !== null", timeout=30_000)
        live = page.evaluate("window.distilface.live()")
        assert live["frames"] == live["ended"]["frames"] == 99
        assert live["lookaheadMs"] == pytest.approx(249.0)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    # the face shows the last frame
    _next_frame(page)
    names = page.evaluate("window.distilface.state().meta.names")
    shown = page.evaluate("window.distilface.weights()")
    assert [shown[n] for n in names] == pytest.approx(live["lastFrame"], abs=1e-6)
    assert "stream: lookahead 249.0 ms" in page.evaluate("window.distilface.state().latency")
    assert console.problems() == []
