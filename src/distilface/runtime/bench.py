"""`distilface bench runtime`: what a shipped student costs where it runs, on one CPU thread.

Per model and runtime (torch / onnxruntime fp32 / onnxruntime int8, each windowed and streaming;
and for the conv and frozen-Whisper students the C step of `distilface.runtime.native`, streaming
only):

- CPU time per 30 fps frame, median and p99. Windowed: one window per frame, each call timed on
  its own (a different window of real speech each time). Streaming: `StreamingAnimator` fed one
  frame's worth of audio per push, as a game loop at the frame rate would; a push that completes
  a frame is timed, in one continuous stream (the example clip looped). Ratios are against
  windowed torch in the same run, same process. Apart from that, the start of a stream: the
  costliest of the first 10 frames of a fresh stream (where each phase runs its first window,
  whose steps nothing cached: docs/runtime.md, "The start of a stream"), median over 5 streams. Streaming
  in onnxruntime and the C step is timed twice: in a loop that does nothing else (caches warm),
  and with 64 MB written before every push (caches cold: the weights come from memory, as in a
  game whose own frame runs between two pushes).
- Offline real-time factor: `animate_audio` on a long file (default 10 minutes of the example
  clip, looped) in one call; audio seconds per second of compute.
- The C step compiled to WebAssembly (the browser viewer's and the web kit's runtime), where clang
  for wasm32 and Node are installed: streaming per frame and offline as above, timed inside Node
  (`runtime/js/bench.mjs`, caches warm only).
- The streaming step's cost split (onnxruntime fp32, and the C step): one `phase_step` call timed for n new encoder
  steps and F windows over a grid, fitted as fixed + n x per-step + F x per-head-pass
  (non-negative least squares on the fastest of three repeats per point). A 30 fps frame is
  about fixed + 5 steps + 1 head (docs/runtime.md): this says which part a faster student must
  shrink.
- Peak memory: the largest resident set (VmHWM) of a fresh process that loads the runtime and
  streams a minute of audio, and how much of it the model run adds to the process after imports.
- End-to-end latency over loopback (`distilface.runtime.live.loopback_latency`): audio sent to
  `distilface stream` over a WebSocket at real-time pace, frames back over the WebSocket output
  (onnxruntime, and the C runtime where the student has one).

Also the runtimes' largest difference from offline torch frames over random chunkings, 30 and
60 fps, with and without smoothing (the streaming equality, measured here on the shipped weights).
Timings depend on the machine and its load: ratios within one run are the comparable numbers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.runtime.streaming import StreamingAnimator

RUNTIMES = ("torch", "onnxruntime", "onnxruntime int8")
NATIVE = "native"  # the C step (conv and whisper_conv students, streaming only)
WASM = "wasm (node)"  # the same C step compiled to WebAssembly, run in Node (the browser's runtime)
GRAPHS = ("windowed", "streaming")


def median_p99(values_ms: list[float] | np.ndarray) -> tuple[float, float]:
    """Median and 99th percentile (linear interpolation between order statistics, numpy's default)."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no timings")
    return float(np.median(v)), float(np.percentile(v, 99))


def looped(clip: np.ndarray, seconds: float) -> np.ndarray:
    """`clip` repeated to exactly `seconds` of 16 kHz audio."""
    n = round(seconds * SAMPLE_RATE_HZ)
    return np.tile(clip, int(np.ceil(n / len(clip))))[:n]


# Written between pushes for the cold-cache timing: larger than the last-level cache of any host
# this ran on (8 MB here, 32 MB on the largest), as a game's own frame work would be.
EVICT_BYTES = 64 << 20


def evict_caches(buf: np.ndarray) -> None:
    """Write one float of every 64-byte line of `buf` (float32): the caches then hold it, not
    whatever the model left there."""
    buf[::16] += 1.0


def stream_frame_times_ms(model: Any, audio: np.ndarray, fps: float, frames: int,
                          cold: bool = False) -> list[float]:
    """Per-frame CPU ms of streaming, one frame's worth of audio per push (the game-loop pattern).

    Pushes alternate between floor and ceil of 16000 / fps samples so they stay on the frame grid;
    a push that completes k frames contributes k times its time / k. The warm-up pushes before the
    first frame (filling the look-ahead) are not counted. cold: before every push, EVICT_BYTES are
    written (untimed), so the model's weights, state and code come from memory as they would in a
    game whose frame runs between two pushes; warm (default) is a loop that does nothing else."""
    stream = StreamingAnimator(model, fps)
    per_frame = SAMPLE_RATE_HZ / fps
    evict = np.zeros(EVICT_BYTES // 4, np.float32) if cold else None
    times: list[float] = []
    i, k = 0, 0
    while len(times) < frames:
        if i >= len(audio):
            stream.reset()
            i, k = 0, 0
        j = min(round((k + 1) * per_frame), len(audio))
        chunk = audio[i:j]
        if evict is not None:
            evict_caches(evict)
        t0 = time.perf_counter()
        out = stream.push(chunk)
        dt = time.perf_counter() - t0
        if len(out):
            times += [1000 * dt / len(out)] * len(out)
        i, k = j, k + 1
    return times[:frames]


START_FRAMES = 10  # a stream's first frames, where each phase runs its first window
START_STREAMS = 5


def stream_start_ms(model: Any, clip: np.ndarray, fps: float, streams: int = START_STREAMS) -> float:
    """The costliest of the first START_FRAMES frames of a fresh stream, one frame's audio per push
    as in `stream_frame_times_ms`, median over `streams` streams: the hitch a game sees when a
    character starts talking. `clip` must hold the look-ahead and START_FRAMES frames."""
    worst = []
    for _ in range(streams):
        times = stream_frame_times_ms(model, clip, fps, START_FRAMES)
        worst.append(max(times))
    return statistics.median(worst)


def window_times_ms(run_window: Callable[[np.ndarray], Any], audio: np.ndarray, window_samples: int,
                    frames: int, fps: float) -> list[float]:
    """Per-frame CPU ms of a stateless runtime: one (1, window) call per frame, windows 1/fps apart."""
    hop = round(SAMPLE_RATE_HZ / fps)
    starts = [(f * hop) % max(len(audio) - window_samples, 1) for f in range(frames + 1)]
    run_window(np.ascontiguousarray(audio[None, starts[0]: starts[0] + window_samples]))  # warm-up
    times = []
    for s in starts[1:]:
        w = np.ascontiguousarray(audio[None, s: s + window_samples])
        t0 = time.perf_counter()
        run_window(w)
        times.append(1000 * (time.perf_counter() - t0))
    return times


def offline_rtf(model: Any, audio: np.ndarray, fps: float) -> dict[str, float]:
    """`animate_audio` over all of `audio` in one call: seconds of audio per second of CPU."""
    from distilface.animate import animate_audio

    t0 = time.perf_counter()
    curves = animate_audio(model, audio, fps)
    s = time.perf_counter() - t0
    return {"audio_s": len(audio) / SAMPLE_RATE_HZ, "compute_s": s, "frames": len(curves.values),
            "rtf": len(audio) / SAMPLE_RATE_HZ / s}


# A fresh interpreter per runtime: imports, then the model streamed over `seconds` of audio.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big parent would
# report the parent's size.
_PROBE = r"""
import sys, json
import numpy as np
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
runtime, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
from distilface.audio import EXAMPLE_AUDIO, load_audio
from distilface.runtime.streaming import StreamingAnimator, stream_all
from distilface.runtime.bench import looped
if runtime == "torch":
    import torch
    torch.set_num_threads(1)
    from distilface.checkpoint import load_student
elif runtime == "native":
    from distilface.runtime.native import NativeModel
else:
    from distilface.runtime.ort import OrtModel
audio = looped(load_audio(EXAMPLE_AUDIO), seconds)
before = hwm_mb()
if runtime == "torch":
    model = load_student(path)[0]
else:
    model = NativeModel(path) if runtime == "native" else OrtModel(path, threads=1)
if runtime == "torch":  # the export carries its frame grid; the checkpoint gets the run's
    from distilface.student import on_frame_grid
    model = on_frame_grid(model, int(sys.argv[4]))
stream_all(StreamingAnimator(model, 30.0), audio, 533)
print(json.dumps({"peak_rss_mb": hwm_mb(), "after_imports_mb": before}))
"""


def steps_per_frame(geometry: Any, fps: float = 30.0, frames: int = 300) -> float:
    """New sequence steps a stream computes per frame on average: at 30 fps on no frame grid 5
    (3 phases, each frame 1600 samples after the last of its phase), with a dense encoder at an
    80-sample grid 6.67 (one sequence, 533.3 samples a frame)."""
    g = geometry
    t = np.round(np.arange(frames) * SAMPLE_RATE_HZ / fps / g.grid_samples) * g.grid_samples
    return len(np.unique(t % g.hop_samples)) * SAMPLE_RATE_HZ / fps / g.hop_samples


def fit_step_cost(time_ms: Callable[[int, int], float], steps: tuple[int, ...] = (1, 5, 9),
                  windows: tuple[int, ...] = (1, 2, 3), repeats: int = 3,
                  frame_steps: float = 5.0) -> dict[str, float]:
    """Split t(n, F) = fixed + n * step + F * head of a streaming call's time over a grid of n new
    sequence steps and F windows; a 30 fps frame is fixed + frame_steps * step + head
    (`steps_per_frame`). Each point is timed `repeats` times, interleaved (a change of
    machine load falls on all points), and keeps its fastest time: load only ever adds time, and
    one slow repeat pulled a plain fit of all repeats to a negative fixed cost (c0-2-64ms-ft,
    2026-12-06). The fit is non-negative least squares: a negative cost is not a cost.
    `unstable` is True when a point misses the fit by more than a fifth of a 30 fps frame: then
    the split says little (rerun on an idle machine)."""
    from scipy.optimize import nnls

    cells = [(n, f) for n in steps for f in windows]
    times = np.array([[time_ms(n, f) for n, f in cells] for _ in range(repeats)])  # (repeats, cells)
    y = times.min(axis=0)
    a = np.array([[1.0, n, f] for n, f in cells])
    (fixed, step, head), _ = nnls(a, y)
    frame = fixed + frame_steps * step + head
    resid = float(np.abs(y - a @ np.array([fixed, step, head])).max())
    return {"fixed_ms": float(fixed), "per_step_ms": float(step), "per_head_ms": float(head),
            "frame_steps": float(frame_steps), "frame_30fps_ms": float(frame), "max_residual_ms": resid, "points": times.size,
            "unstable": bool(resid > 0.2 * frame)}


def ort_step_timer(model: Any, calls: int = 200) -> Callable[[int, int], float]:
    """time_ms(n, F): median ms of `model.phase_step` on random audio of n new steps, a full cache
    and F windows (window starts repeat when F > n: the cost is the same). Any backend: the
    cache takes the shape of the one its first call returns (the C step keeps it channels-last)."""
    g = model.geometry
    rng = np.random.default_rng(0)

    def time_ms(n: int, f: int) -> float:
        audio = (0.1 * rng.standard_normal(g.hop_samples * (n - 1 - g.tail_steps) + g.receptive_samples)
                 ).astype(np.float32)
        starts = ((n - 1) - np.arange(f) % n).astype(np.int64)  # windows ending in the new steps
        shape = model.phase_step(audio, None, starts)[1].shape
        cache = rng.standard_normal(shape).astype(np.float32)
        for _ in range(10):
            model.phase_step(audio, cache, starts)
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            model.phase_step(audio, cache, starts)
            ts.append(time.perf_counter() - t0)
        return 1000 * statistics.median(ts)

    return time_ms


def peak_memory(runtime: str, path: Path, seconds: float = 60.0, frame_grid: int = 1) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process streaming `seconds` through `path` in `runtime`, and the
    part added by loading and running the model (peak minus the peak after imports and audio)."""
    r = subprocess.run([sys.executable, "-c", _PROBE, runtime if runtime in ("torch", NATIVE) else "onnxruntime",
                        str(path), str(seconds), str(frame_grid)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe ({runtime}, {path}) failed: {r.stderr.strip()[-500:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": d["peak_rss_mb"], "model_mb": d["peak_rss_mb"] - d["after_imports_mb"]}


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


def bench_model(name: str, onnx_dir: Path, frames: int = 300, offline_s: float = 600.0, fps: float = 30.0,
                memory_s: float = 60.0, latency_s: float = 0.0, equality_seeds: int = 3,
                frame_grid: int | None = None) -> dict[str, Any]:
    """Every figure of the module doc for one model (a shipped name or a checkpoint path);
    frame_grid: its frame times on a grid of this many samples (None: the model's own)."""
    import torch

    from distilface.audio import EXAMPLE_AUDIO, load_audio
    from distilface.checkpoint import load_student
    from distilface.models import resolve_model
    from distilface.runtime.export import export_model
    from distilface.runtime.ort import OrtModel
    from distilface.smoothing import DEFAULT_WEIGHTS, EnsembleSmoothed
    from distilface.student import on_frame_grid

    torch.set_num_threads(1)
    path = resolve_model(name)
    student = on_frame_grid(load_student(path)[0], frame_grid).eval()
    out_dir = onnx_dir / Path(name).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    models: dict[tuple[str, str], Any] = {("torch", g): student for g in GRAPHS}
    files: dict[tuple[str, str], Path] = {("torch", g): path for g in GRAPHS}
    for int8 in (False, True):
        for graph in GRAPHS:
            f = out_dir / f"{graph}{'-int8' if int8 else ''}.onnx"
            # Always exported afresh (seconds): a file kept from an earlier run would time the
            # exporter of that day, not this code's graph.
            export_model(student, f, streaming=graph == "streaming", int8=int8, fps=fps)
            rt = "onnxruntime int8" if int8 else "onnxruntime"
            models[(rt, graph)], files[(rt, graph)] = OrtModel(f, threads=1), f
    runtimes = list(RUNTIMES)
    from distilface.runtime.native import ARCHS as NATIVE_ARCHS

    if student.cfg.arch in NATIVE_ARCHS:  # the students with a C step
        from distilface.runtime.native import NativeModel, save_native

        f = save_native(student, out_dir / "native.npz")
        models[(NATIVE, "streaming")], files[(NATIVE, "streaming")] = NativeModel(f), f
        runtimes.append(NATIVE)
    clip = load_audio(EXAMPLE_AUDIO)
    # One continuous stream for the per-frame times: restarting it with each loop of the 3 s clip
    # put every phase's first window (several times a frame's cost) in about 4 % of the frames,
    # i.e. in the p99. The start is timed on its own (stream_start_ms).
    stream_audio = looped(clip, (frames + 2) / fps + student.cfg.window_samples / SAMPLE_RATE_HZ + 1.0)

    def torch_window(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return student(torch.from_numpy(x))

    cost = []
    for (rt, graph), m in models.items():
        if graph == "windowed":
            run = torch_window if rt == "torch" else m.windows
            t = window_times_ms(run, clip, student.cfg.window_samples, frames, fps)
        else:
            with torch.inference_mode():
                t = stream_frame_times_ms(m, stream_audio, fps, frames)
        med, p99 = median_p99(t)
        cost.append({"runtime": rt, "graph": graph, "median_ms": med, "p99_ms": p99, "frames": len(t),
                     "bytes": files[(rt, graph)].stat().st_size})
        if graph == "streaming":
            with torch.inference_mode():
                cost[-1]["start_ms"] = stream_start_ms(m, clip, fps)
        if graph == "streaming" and rt != "torch":  # the game-loop case: caches cold at every push
            with torch.inference_mode():
                cost[-1]["cold_median_ms"], cost[-1]["cold_p99_ms"] = median_p99(
                    stream_frame_times_ms(m, stream_audio, fps, frames, cold=True))
    wasm_run = _wasm_times(student, out_dir, stream_audio, looped(clip, offline_s), fps, frames)
    if wasm_run is not None:
        med, p99 = median_p99(wasm_run["frame_ms"])
        cost.append({"runtime": WASM, "graph": "streaming", "median_ms": med, "p99_ms": p99,
                     "frames": len(wasm_run["frame_ms"]), "bytes": wasm_run["bytes"]})
    base = cost[0]["median_ms"]  # windowed torch
    for r in cost:
        r["speedup"] = base / r["median_ms"]

    ort_stream = models[("onnxruntime", "streaming")]
    split = fit_step_cost(ort_step_timer(ort_stream, calls=max(frames // 2, 10)),
                          frame_steps=steps_per_frame(ort_stream.geometry))
    split_native = None
    if (NATIVE, "streaming") in models:
        split_native = fit_step_cost(ort_step_timer(models[(NATIVE, "streaming")], calls=max(frames // 2, 10)),
                                     frame_steps=steps_per_frame(ort_stream.geometry))

    long_audio = looped(clip, offline_s)
    offline = []
    for rt in runtimes:
        m = models[(rt, "streaming")]
        with torch.inference_mode():
            offline.append({"runtime": rt, **offline_rtf(m, long_audio, fps)})
    if wasm_run is not None:
        offline.append({"runtime": WASM, **wasm_run["offline"]})
    memory = [{"runtime": rt, **peak_memory(rt, files[(rt, "streaming")], memory_s, student.cfg.frame_grid_samples)}
              for rt in runtimes]

    eq = []
    if equality_seeds:
        streamed = {f"{rt} streaming": models[(rt, "streaming")] for rt in runtimes[1:]
                    if rt in ("onnxruntime", NATIVE)}
        smoothed = (EnsembleSmoothed(student, DEFAULT_WEIGHTS),
                    {"torch": EnsembleSmoothed(student, DEFAULT_WEIGHTS),
                     **{n: m.smoothed(DEFAULT_WEIGHTS) for n, m in streamed.items()}})
        compared = {"torch": student, **{f"{rt} {g}": m for (rt, g), m in models.items() if rt != "torch"}}
        with torch.inference_mode():
            eq = equality(compared, smoothed, clip[: 5 * SAMPLE_RATE_HZ], seeds=equality_seeds)

    latency = None
    if latency_s > 0:
        from distilface.runtime.live import loopback_latency

        latency = {"plain": loopback_latency(models[("onnxruntime", "streaming")], latency_s, fps),
                   "smoothed": loopback_latency(models[("onnxruntime", "streaming")], latency_s, fps,
                                                smooth=DEFAULT_WEIGHTS)}
        if (NATIVE, "streaming") in models:  # the same server on the C runtime
            latency["native plain"] = loopback_latency(models[(NATIVE, "streaming")], latency_s, fps)
            latency["native smoothed"] = loopback_latency(models[(NATIVE, "streaming")], latency_s, fps,
                                                          smooth=DEFAULT_WEIGHTS)
    return {"model": name, "path": str(path), "future_ms": student.cfg.future_ms, "fps": fps,
            "frame_grid_samples": student.cfg.frame_grid_samples,
            "parameters": sum(p.numel() for p in student.parameters()),
            "cost": cost, "step_split": split, "step_split_native": split_native, "offline": offline, "memory": memory, "equality": eq, "latency": latency}


def _wasm_times(student: Any, out_dir: Path, clip: np.ndarray, long_audio: np.ndarray, fps: float,
                frames: int) -> dict[str, Any] | None:
    """The WebAssembly row's timings (runtime/js/bench.mjs in Node), or None where the student has
    no C step or this machine has no Node or no clang for wasm32 (logged)."""
    import logging
    import shutil
    import tempfile

    from distilface.runtime import wasm
    from distilface.runtime.native import ARCHS, save_native

    node = shutil.which("node") or shutil.which("nodejs")
    if student.cfg.arch not in ARCHS or node is None:
        return None
    try:
        wasm_file = wasm.build_wasm(out_dir / "distilface.wasm")
    except wasm.WasmUnavailable as e:
        logging.getLogger(__name__).warning("bench: no WebAssembly row (%s)", str(e).splitlines()[0])
        return None
    dfn = save_native(student, out_dir / "native.dfn")
    with tempfile.TemporaryDirectory() as tmp:  # the audio as raw float32 for Node (38 MB for 10 min)
        for name, x in (("clip.f32", clip), ("long.f32", long_audio)):
            (Path(tmp) / name).write_bytes(np.asarray(x, np.float32).tobytes())
        spec = {"wasm": str(wasm_file), "dfn": str(dfn), "clip": f"{tmp}/clip.f32", "long": f"{tmp}/long.f32",
                "fps": fps, "frames": frames}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([node, str(wasm.JS_DIR / "bench.mjs"), f"{tmp}/spec.json"], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"bench: the WebAssembly run failed: {proc.stderr.strip()[-2000:]}")
    return {**json.loads(proc.stdout), "bytes": dfn.stat().st_size}


def bench_runtime(names: list[str], onnx_dir: Path, **kw: Any) -> dict[str, Any]:
    import platform

    from tqdm import tqdm

    results = [bench_model(n, onnx_dir, **kw) for n in tqdm(names, desc="bench runtime", unit="model")]
    return {"version": 1, "machine": {"cpu": _cpu_name(), "python": platform.python_version(),
                                      "threads": 1}, "settings": kw, "models": results}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def format_markdown(result: dict[str, Any]) -> str:
    lines = []
    for m in result["models"]:
        grid = m.get("frame_grid_samples", 1)
        lines += [f"### {m['model']} ({m['parameters']:,} parameters, {m['future_ms']:g} ms future context, "
                  f"{m['fps']:g} fps{f', frame grid {grid} samples' if grid > 1 else ''})", "",
                  "| runtime | graph | median ms/frame | p99 ms/frame | speed vs windowed torch | "
                  "caches cold: median / p99 ms | stream start: worst of the first 10 frames, ms | file |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in m["cost"]:
            cold = (f"{r['cold_median_ms']:.3f} / {r['cold_p99_ms']:.3f}" if "cold_median_ms" in r else "-")
            start = f"{r['start_ms']:.3f}" if "start_ms" in r else "-"
            lines.append(f"| {r['runtime']} | {r['graph']} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{r['speedup']:.1f}x | {cold} | {start} | {r['bytes'] / 1e6:.2f} MB |")
        splits = [(rt, m.get(key)) for rt, key in (("onnxruntime", "step_split"), (NATIVE, "step_split_native"))
                  if m.get(key)]
        if splits:
            n = splits[0][1].get("frame_steps", 5.0)
            lines += ["", "| streaming call, us | fixed | per encoder step | per head pass | "
                      f"30 fps frame (fixed + {n:.3g} steps + 1 head) | largest residual |", "|---|---|---|---|---|---|"]
            for rt, sp in splits:
                lines.append(f"| {rt} | {1000 * sp['fixed_ms']:.1f} | {1000 * sp['per_step_ms']:.1f} | "
                             f"{1000 * sp['per_head_ms']:.1f} | {1000 * sp['frame_30fps_ms']:.1f} | "
                             f"{1000 * sp['max_residual_ms']:.1f}{' (unstable fit)' if sp.get('unstable') else ''} |")
        lines += ["", "| runtime (streaming graph) | offline: audio | compute | real-time factor | "
                  "peak RSS | added by the model |", "|---|---|---|---|---|---|"]
        mem = {r["runtime"]: r for r in m["memory"]}
        for r in m["offline"]:
            mm = mem.get(r["runtime"])  # none for the WebAssembly row (a Node process)
            rss = f"{mm['peak_rss_mb']:.0f} MB | {mm['model_mb']:.0f} MB" if mm else "- | -"
            lines.append(f"| {r['runtime']} | {r['audio_s']:.0f} s | {r['compute_s']:.2f} s | {r['rtf']:.0f}x | {rss} |")
        if m["latency"]:
            lines += ["", "| loopback latency | frames | median ms | p99 ms | max ms | future context + smoothing |",
                      "|---|---|---|---|---|---|"]
            for kind, r in m["latency"].items():
                lines.append(f"| {kind} | {r.get('frames', '-')} | {r['median_ms']:.1f} | {r['p99_ms']:.1f} | "
                             f"{r['max_ms']:.1f} | {r.get('future_ms', float('nan')):.1f} ms |")
        if m["equality"]:
            lines += ["", "| runtime | fps | frames | max abs diff from offline torch |", "|---|---|---|---|"]
            for r in m["equality"]:
                lines.append(f"| {r['runtime']} | {r['fps']:g} | {r['frames']} | {r['max_abs_diff']:.2g} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Median ms per frame (bars) and p99 (ticks) per runtime and graph, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ms = result["models"]
    cols = min(2, len(ms))  # two panels a row: four models side by side were too small to read
    rows = -(-len(ms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(ms):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, ms):
        labels = [f"{r['runtime']}\n{r['graph']}" for r in m["cost"]]
        med = [r["median_ms"] for r in m["cost"]]
        p99 = [r["p99_ms"] for r in m["cost"]]
        y = np.arange(len(labels))
        ax.barh(y, med, color=["#888" if r["graph"] == "windowed" else "#2a7" for r in m["cost"]])
        ax.plot(p99, y, "k|", markersize=12, label="p99")
        for yi, r in zip(y, m["cost"]):
            ax.text(r["median_ms"], yi, f" {r['speedup']:.1f}x", va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.5, 1, 2 rather than 5x10^-1
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("CPU ms per frame, 1 thread (bar: median)")
        ax.set_title(m["model"], fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    from distilface.fileio import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out: str | Path, markdown: str,
                 plot_fn: Callable[[dict[str, Any], Path], Path]) -> list[Path]:
    """<out>.json (result), <out>.md (markdown) and <out>.png (plot_fn), each written atomically."""
    from distilface.fileio import atomic_write, write_json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), result)
    with atomic_write(out.with_suffix(".md"), "w") as f:
        f.write(markdown)
    return [out.with_suffix(".json"), out.with_suffix(".md"), plot_fn(result, out.with_suffix(".png"))]


def write_results(result: dict[str, Any], out: str | Path) -> list[Path]:
    return write_report(result, out, format_markdown(result), plot)


def speed_summary(result: dict[str, Any]) -> str:
    """One line per model: streaming onnxruntime (and the C step) vs windowed torch, for the terminal."""
    lines = []
    for m in result["models"]:
        c = {(r["runtime"], r["graph"]): r for r in m["cost"]}
        s = c[("onnxruntime", "streaming")]
        n = c.get((NATIVE, "streaming"))
        nat = f", native {n['median_ms']:.3f} ms/frame ({n['speedup']:.1f}x)" if n else ""
        if w := c.get((WASM, "streaming")):
            nat += f", {WASM} {w['median_ms']:.3f} ms/frame ({w['speedup']:.1f}x)"
        lines.append(f"{m['model']}: streaming onnxruntime {s['median_ms']:.3f} ms/frame "
                     f"({s['speedup']:.1f}x windowed torch){nat}; offline "
                     f"{statistics.median(r['rtf'] for r in m['offline']):.0f}x real time (median of runtimes)")
    return "\n".join(lines)
