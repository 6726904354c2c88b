"""Runtime figures of a student, one thread: how far each runtime is from offline `animate_audio`
(any chunking, with and without smoothing) and its CPU cost per frame, windowed (one window per
frame) vs streaming (`StreamingAnimator`, 20 ms pushes as a game loop would make them).

    python -m distilface.runtime.bench [MODEL] [--onnx-dir DIR] [--seconds S] [--fps F]

exports the model's four ONNX graphs (windowed / streaming, fp32 / int8) into DIR and prints two
markdown tables: the largest difference from offline torch frames over the example clip pushed in
random chunks (1 sample to 0.5 s, seeded), at 30 and 60 fps; and ms per frame (median of
`repeats` runs over `seconds` of the clip, looped), encoder steps and head passes per frame and
file sizes. Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.runtime.streaming import StreamingAnimator, stream_all

PUSH_S = 0.02  # one push per 20 ms of audio


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_stream(model: Any, audio: np.ndarray, fps: float, repeats: int = 3) -> dict[str, float]:
    """ms per frame streaming `audio` in PUSH_S pushes, and encoder steps / head passes per frame."""
    stream = StreamingAnimator(model, fps)
    frames = 0

    def run() -> None:
        nonlocal frames
        stream.reset()
        frames = len(stream_all(stream, audio, round(PUSH_S * SAMPLE_RATE_HZ)))

    s = _median_s(run, repeats)
    return {"ms_per_frame": 1000 * s / frames, "encoder_steps_per_frame": stream.stats["encoder_steps"] / frames,
            "windows_per_frame": stream.stats["windows"] / frames}


def bench_windowed(run_window: Callable[[np.ndarray], Any], window: np.ndarray, repeats: int = 50) -> float:
    """ms for one window (batch 1): the cost per frame of a runtime without state."""
    return 1000 * _median_s(lambda: run_window(window), repeats)


def _random_chunks(model: Any, audio: np.ndarray, fps: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stream, outs, i = StreamingAnimator(model, fps), [], 0
    while i < len(audio):
        n = int(rng.integers(1, SAMPLE_RATE_HZ // 2))
        outs.append(stream.push(audio[i: i + n]))
        i += n
    return np.concatenate(outs + [stream.flush()])


def equality(runtimes: dict[str, Any], smoothed: Any, audio: np.ndarray, seeds: int = 3) -> list[dict[str, Any]]:
    """Largest |streamed - offline torch| per runtime (and smoothed: torch EnsembleSmoothed vs
    offline smoothed), at 30 and 60 fps, over `seeds` random chunkings each."""
    from distilface.animate import animate_audio

    rows = []
    for fps in (30.0, 60.0):
        want = {False: animate_audio(runtimes["torch"], audio, fps).values,
                True: animate_audio(smoothed[0], audio, fps).values}
        for name, model in [*runtimes.items(), *[(f"{n}, smoothed", m) for n, m in smoothed[1].items()]]:
            ref = want[name.endswith("smoothed")]
            diff = max(float(np.abs(_random_chunks(model, audio, fps, s) - ref).max()) for s in range(seeds))
            rows.append({"runtime": name, "fps": fps, "frames": len(ref), "max_abs_diff": diff})
    return rows


def bench_all(model_name: str | None, onnx_dir: Path, seconds: float, fps: float) -> dict[str, list]:
    import torch

    from distilface.audio import load_audio
    from distilface.checkpoint import load_student
    from distilface.models import resolve_model
    from distilface.runtime.export import EXAMPLE_AUDIO, export_model
    from distilface.runtime.ort import OrtModel
    from distilface.smoothing import DEFAULT_WEIGHTS, EnsembleSmoothed

    torch.set_num_threads(1)
    student, _ = load_student(resolve_model(model_name))
    onnx_dir.mkdir(parents=True, exist_ok=True)
    ort_models = {}
    for int8 in (False, True):
        for streaming in (False, True):
            path = onnx_dir / f"{'streaming' if streaming else 'windowed'}{'-int8' if int8 else ''}.onnx"
            export_model(student, path, streaming=streaming, int8=int8, fps=fps)
            ort_models[f"onnxruntime{' int8' if int8 else ''} {'streaming' if streaming else 'windowed'}"] = \
                OrtModel(path, threads=1)
    clip = load_audio(EXAMPLE_AUDIO)
    runtimes = {"torch": student, **ort_models}
    smoothed = (EnsembleSmoothed(student, DEFAULT_WEIGHTS),
                {"torch": EnsembleSmoothed(student, DEFAULT_WEIGHTS),
                 "onnxruntime streaming": ort_models["onnxruntime streaming"].smoothed(DEFAULT_WEIGHTS)})
    eq = equality(runtimes, smoothed, clip)

    audio = np.tile(clip, int(np.ceil(seconds * SAMPLE_RATE_HZ / len(clip))))[: round(seconds * SAMPLE_RATE_HZ)]
    window = np.ascontiguousarray(audio[None, : student.cfg.window_samples])
    with torch.inference_mode():
        w_ms = bench_windowed(lambda x: student(torch.from_numpy(x)), window)
    rows = [{"runtime": "torch", "graph": "windowed", "ms_per_frame": w_ms, "bytes": None,
             "encoder_steps_per_frame": student.steps_per_window, "windows_per_frame": 1.0},
            {"runtime": "torch", "graph": "streaming", **bench_stream(student, audio, fps), "bytes": None}]
    for name, m in ort_models.items():
        row = {"runtime": name.rsplit(" ", 1)[0], "graph": m.graph, "bytes": m.path.stat().st_size}
        if m.streaming:
            row.update(bench_stream(m, audio, fps))
        else:
            row.update(ms_per_frame=bench_windowed(m.windows, window),
                       encoder_steps_per_frame=student.steps_per_window, windows_per_frame=1.0)
        rows.append(row)
    return {"equality": eq, "cost": rows}


def format_tables(result: dict[str, list]) -> str:
    lines = ["| runtime | fps | frames | max abs diff from offline torch |", "|---|---|---|---|"]
    for r in result["equality"]:
        lines.append(f"| {r['runtime']} | {r['fps']:g} | {r['frames']} | {r['max_abs_diff']:.2g} |")
    lines += ["", "| runtime | graph | ms per frame | encoder steps per frame | head passes per frame | file |",
              "|---|---|---|---|---|---|"]
    for r in result["cost"]:
        size = f"{r['bytes'] / 1e6:.2f} MB" if r["bytes"] else "-"
        lines.append(f"| {r['runtime']} | {r['graph']} | {r['ms_per_frame']:.3f} | "
                     f"{r['encoder_steps_per_frame']:.2f} | {r['windows_per_frame']:.2f} | {size} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m distilface.runtime.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None, help="checkpoint or shipped model (default: the default)")
    p.add_argument("--onnx-dir", default="runs/runtime-bench")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=30.0)
    a = p.parse_args(argv)
    print(format_tables(bench_all(a.model, Path(a.onnx_dir), a.seconds, a.fps)))


if __name__ == "__main__":
    main()
