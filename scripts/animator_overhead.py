"""How much of a streaming frame is `StreamingAnimator`'s own Python, not the onnxruntime (or C) call.

Exports MODEL's streaming graph to a temporary folder (`--runtime native`: packs it for the C
step), streams the example clip (looped) one
30 fps frame of audio per `push`, as a game loop would, and times each push that completes a frame
against the `phase_step` calls made inside it. Prints medians in microseconds. Used for the
animator's share in docs/performance.md:

    python scripts/animator_overhead.py c0-4-256ms-ft
    python scripts/animator_overhead.py c0-4-256ms-ft --frame-grid 80
    python scripts/animator_overhead.py c0-4-256ms-ft --frame-grid 80 --runtime native
    python scripts/animator_overhead.py c0-4-256ms-ft --frame-grid 80 --runtime native --rate 48000

With `--runtime native` it also times the pushes with the bookkeeping in C (csrc/dfstream.c);
with `--rate` too, pushes of audio at that rate resampled in C (csrc/dfresample.c) against the
same pushes resampled by the Python `StreamResampler` first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilface.animate import StreamResampler
from distilface.audio import EXAMPLE_AUDIO, SAMPLE_RATE_HZ, load_audio, resample
from distilface.checkpoint import load_student
from distilface.models import resolve_model
from distilface.runtime.export import export_model
from distilface.runtime.native import NativeModel
from distilface.runtime.ort import OrtModel
from distilface.runtime.streaming import StreamingAnimator
from distilface.student import build_student, narrower, on_frame_grid


def overhead_us(model: Any, audio: np.ndarray, fps: float = 30.0) -> dict[str, float]:
    """Medians over frame-completing pushes: the push, the `phase_step` calls in it, and the rest."""
    if getattr(model, "stream_in_c", False):  # the Python bookkeeping is what is timed here
        model.stream_in_c = False
    inner: list[float] = []
    call = model.phase_step

    def timed(*args):
        t0 = time.perf_counter()
        out = call(*args)
        inner.append(time.perf_counter() - t0)
        return out

    model.phase_step = timed
    animator = StreamingAnimator(model, fps=fps)
    hop = round(SAMPLE_RATE_HZ / fps)
    push, steps = [], []
    for i in range(0, len(audio) - hop, hop):
        inner.clear()
        t0 = time.perf_counter()
        frames = animator.push(audio[i: i + hop])
        dt = time.perf_counter() - t0
        if len(frames) and inner:
            push.append(dt)
            steps.append(sum(inner))
    p, s = 1e6 * np.array(push), 1e6 * np.array(steps)
    return {"frames": len(p), "push_us": float(np.median(p)), "phase_step_us": float(np.median(s)),
            "animator_us": float(np.median(p - s))}


def push_us(model: Any, audio: np.ndarray, fps: float = 30.0, rate_hz: int = SAMPLE_RATE_HZ,
            python_resampler: bool = False) -> dict[str, float]:
    """Median of frame-completing pushes of one frame of audio at rate_hz, whatever runs the
    bookkeeping (for a `NativeModel`: csrc/dfstream.c, one C call per push, resampling in C).
    python_resampler: resample with the Python `StreamResampler` first and push 16 kHz (how a
    `NativeModel` stream at another rate ran before csrc/dfresample.c), to time the two apart."""
    resampler = StreamResampler(rate_hz, SAMPLE_RATE_HZ) if python_resampler else None
    animator = StreamingAnimator(model, fps=fps, sample_rate_hz=SAMPLE_RATE_HZ if resampler else rate_hz)
    x = resample(audio, SAMPLE_RATE_HZ, rate_hz)
    hop = round(rate_hz / fps)
    push = []
    for i in range(0, len(x) - hop, hop):
        t0 = time.perf_counter()
        piece = x[i: i + hop] if resampler is None else resampler(x[i: i + hop])
        frames = animator.push(piece)
        dt = time.perf_counter() - t0
        if len(frames):
            push.append(dt)
    return {"frames": len(push), "push_us": float(1e6 * np.median(push))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped model name or a checkpoint")
    ap.add_argument("--loops", type=int, default=4, help="times the example clip is streamed")
    ap.add_argument("--frame-grid", type=int, default=None, metavar="N", help="frame times on a grid of N samples")
    ap.add_argument("--runtime", choices=("onnxruntime", "native"), default="onnxruntime")
    ap.add_argument("--rate", type=int, default=None, metavar="HZ",
                    help="--runtime native: also push audio at this rate, resampled in C and in Python")
    ap.add_argument("--channels", type=int, default=None,
                    help="an untrained student of MODEL's architecture at this width instead (the cost does not "
                         "depend on the weights; scripts/width_cost.py)")
    args = ap.parse_args()
    student = on_frame_grid(load_student(resolve_model(args.model))[0], args.frame_grid)
    if args.channels:
        torch.manual_seed(0)
        student = on_frame_grid(build_student(narrower(student.cfg, args.channels)), args.frame_grid)
    audio = np.tile(load_audio(EXAMPLE_AUDIO), args.loops)
    if args.runtime == "native":  # the C step under the Python animator, then under the C one
        report = {"python_animator": overhead_us(NativeModel.from_student(student.eval()), audio),
                  "c_animator": push_us(NativeModel.from_student(student.eval()), audio)}
        if args.rate:  # the same pushes at another rate: resampled in C, then in Python before the C animator
            for key, py in ((f"c_animator_{args.rate}hz_c_resampler", False),
                            (f"c_animator_{args.rate}hz_python_resampler", True)):
                report[key] = push_us(NativeModel.from_student(student.eval()), audio, rate_hz=args.rate,
                                      python_resampler=py)
        print(report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "streaming.onnx"
        export_model(student.eval(), path, streaming=True)
        print(overhead_us(OrtModel(path, threads=1), audio))


if __name__ == "__main__":
    main()
