"""What caches cold cost a native model per 30 fps frame: a game calls the model once per frame
and its own frame evicts the caches in between. Three loops of one frame of audio per push
through `StreamingAnimator` on the C runtime: hot (nothing between pushes), cold (64 MB written
before each push, untimed), and cold with the model's weights read back just before the push (so
the difference from cold is what fetching the weights costs). Used for "The default in C" in
docs/performance.md:

    python scripts/cold_cache.py whisper-conv-256ms-ft
    python scripts/cold_cache.py c0-4-256ms-ft --frame-grid 80
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from distilface.audio import EXAMPLE_AUDIO, load_audio
from distilface.checkpoint import load_student
from distilface.models import resolve_model
from distilface.runtime.bench import EVICT_BYTES, evict_caches
from distilface.runtime.native import NativeModel
from distilface.runtime.streaming import StreamingAnimator
from distilface.student import on_frame_grid

MODES = ("hot", "cold", "cold, weights read back")


def push_times_us(net: NativeModel, audio: np.ndarray, mode: str, pushes: int, fps: float = 30.0) -> list[float]:
    """Time of each frame-completing push of 16000 / fps samples (after 30 warm-up pushes)."""
    evict = np.zeros(EVICT_BYTES // 4, np.float32)
    stream = StreamingAnimator(net, fps)
    times, per = [], 16000 / fps
    for k in range(pushes):
        a, b = round(k * per) % len(audio), round((k + 1) * per) % len(audio)
        chunk = audio[a:b] if b > a else np.concatenate([audio[a:], audio[:b]])
        if mode != "hot":
            evict_caches(evict)
        if mode == "cold, weights read back":
            for arr in net._arrays.values():
                arr.sum()
        t0 = time.perf_counter()
        out = stream.push(chunk)
        dt = time.perf_counter() - t0
        if len(out) and k >= 30:
            times.append(1e6 * dt / len(out))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--frame-grid", type=int, default=None, metavar="N")
    ap.add_argument("--pushes", type=int, default=600)
    a = ap.parse_args()
    student = on_frame_grid(load_student(resolve_model(a.model))[0].eval(), a.frame_grid)
    net = NativeModel.from_student(student)
    audio = load_audio(EXAMPLE_AUDIO)
    result = {"model": a.model, "frame_grid": a.frame_grid, "weights_mb": sum(x.nbytes for x in net._arrays.values()) / 1e6}
    for mode in MODES:
        t = push_times_us(net, audio, mode, a.pushes)
        result[mode] = {"median_us": float(np.median(t)), "p90_us": float(np.percentile(t, 90)), "frames": len(t)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
