"""`distilface view [AUDIO]`: the face in a browser, driven by the students (docs/viewer.md).

A small local HTTP server (stdlib `ThreadingHTTPServer`, bound to 127.0.0.1 unless told) serves
the page that scripts/setup.sh builds from `web/` into `STATIC_DIR`, and what the page asks for:

    /  /app.js  /app.css  /ort/*.mjs|wasm   the built page and onnxruntime-web's runtime
    /config.json                 models, default model, clip, live WebSocket URL, fps, start mode
    /face.glb                    the face with its 52 ARKit morph targets (`distilface.rig.gltf`)
    /models/NAME.onnx            the model's windowed ONNX graph: exported on first request and
                                 cached in `cache_dir` under the checkpoint's sha256 (fp32, checked
                                 against torch by `export_model` before it is kept)
    /models/NAME.json            its metadata (curve names, window geometry, future context, lookahead;
                                 `dfn` and `wasm` where the page can run it in the C runtime)
    /models/NAME.dfn             the student for the C runtime (`export --native`), cached like the
                                 ONNX graph; checkpoints whose arch has a C step
    /distilface.wasm             the C runtime compiled to WebAssembly (distilface.runtime.wasm),
                                 built on first request and cached; 404 without clang for wasm32
    /clip/audio.wav              the clip (AUDIO, default the bundled example) as Python reads it:
                                 16 kHz mono float32 (`load_audio`), so the page's inference sees
                                 exactly the samples `animate` sees
    /clip/curves.json?model=N    `animate_audio` of the clip with model N (the same ONNX graph, in
                                 onnxruntime)

Only GET and HEAD; byte ranges are honoured (the page's <audio> seeks with them). Nothing leaves
the machine: the page loads no CDN, everything above is generated or built locally.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import os
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from distilface.audio import EXAMPLE_AUDIO, SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"  # web/build.mjs writes it
DEFAULT_PORT = 8780
DEFAULT_LIVE_URL = "ws://127.0.0.1:8765/frames"  # `distilface stream --output ws` (docs/stream.md)
MODES = ("clip", "live", "browser")
MIME_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".wasm": "application/wasm", ".glb": "model/gltf-binary",
    ".onnx": "application/octet-stream", ".dfn": "application/octet-stream", ".wav": "audio/wav", ".png": "image/png", ".txt": "text/plain; charset=utf-8",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


VIEW_MAX_S = 1800.0  # longest clip `view` loads: 30 min is 115 MB of float32, held here and in the page


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distilface" / "view"


def static_ready(static_dir: Path = STATIC_DIR) -> bool:
    """Whether the page is built (web/build.mjs ran)."""
    return all((static_dir / f).is_file() for f in ("index.html", "app.js", "ort/ort-wasm-simd-threaded.wasm"))


@dataclass
class ViewConfig:
    audio: Path | None = None  # the clip of mode 1 (None: the bundled example)
    model: str | None = None  # model selected first: shipped name, checkpoint or windowed .onnx (None: default,
    # the live default in mode browser)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port
    fps: float = 30.0
    mode: str = "clip"  # the page opens in this mode
    live_url: str = DEFAULT_LIVE_URL
    cache_dir: Path = field(default_factory=default_cache_dir)
    static_dir: Path = STATIC_DIR

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"view: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.fps > 0:
            raise ValueError(f"view: fps must be positive, got {self.fps}")


class Viewer:
    """What the server serves, made on first request and kept (exports on disk, the rest in memory)."""

    def __init__(self, cfg: ViewConfig) -> None:
        from distilface.audio import load_audio
        from distilface.models import default_name, registry

        if not static_ready(cfg.static_dir):
            raise FileNotFoundError(f"{cfg.static_dir}: the viewer is not built; run scripts/setup.sh "
                                    "(or: cd web && npm ci && node build.mjs)")
        self.cfg = cfg
        reg = registry()
        self.sources: dict[str, tuple[Path, str | None]] = {  # name -> (file, registry sha256 or None)
            name: (Path(__file__).resolve().parent / "models" / e["file"], e["sha256"]) for name, e in reg["models"].items()}
        self.future_ms = {name: e.get("future_ms") for name, e in reg["models"].items()}
        # The page opened on the microphone (--mode browser) starts with the live default, whose 57 ms
        # look-ahead a speaker can watch; clip and stream modes with the offline default.
        self.default_model = cfg.model or default_name(live=cfg.mode == "browser")
        if self.default_model is None:
            raise FileNotFoundError("no shipped default model in this version; pass --model CHECKPOINT")
        if self.default_model not in self.sources:
            path = Path(self.default_model)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such checkpoint, ONNX file or shipped model "
                                        f"(shipped: {', '.join(self.sources) or 'none'})")
            self.default_model = path.stem
            self.sources[path.stem] = (path, None)
        self.clip_path = Path(cfg.audio) if cfg.audio else EXAMPLE_AUDIO
        # (samples,) float32 16 kHz, held whole and sent to the page as one WAV: fails early on a
        # bad file and refuses clips over VIEW_MAX_S
        self.clip_audio = load_audio(self.clip_path, max_s=VIEW_MAX_S)
        self._lock = threading.Lock()  # one export / animation at a time
        self._onnx: dict[str, Path] = {}
        self._dfn: dict[str, Path | None] = {}
        self._digests: dict[str, str] = {}  # checkpoint sha256 by model name
        self._wasm: Path | None | bool = False  # False: not tried yet; None: cannot be built here
        self._meta: dict[str, dict[str, Any]] = {}
        self._curves: dict[str, bytes] = {}
        self._face: bytes | None = None
        self._wav: bytes | None = None

    # -- what the page asks for --------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "models": [{"name": n, "future_ms": self.future_ms.get(n), "default": n == self.default_model}
                       for n in self.sources],
            "default_model": self.default_model, "fps": self.cfg.fps, "mode": self.cfg.mode,
            "live_url": self.cfg.live_url, "face": "face.glb",
            "clip": {"name": self.clip_path.name, "audio": "clip/audio.wav", "curves": "clip/curves.json",
                     "seconds": len(self.clip_audio) / SAMPLE_RATE_HZ},
        }

    def face_glb(self) -> bytes:
        if self._face is None:
            from distilface.rig.gltf import glb_bytes

            self._face = glb_bytes()
        return self._face

    def clip_wav(self) -> bytes:
        if self._wav is None:
            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, self.clip_audio, SAMPLE_RATE_HZ, format="WAV", subtype="FLOAT")
            self._wav = buf.getvalue()
        return self._wav

    def model_onnx(self, name: str) -> Path:
        """The windowed graph of model `name`: exported once per checkpoint digest, then reused."""
        if name not in self.sources:
            raise KeyError(name)
        with self._lock:
            if name not in self._onnx:
                self._onnx[name] = self._export(name)
            return self._onnx[name]

    def model_meta(self, name: str) -> dict[str, Any]:
        path = self.model_onnx(name)
        with self._lock:
            if name not in self._meta:
                from distilface.runtime.ort import OrtModel
                from distilface.runtime.streaming import StreamingAnimator

                model = OrtModel(path)
                g = model.geometry
                lookahead = StreamingAnimator(model, self.cfg.fps).lookahead_samples
                self._meta[name] = {**model.meta, "name": name, "onnx": f"models/{name}.onnx",
                                    "span_samples": g.span_samples, "lookahead_samples": lookahead,
                                    "lookahead_ms": 1000.0 * lookahead / SAMPLE_RATE_HZ, "bytes": path.stat().st_size}
        if "wasm" not in self._meta[name] and self.wasm() is not None and self.model_dfn(name) is not None:
            self._meta[name].update(dfn=f"models/{name}.dfn", wasm="distilface.wasm")
        return self._meta[name]

    def model_dfn(self, name: str) -> Path | None:
        """Model `name` for the C runtime (a checked `.dfn`, cached per checkpoint digest), or None
        where it has no C step (an ONNX file, an arch without one)."""
        if name not in self.sources:
            raise KeyError(name)
        with self._lock:
            if name not in self._dfn:
                self._dfn[name] = self._export_dfn(name)
            return self._dfn[name]

    def wasm(self) -> Path | None:
        """The C runtime as WebAssembly, built once per sources into the cache; None (logged once)
        where this machine cannot build it: the page then runs onnxruntime-web."""
        with self._lock:
            if self._wasm is False:
                from distilface.runtime.wasm import WasmUnavailable, build_wasm, source_digest

                out = self.cfg.cache_dir / f"distilface-{source_digest()}.wasm"
                try:
                    self._wasm = out if out.is_file() else build_wasm(out)
                except WasmUnavailable as e:
                    logger.warning("view: no WebAssembly runtime, the page runs onnxruntime-web (%s)", e)
                    self._wasm = None
            return self._wasm

    def clip_curves(self, name: str) -> bytes:
        """`animate_audio` of the clip with model `name` (onnxruntime, one thread), as curves JSON."""
        path = self.model_onnx(name)
        with self._lock:
            if name not in self._curves:
                from distilface.animate import animate_audio
                from distilface.runtime.ort import OrtModel

                curves = animate_audio(OrtModel(path), self.clip_audio, self.cfg.fps)
                self._curves[name] = json.dumps(curves.to_json_dict()).encode()
            return self._curves[name]

    # -- exports -------------------------------------------------------------------------------

    def _export(self, name: str) -> Path:
        from distilface.runtime.ort import META_VERSION, OrtModel

        src, _ = self.sources[name]
        if src.suffix == ".onnx":  # an export already: the browser needs the windowed graph
            model = OrtModel(src)
            if model.streaming:
                raise ValueError(f"{src}: a streaming graph; the viewer runs the windowed one (export without --streaming)")
            return src
        out = self.cfg.cache_dir / f"{name}-{self._digest(name)[:12]}-v{META_VERSION}.onnx"
        if out.is_file():
            try:
                OrtModel(out)
                return out
            except Exception as e:  # a damaged cache entry: export again
                logger.warning("%s: %s; exporting again", out, e)
        from distilface.checkpoint import load_student
        from distilface.runtime.export import export_model

        out.parent.mkdir(parents=True, exist_ok=True)
        student, _ = load_student(src)
        report = export_model(student, out, fps=self.cfg.fps, source=name)
        logger.info("view: exported %s to %s (max diff from torch %.2g)", name, out, report["max_abs_diff"])
        return out

    def _digest(self, name: str) -> str:
        """The checkpoint's sha256 (once per model), checked against the registry's for shipped
        models: the cache files of both exports are named by it."""
        if name not in self._digests:
            src, want_sha = self.sources[name]
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            if want_sha is not None and digest != want_sha:
                raise ValueError(f"{src}: sha256 {digest[:12]}... does not match the registry; reinstall the package")
            self._digests[name] = digest
        return self._digests[name]

    def _export_dfn(self, name: str) -> Path | None:
        from distilface.runtime.native import ARCHS, FILE_VERSION

        src, _ = self.sources[name]
        if src.suffix == ".onnx":
            return None
        out = self.cfg.cache_dir / f"{name}-{self._digest(name)[:12]}-v{FILE_VERSION}.dfn"
        if out.is_file():
            return out
        from distilface.checkpoint import load_student
        from distilface.runtime.native import NativeUnavailable, export_native, save_native

        student, _ = load_student(src)
        if student.cfg.arch not in ARCHS:
            return None
        try:  # checked in C against torch, as `export --native` checks it
            export_native(student, out, fps=self.cfg.fps, source=name)
        except NativeUnavailable:  # no C compiler for the check: the page's own run is compared in the tests
            save_native(student, out, source=name)
        return out


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        super().__init__((viewer.cfg.host, viewer.cfg.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        logger.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        v = self.server.viewer
        try:
            if path == "/config.json":
                body, ctype = json.dumps(v.config()).encode(), MIME_TYPES[".json"]
            elif path == "/face.glb":
                body, ctype = v.face_glb(), MIME_TYPES[".glb"]
            elif path == "/clip/audio.wav":
                body, ctype = v.clip_wav(), MIME_TYPES[".wav"]
            elif path == "/clip/curves.json":
                body, ctype = v.clip_curves(query.get("model", [v.default_model])[0]), MIME_TYPES[".json"]
            elif m := re.fullmatch(r"/models/([^/]+)\.(onnx|json|dfn)", path):
                name, kind = m.groups()
                if kind == "onnx":
                    body, ctype = v.model_onnx(name).read_bytes(), MIME_TYPES[".onnx"]
                elif kind == "dfn":
                    if (dfn := v.model_dfn(name)) is None:
                        return self._error(HTTPStatus.NOT_FOUND, f"{path}: {name} has no C step", head)
                    body, ctype = dfn.read_bytes(), MIME_TYPES[".dfn"]
                else:
                    body, ctype = json.dumps(v.model_meta(name)).encode(), MIME_TYPES[".json"]
            elif path == "/distilface.wasm":
                if (wasm := v.wasm()) is None:
                    return self._error(HTTPStatus.NOT_FOUND, f"{path}: not built on this machine (no clang for wasm32)", head)
                body, ctype = wasm.read_bytes(), MIME_TYPES[".wasm"]
            else:
                file = self._static_file(path)
                if file is None:
                    return self._error(HTTPStatus.NOT_FOUND, f"{path}: not found", head)
                body = file.read_bytes()
                ctype = MIME_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        except KeyError as e:
            return self._error(HTTPStatus.NOT_FOUND, f"{path}: no model {e}", head)
        except Exception as e:  # an export or animation that failed: say why, keep serving
            logger.exception("view: %s", path)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{path}: {e}", head)
        self._send(body, ctype, head)

    def _static_file(self, path: str) -> Path | None:
        root = self.server.viewer.cfg.static_dir.resolve()
        file = (root / (path.lstrip("/") or "index.html")).resolve()
        if file.is_dir():
            file = file / "index.html"
        return file if file.is_relative_to(root) and file.is_file() else None

    def _send(self, body: bytes, ctype: str, head: bool) -> None:
        status, start, end = HTTPStatus.OK, 0, len(body)
        if m := _RANGE.match(self.headers.get("Range", "")):
            a, b = m.groups()
            start, end = (len(body) - int(b), len(body)) if a == "" else (int(a), min(int(b) + 1 if b else len(body), len(body)))
            if not 0 <= start < end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        self.end_headers()
        if not head:
            self.wfile.write(body[start:end])

    def _error(self, status: HTTPStatus, text: str, head: bool) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", MIME_TYPES[".txt"])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_server(cfg: ViewConfig, prepare: bool = True) -> ViewServer:
    """A bound server (not yet serving: call `serve_forever`, e.g. on a thread). `prepare`: export
    the default model and animate the clip now, so the page opens at once and errors show here."""
    viewer = Viewer(cfg)
    if prepare:
        viewer.model_meta(viewer.default_model)
        viewer.clip_curves(viewer.default_model)
    try:
        return ViewServer(viewer)
    except OSError as e:  # port taken, address not on this machine: one clear line from the CLI
        raise ValueError(f"view: cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}; "
                         "try another --port (0: any free one)") from e


def open_browser(url: str) -> bool:
    """Open `url` in the desktop's browser, only where there is a desktop (never a headless one)."""
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import webbrowser

    return webbrowser.open(url)


def serve(cfg: ViewConfig, browser: bool = True) -> None:
    """`distilface view`: serve until Ctrl-C; prints the URL (stdout, flushed) once it answers."""
    server = make_server(cfg)
    url = server.url
    print(f"distilface view: {url}", flush=True)
    if browser:
        open_browser(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
