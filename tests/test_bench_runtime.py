"""`distilface bench runtime`: statistics against hand computation, the timing loops count the
frames they claim, and the whole command on a tiny checkpoint writes consistent tables."""

import json

import numpy as np
import pytest
import torch

from distilface.audio import EXAMPLE_AUDIO, SAMPLE_RATE_HZ, load_audio
from distilface.checkpoint import save_checkpoint
from distilface.cli import main
from distilface.curves import num_frames
from distilface.runtime.bench import (fit_step_cost, looped, median_p99, ort_step_timer, steps_per_frame,
                                      stream_frame_times_ms, window_times_ms)
from distilface.runtime.streaming import StreamingAnimator
from distilface.student import StudentConfig, build_student


def tiny(**kw):
    torch.manual_seed(0)
    return build_student(StudentConfig(channels=16, context_groups=8, **kw)).eval()


def test_median_p99_by_hand():
    # 1..100: median 50.5; p99 at rank 0.99 * 99 = 98.01 -> 99 + 0.01 * (100 - 99) = 99.01
    med, p99 = median_p99(list(range(1, 101)))
    assert med == 50.5 and p99 == pytest.approx(99.01)
    assert median_p99([3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError):
        median_p99([])


def test_looped_is_exact_length_and_repeats():
    clip = np.arange(1000, dtype=np.float32)
    a = looped(clip, 0.15)  # 2400 samples
    assert len(a) == 2400 and a[1000] == 0 and a[2399] == 399


def test_stream_timing_pushes_one_frame_per_push_and_wraps():
    model = tiny()
    clip = load_audio(EXAMPLE_AUDIO)[: SAMPLE_RATE_HZ]  # 1 s: fewer frames than asked, so it wraps
    stream = StreamingAnimator(model, 30.0)
    with torch.inference_mode():
        times = stream_frame_times_ms(model, clip, 30.0, 50)
        # after the look-ahead, each push of 1/30 s completes exactly one frame
        want = num_frames(1.0, 30.0) - int(np.ceil(stream.lookahead_samples / (SAMPLE_RATE_HZ / 30)))
    assert len(times) == 50 and all(t > 0 for t in times)
    assert want < 50  # the clip alone is too short: the loop restarted the stream


def test_stream_start_is_the_worst_of_a_fresh_streams_first_frames(monkeypatch):
    import distilface.runtime.bench as bench

    calls = []

    def fake(model, clip, fps, frames, cold=False):  # a fresh stream per call: its first frames' times
        calls.append(frames)
        return [1.0, 9.0 + len(calls), 2.0][:frames] + [1.0] * (frames - 3)

    monkeypatch.setattr(bench, "stream_frame_times_ms", fake)
    # worst frames of 5 streams: 10, 11, 12, 13, 14 -> median 12
    assert bench.stream_start_ms(None, None, 30.0) == 12.0
    assert calls == [bench.START_FRAMES] * bench.START_STREAMS


def test_window_timing_times_each_window():
    calls = []
    times = window_times_ms(lambda w: calls.append(w.shape), np.zeros(20_000, np.float32), 8192, 7, 30.0)
    assert len(times) == 7 and len(calls) == 8 and calls[0] == (1, 8192)  # + one warm-up call


def test_step_cost_fit_recovers_a_known_split():
    # t = 0.05 + 0.02 n + 0.09 F exactly: the fit returns those, and a 30 fps frame = fixed + 5 steps + 1 head
    seen = []

    def fake(n, f):
        seen.append((n, f))
        return 0.05 + 0.02 * n + 0.09 * f

    sp = fit_step_cost(fake)
    assert sp["fixed_ms"] == pytest.approx(0.05) and sp["per_step_ms"] == pytest.approx(0.02)
    assert sp["per_head_ms"] == pytest.approx(0.09) and sp["frame_30fps_ms"] == pytest.approx(0.05 + 0.1 + 0.09)
    assert sp["max_residual_ms"] < 1e-12 and sp["points"] == len(seen) == 27 and not sp["unstable"]
    assert seen[:9] == seen[9:18] == seen[18:]  # the grid three times, interleaved


def test_step_cost_fit_keeps_the_fastest_repeat():
    """A load spike on one repeat of one point (here +0.3 ms on (9, 1), the second time) does not
    move the split: each point keeps its fastest time."""
    calls = []

    def spiky(n, f):
        calls.append((n, f))
        spike = 0.3 if (n, f) == (9, 1) and calls.count((9, 1)) == 2 else 0.0
        return 0.05 + 0.02 * n + 0.09 * f + spike

    sp = fit_step_cost(spiky)
    assert (sp["fixed_ms"], sp["per_step_ms"], sp["per_head_ms"]) == pytest.approx((0.05, 0.02, 0.09))


def test_step_cost_fit_never_returns_a_negative_cost_and_flags_a_poor_fit():
    # times that fall with more steps: plain least squares gives per step -0.01 ms; the
    # non-negative fit gives 0 and a constant 0.2 - 0.01 * 5 (the mean over n = 1, 5, 9) ...
    sp = fit_step_cost(lambda n, f: 0.2 - 0.01 * n)
    assert sp["per_step_ms"] == 0.0 and sp["per_head_ms"] == pytest.approx(0.0, abs=1e-12)
    assert sp["fixed_ms"] == pytest.approx(0.15)
    # ... missing the points by 0.04 ms, more than a fifth of its 0.15 ms frame: flagged
    assert sp["max_residual_ms"] == pytest.approx(0.04) and sp["unstable"]


def test_step_timer_calls_valid_windows(tmp_path):
    """The timer's inputs are valid for the real graph (every window inside cache + new steps)
    and the streaming call gets dearer with more steps and more windows."""
    from distilface.runtime.export import export_model
    from distilface.runtime.ort import OrtModel

    f = tmp_path / "s.onnx"
    export_model(tiny(), f, streaming=True)
    calls = []
    model = OrtModel(f)
    real = model.phase_step
    model.phase_step = lambda a, c, s: calls.append((len(a), s.copy())) or real(a, c, s)
    t = ort_step_timer(model, calls=5)
    assert t(1, 3) > 0 and t(9, 1) > 0
    g = model.geometry
    assert calls[0][0] == g.receptive_samples and list(calls[0][1]) == [0, 0, 0]
    assert calls[-1][0] == 8 * g.stride_samples + g.receptive_samples and list(calls[-1][1]) == [8]


def test_steps_per_frame_by_hand():
    from distilface.runtime.streaming import StreamGeometry

    base = dict(window_samples=8192, past_samples=4096, stride_samples=320, steps_per_window=25,
                receptive_samples=400, feature_channels=8)
    # no grid: 3 phases of 320-sample steps, a frame every 1600 samples in each: 5 steps
    assert steps_per_frame(StreamGeometry(**base)) == pytest.approx(5.0)
    # one dense sequence: 16000 / 30 / 80 = 6.67 steps of 80 samples, or 3.33 of 160
    assert steps_per_frame(StreamGeometry(**base, hop_samples=80, grid_samples=80)) == pytest.approx(20 / 3)
    assert steps_per_frame(StreamGeometry(**base, hop_samples=160, grid_samples=160)) == pytest.approx(10 / 3)
    assert steps_per_frame(StreamGeometry(**base), fps=50.0) == pytest.approx(1.0)  # one phase, a step a frame


def test_step_timer_on_a_grid_feeds_the_state_and_audio_a_call_takes(tmp_path):
    from distilface.runtime.export import export_model
    from distilface.runtime.ort import OrtModel

    f = tmp_path / "g.onnx"
    export_model(tiny(frame_grid_samples=80), f, streaming=True)
    model = OrtModel(f)
    g = model.geometry
    calls = []
    real = model.phase_step
    model.phase_step = lambda a, c, s: calls.append((len(a), None if c is None else c.shape)) or real(a, c, s)
    ort_step_timer(model, calls=3)(5, 1)
    # 5 new steps 80 samples apart, the first 3 hops' shared outputs read from the state; the
    # first call (no state) only learns the state's shape, every timed call gets a full state
    steps = 4 * 80 + g.receptive_samples - 3 * 80
    assert calls[0] == (steps, None)
    assert calls[1:] == [(steps, (g.feature_channels, 24 * 4 + 3))] * (10 + 3)


@pytest.mark.parametrize("grid", [None, 80])
def test_bench_runtime_cli_on_a_tiny_checkpoint(tmp_path, grid):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny())
    out = tmp_path / "perf"
    main(["bench", "runtime", str(ckpt), "--frames", "20", "--offline-s", "3", "--memory-s", "1",
          "--latency-s", "0", "--equality-seeds", "1", "--onnx-dir", str(tmp_path / "onnx"), "--out", str(out),
          *(["--frame-grid", str(grid)] if grid else [])])
    r = json.loads(out.with_suffix(".json").read_text())
    (m,) = r["models"]
    cost = {(c["runtime"], c["graph"]): c for c in m["cost"]}
    # 3 runtimes x 2 graphs, the C step, and the C step as WebAssembly in Node where it builds
    wasm_row = _wasm_builds()
    assert len(cost) == 7 + wasm_row and ("native", "streaming") in cost
    assert (("wasm (node)", "streaming") in cost) == wasm_row
    base = cost["torch", "windowed"]["median_ms"]
    for c in cost.values():
        assert c["frames"] == 20 and 0 < c["median_ms"] <= c["p99_ms"]
        assert c["speedup"] == pytest.approx(base / c["median_ms"])
    assert cost["torch", "windowed"]["speedup"] == 1.0
    # caches cold at every push: timed for the streaming runtimes a game would embed, not torch
    cold = {k for k, c in cost.items() if "cold_median_ms" in c}
    assert cold == {("onnxruntime", "streaming"), ("onnxruntime int8", "streaming"), ("native", "streaming")}
    for k in cold:
        assert 0 < cost[k]["cold_median_ms"] <= cost[k]["cold_p99_ms"]
    # the start of a fresh stream, timed for every streaming runtime but the WebAssembly row
    assert {k for k, c in cost.items() if "start_ms" in c} == {
        (rt, "streaming") for rt in ("torch", "onnxruntime", "onnxruntime int8", "native")}
    for o in m["offline"]:
        assert o["audio_s"] == 3.0 and o["frames"] == num_frames(3.0, 30.0)
        assert o["rtf"] == pytest.approx(o["audio_s"] / o["compute_s"])
    for mem in m["memory"]:
        assert 0 < mem["model_mb"] < mem["peak_rss_mb"]
    onnx_mem = {x["runtime"]: x["peak_rss_mb"] for x in m["memory"]}
    assert onnx_mem["onnxruntime"] < onnx_mem["torch"]  # the onnxruntime process never imports torch
    fp32 = [e for e in m["equality"] if "int8" not in e["runtime"]]
    assert fp32 and all(e["max_abs_diff"] < 1e-4 for e in fp32)
    assert {"native streaming", "native streaming, smoothed"} <= {e["runtime"] for e in fp32}
    assert {x["runtime"] for x in m["memory"]} == {"torch", "onnxruntime", "onnxruntime int8", "native"}
    assert {o["runtime"] for o in m["offline"]} == {x["runtime"] for x in m["memory"]} | (
        {"wasm (node)"} if wasm_row else set())
    nat = m["step_split_native"]
    assert nat["points"] == 27 and nat["frame_30fps_ms"] > 0
    sp = m["step_split"]
    assert sp["points"] == 27 and min(sp["fixed_ms"], sp["per_step_ms"], sp["per_head_ms"]) >= 0
    n = 20 / 3 if grid else 5  # new steps per 30 fps frame
    assert sp["frame_steps"] == pytest.approx(n) and m["frame_grid_samples"] == (grid or 1)
    assert sp["frame_30fps_ms"] == pytest.approx(sp["fixed_ms"] + n * sp["per_step_ms"] + sp["per_head_ms"])
    md = out.with_suffix(".md").read_text()
    assert ("frame grid 80 samples" in md) == bool(grid)
    assert "| streaming call, us | fixed |" in md and "\n| native | " in md and "\n| onnxruntime | " in md
    assert "| onnxruntime int8 | streaming |" in md and out.with_suffix(".png").stat().st_size > 1000
    assert ("| wasm (node) | streaming |" in md and "| wasm (node) | 3 s |" in md) == wasm_row


def _wasm_builds() -> bool:
    import shutil

    from distilface.runtime.wasm import builds_here

    return bool(shutil.which("node") or shutil.which("nodejs")) and builds_here()


def test_evict_caches_writes_every_cache_line():
    from distilface.runtime.bench import evict_caches

    buf = np.zeros(4096, np.float32)
    evict_caches(buf)
    lines = buf.reshape(-1, 16)  # 64-byte lines of float32
    assert (lines[:, 0] == 1).all() and not lines[:, 1:].any()
