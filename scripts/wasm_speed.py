"""The browser's WebAssembly runtime against the native C runtime on the same model and audio.

Builds distilface.wasm (distilface.runtime.wasm), writes MODEL's .dfn (on --frame-grid, as the
viewer streams it), loops the example clip to --seconds, and streams it offline (one second per
push) `--repeats` times through each: src/distilface/runtime/js/distilface.js in Node (scripts/wasm_stream.mjs) and the
same .dfn in C (`stream_dfn`, the gcc -march=native build). Prints medians in ms per 30 fps frame
and their ratio, and the largest difference between the two runtimes' frames. Used for the
numbers in docs/viewer.md ("In the browser"):

    python scripts/wasm_speed.py
    python scripts/wasm_speed.py c0-4-256ms-ft --frame-grid 80
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from distilface.audio import EXAMPLE_AUDIO, SAMPLE_RATE_HZ, load_audio
from distilface.checkpoint import load_student
from distilface.models import resolve_model
from distilface.runtime.native import save_native, stream_dfn
from distilface.runtime.wasm import build_wasm
from distilface.student import on_frame_grid

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None, help="shipped model name or checkpoint (default: the default)")
    ap.add_argument("--frame-grid", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise SystemExit("needs Node.js")
    fps = 30.0
    clip = load_audio(EXAMPLE_AUDIO)
    audio = np.resize(clip, int(args.seconds * SAMPLE_RATE_HZ)).astype(np.float32)
    student = on_frame_grid(load_student(resolve_model(args.model))[0].eval(), args.frame_grid)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wasm, dfn = build_wasm(tmp / "distilface.wasm"), save_native(student, tmp / "m.dfn")
        (tmp / "audio.f32").write_bytes(audio.tobytes())
        spec = {"wasm": str(wasm), "dfn": str(dfn),
                "audio": str(tmp / "audio.f32"), "out": str(tmp / "frames.f32"), "fps": fps, "rateHz": 16000,
                "smooth": False, "chunks": [SAMPLE_RATE_HZ]}
        (tmp / "spec.json").write_text(json.dumps(spec))
        wasm_ms, c_ms = [], []
        for _ in range(args.repeats):
            info = json.loads(subprocess.run([node, str(ROOT / "scripts" / "wasm_stream.mjs"), str(tmp / "spec.json")],
                                             capture_output=True, text=True, check=True).stdout)
            wasm_ms.append(info["streamMs"] / info["frames"])
            t0 = time.perf_counter()
            _, c_frames = stream_dfn(dfn, audio, fps, chunk=SAMPLE_RATE_HZ)
            c_ms.append((time.perf_counter() - t0) * 1e3 / len(c_frames))
        w_frames = np.fromfile(tmp / "frames.f32", np.float32).reshape(c_frames.shape)
    w, c = float(np.median(wasm_ms)), float(np.median(c_ms))
    print(f"{args.model or 'default'} grid {args.frame_grid}, {args.seconds:.0f} s at {fps:.0f} fps, "
          f"median of {args.repeats}:")
    print(f"  wasm (Node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()}): "
          f"{w:.3f} ms/frame  (range {min(wasm_ms):.3f}-{max(wasm_ms):.3f})")
    print(f"  native C:  {c:.3f} ms/frame  (range {min(c_ms):.3f}-{max(c_ms):.3f})")
    print(f"  wasm / native: {w / c:.2f}x; largest frame difference {np.abs(w_frames - c_frames).max():.1e}")


if __name__ == "__main__":
    main()
