"""`StreamingAnimator`: push audio chunks of any size, get each frame once its window has arrived.

Frames are those of offline `animate_audio` on the whole signal: frame k shows time k / fps, its
window starts at `frame_starts(...)[k]` (zero audio before the start and, once the stream ends,
after its end), and a stream of n samples has `num_frames(n / 16000, fps)` frames. Output equals
the offline frames up to float rounding (docs/runtime.md has the measured bound).

What is reused. Encoder step j of a window that starts at sample s depends only on samples
[s + 320 j, s + 320 j + receptive), so windows whose starts agree modulo the 320-sample encoder
stride (a *phase*) share their feature steps. Per phase the animator keeps the last
`steps_per_window - 1` feature steps (the *cache*, (C, W - 1)) and the first step of the last
window it ran; a new frame of that phase needs only the encoder steps past the cache and one
head pass. At 30 fps the frame starts fall on 3 phases, each frame 5 steps after the previous one
of its phase: 5 encoder steps + 1 head per frame instead of 25 + 1 for a whole window.

The start of a stream. A phase's first window has nothing cached, but the audio before the
stream is silence, and an encoder step that reads only silence gives the same features wherever
it is: the state of a phase that has encoded nothing but silence is one array per model
(`silence_state`, computed once when the animator is made). So a phase starts from it, as if it
had encoded every step before its first step that reads audio, and only the steps that do are
encoded. While the look-ahead fills, those are encoded a push's share at a time (`_prefill`), so
the start of a stream costs about what later frames do.

On a frame grid (`StreamGeometry.grid_samples`, `StudentConfig.frame_grid_samples`) frame times
are rounded to multiples of the grid; with a dense encoder (`StreamGeometry.hop_samples` = the
grid, `Student.encode_dense`) a phase is a start modulo the hop instead of 320, steps are hop
apart and a window reads every `dilation`-th one, so all frames of a 30 fps stream share one
sequence: 6.7 steps of 80 samples per frame on an 80-sample grid. The state then also carries the
shared encoder layers' last `tail_steps` outputs (`distilface.runtime.step`).

Ensemble smoothing (`EnsembleSmoothed`, or `Smoothed` here without torch) is three predictions
per frame, at offsets 0, 267 and 534 samples from the widened window's start; each is a window of
its own phase, and the animator runs all of them in order of their start so that every phase
advances monotonically. A prediction that two frames share (60 fps: t + 1/60 s is the next frame's
t) is computed once.

Backends (duck-typed, numpy in and out; this module imports neither torch nor onnxruntime):

    phase_step(audio (L,), cache (C, W - 1) | None, frames (F,) int64) -> ((F, out), (C, W - 1))
        encodes the new steps of `audio`, appends them to `cache` (None: the frames never read
        it), and runs the head on the windows whose first step is at index `frames` of
        cache + new steps. The torch one is `distilface.runtime.step.TorchBackend`; the ONNX
        streaming graph (`distilface.runtime.ort.OrtModel`) is the export of the same function.
    windows(windows (N, window_samples)) -> (N, out)
        per-window fallback, for a windowed ONNX graph.

Both carry `names`, `geometry` (`StreamGeometry`) and `streaming` (True: use `phase_step`). A
backend with `stream_in_c = True` (the C runtime, `distilface.runtime.native.NativeModel`) also
runs this module's bookkeeping itself: `c_stream(fps, past, preds, max_jobs)` returns an object
whose `push(audio_16k, final)` gives the same frames, and the animator then only resamples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from distilface.animate import PASS_S, StreamResampler
from distilface.audio import SAMPLE_RATE_HZ
from distilface.curves import num_frames


@dataclass(frozen=True)
class StreamGeometry:
    """Where a student's window reads its audio, in 16 kHz samples."""

    window_samples: int  # the window the network takes
    past_samples: int  # of it before the frame time
    stride_samples: int  # between encoder steps (320)
    steps_per_window: int  # encoder steps the head reads (W)
    receptive_samples: int  # audio under one encoder step
    feature_channels: int  # C of the encoder output (and of the cache)
    # Between the steps of the sequence a stream computes and caches: the encoder stride (one
    # sequence per phase), or the frame grid with a dense encoder (`Student.encode_dense`: one
    # sequence; a window then reads every stride / hop-th step). 0 in files before it: the stride.
    hop_samples: int = 0
    grid_samples: int = 1  # frame times are multiples of it (`StudentConfig.frame_grid_samples`)
    tail_steps: int = 0  # R: shared-layer outputs kept in the state after the cache (runtime.step)

    def __post_init__(self) -> None:
        span = (self.steps_per_window - 1) * self.stride_samples + self.receptive_samples
        if self.steps_per_window < 2 or span > self.window_samples:
            raise ValueError(f"stream geometry: {self.steps_per_window} steps of {self.receptive_samples} "
                             f"samples every {self.stride_samples} do not fit a {self.window_samples}-sample window")
        if not self.hop_samples:
            object.__setattr__(self, "hop_samples", self.stride_samples)
        if self.stride_samples % self.hop_samples or self.grid_samples < 1:
            raise ValueError(f"stream geometry: hop {self.hop_samples} does not divide the stride "
                             f"{self.stride_samples}, or grid {self.grid_samples} < 1")

    @property
    def dilation(self) -> int:
        """Sequence steps between a window's consecutive encoder steps (1 without a dense encoder)."""
        return self.stride_samples // self.hop_samples

    @property
    def cache_steps(self) -> int:
        """Sequence steps of a phase's cache: all of a window's but its first."""
        return (self.steps_per_window - 1) * self.dilation

    @property
    def state_steps(self) -> int:
        """Length of the state a streaming call takes and returns: the cache, then the tail."""
        return self.cache_steps + self.tail_steps

    @property
    def span_samples(self) -> int:
        """Samples from a window's start to the end of the last one its frame depends on."""
        return (self.steps_per_window - 1) * self.stride_samples + self.receptive_samples


SMOOTH_OFFSET_SAMPLES = round(SAMPLE_RATE_HZ / 60)  # ensemble smoothing: 267 samples = 16.69 ms


def smooth_offset_samples(grid_samples: int = 1) -> int:
    """The smoothing offset on a frame grid: 1/60 s rounded to a multiple of the grid (80: 240
    samples, 15 ms), so that all three predictions of a frame stay on the grid's one phase."""
    return max(round(SAMPLE_RATE_HZ / 60 / grid_samples), 1) * grid_samples
DEFAULT_WEIGHTS = (0.25, 0.5, 0.25)


def parse_weights(text: str | None) -> tuple[float, float, float] | None:
    """'0.25,0.5,0.25' -> normalised weights; '' or 'default' -> DEFAULT_WEIGHTS; None -> None."""
    if text is None:
        return None
    if text in ("", "default"):
        return DEFAULT_WEIGHTS
    try:
        w = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"smoothing weights {text!r}: expected three numbers like 0.25,0.5,0.25") from None
    if len(w) != 3 or not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"smoothing weights {text!r}: expected three finite non-negative numbers, not all 0")
    return tuple(x / sum(w) for x in w)  # type: ignore[return-value]


@dataclass
class Smoothed:
    """Ensemble smoothing (`distilface.smoothing`) around any backend, without torch: the frame at
    t averages the predictions of windows starting `offset` samples apart. `EnsembleSmoothed`
    carries the same three attributes, so both stream alike."""

    student: Any
    weights: tuple[float, float, float]
    offset: int

    def __post_init__(self) -> None:
        self.weights = tuple(float(w) for w in self.weights)
        if len(self.weights) != 3 or not abs(sum(self.weights) - 1) <= 1e-6 or min(self.weights) < 0:
            raise ValueError(f"smoothing weights must be three non-negative numbers summing to 1, got {self.weights}")


# While the look-ahead fills, each phase due among a stream's first PREFILL_FRAMES frames encodes
# its steps as their audio arrives, not all at its first window: that window would otherwise
# encode a whole window in one push, 2-10 times a later frame's cost (docs/performance.md, "At a
# glance"). Bounded to the stream's start, so that steady streaming makes no extra calls.
PREFILL_FRAMES = 8


@dataclass
class _Phase:
    first: int  # encoder step where the last window run in this phase starts (or would: prefill)
    pred: np.ndarray | None  # (out,) its frame; None while only prefilled (no window run yet)
    cache: np.ndarray  # (C, W - 1) feature steps first + 1 .. first + W - 1


def as_backend(model: Any) -> Any:
    """A backend for `model`: an ONNX model or another backend as it is, a torch student wrapped."""
    if hasattr(model, "streaming"):
        return model
    from distilface.runtime.step import TorchBackend  # torch only where a torch model is streamed

    return TorchBackend(model)


def last_silent_step(g: StreamGeometry, phase: int) -> int:
    """The last sequence step of `phase` that reads only audio before sample 0 (silence), the
    state's tail included (the next call's audio starts R hops after the step): `silence_state`
    stands for any phase state whose steps up to here were encoded and no others."""
    reach = max(g.receptive_samples, (1 + g.tail_steps) * g.hop_samples)
    return (-phase - reach) // g.hop_samples


def silence_state(backend: Any) -> np.ndarray:
    """(C, S + R) the state `phase_step` leaves after encoding nothing but silence: the same for
    every phase and step, as each step reads zeros wherever it is. One call on S + 2 R + 2 steps
    of zeros (from no state, the first R new steps read zeros for the tail: they fall out of the
    state), kept on the backend so that every animator of a model shares it."""
    got = getattr(backend, "_silence_state", None)
    if got is not None:
        return got
    g = backend.geometry
    n = g.state_steps + g.tail_steps + 2
    audio = np.zeros(g.hop_samples * (n - 1) + g.receptive_samples, np.float32)
    _, state = backend.phase_step(audio, None, np.zeros(0, np.int64))
    # shared by every phase of every stream: no backend writes its input state (it returns a new one)
    state = np.ascontiguousarray(state, dtype=np.float32)
    try:
        backend._silence_state = state
    except AttributeError:  # a backend with __slots__: each animator computes its own
        pass
    return state


def stream_all(stream: "StreamingAnimator", audio: np.ndarray, chunk_samples: int) -> np.ndarray:
    """Push `audio` through `stream` in pieces of `chunk_samples` and end the stream: all frames."""
    step = max(int(chunk_samples), 1)
    return np.concatenate([stream.push(audio[i: i + step]) for i in range(0, len(audio), step)] + [stream.flush()])


class StreamingAnimator:
    """Streams audio through a student (torch or ONNX), `push` by `push`.

    model: a torch student, an `EnsembleSmoothed` one, an `OrtModel`, a `Smoothed` one, or a
    backend (module doc). fps: frames per second of the output. sample_rate_hz: rate of the pushed
    audio; other rates than 16 kHz go through `StreamResampler` (equal to resampling the whole
    signal with `distilface.audio.resample`; in C for a `NativeModel`, csrc/dfresample.c). pass_s: most audio one backend call covers, which
    bounds memory however much is pushed at once.
    """

    def __init__(self, model: Any, fps: float = 30.0, sample_rate_hz: int = SAMPLE_RATE_HZ,
                 pass_s: float = PASS_S) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not pass_s > 0:
            raise ValueError(f"pass_s must be positive, got {pass_s}")
        self.fps = float(fps)
        self.sample_rate_hz = int(sample_rate_hz)
        inner, weights, offset = model, (1.0,), 0
        if hasattr(model, "student") and hasattr(model, "weights"):  # ensemble smoothing
            inner, weights, offset = model.student, tuple(model.weights), int(model.offset)
        self.backend = as_backend(inner)
        self.names: tuple[str, ...] = tuple(self.backend.names)
        self.geometry: StreamGeometry = self.backend.geometry
        g = self.geometry
        # the predictions of a frame: (offset from the widened window's start, weight), w = 0 skipped
        self._preds = [(i * offset, w) for i, w in enumerate(weights) if w]
        self._past = g.past_samples + offset  # of the widened window (smoothing: one offset more)
        self._streaming = bool(self.backend.streaming)
        self._max_jobs = max(int(pass_s * self.fps), 1) * len(self._preds)
        self._silence = None  # (C, S + R) `silence_state`, for the Python bookkeeping
        self._resampler = None
        # A backend that can run this bookkeeping itself (the C runtime: `NativeModel`) does so,
        # resampling included: push then only hands the audio over. Same frames (tests/test_native.py).
        self._native = None
        if self._streaming and getattr(self.backend, "stream_in_c", False):
            self._native = self.backend.c_stream(self.fps, self._past, self._preds, self._max_jobs,
                                                 self.sample_rate_hz)
        elif self.sample_rate_hz != SAMPLE_RATE_HZ:
            self._resampler = StreamResampler(self.sample_rate_hz, SAMPLE_RATE_HZ)
        if self._streaming and self._native is None:
            self._silence = silence_state(self.backend)
        self.reset()

    @property
    def lookahead_samples(self) -> int:
        """Audio after a frame's time (16 kHz samples) that must arrive before the frame comes out."""
        return self._preds[-1][0] + self.geometry.span_samples - self._past

    @property
    def phases(self) -> int:
        """Phases (window starts modulo the encoder stride) seen since the last reset."""
        return self._native.stats()[2] if self._native is not None else len(self._phases)

    @property
    def frames_out(self) -> int:
        """Frames returned since the last reset."""
        return self._native.stats()[3] if self._native is not None else self._emitted

    def reset(self) -> None:
        """Forget all audio and state: the next push starts a new stream at time 0."""
        if self._resampler is not None:
            self._resampler.reset()
        self._buf = np.zeros(0, np.float32)  # audio from sample _buf_start on (16 kHz)
        self._buf_start = 0
        self._n = 0  # 16 kHz samples received
        self._next = [0] * len(self._preds)  # per prediction: next frame not yet run
        self._due = [0] * len(self._preds)  # per prediction: frames below were held back once (`_hold_back`)
        self._acc: dict[int, np.ndarray] = {}  # frame -> sum of its weighted predictions so far
        self._phases: dict[int, _Phase] = {}
        self._emitted = 0
        self._finished = False
        if self._native is not None:
            self._native.reset()
        # work done since the reset: encoder steps computed and head passes (windows) run
        self._stats = {"encoder_steps": 0, "windows": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Work done since the reset: encoder steps computed and head passes (windows) run."""
        if self._native is not None:
            steps, windows, _, _ = self._native.stats()
            return {"encoder_steps": steps, "windows": windows}
        return self._stats

    def push(self, audio: np.ndarray, final: bool = False) -> np.ndarray:
        """(n,) float audio at `sample_rate_hz` -> (frames, outputs) float32 completed by it.

        `final=True` ends the stream (audio after it is taken as silence) and returns the
        remaining frames; `reset()` starts a new one. Raises RuntimeError on a push after the end.
        """
        if self._finished:
            raise RuntimeError("push after the final one: call reset() to start a new stream")
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"push expects mono samples (n,), got shape {x.shape}")
        if self._resampler is not None:
            x = self._resampler(x, final=final)
        if self._native is not None:
            out = self._native.push(x, final)
            self._finished = final
            return out
        if len(x):
            self._buf = np.concatenate([self._buf, x])
            self._n += len(x)
        total = num_frames(self._n / SAMPLE_RATE_HZ, self.fps)  # frames that exist so far
        jobs = self._ready(final, total)
        if not final:
            jobs = self._hold_back(jobs)
        for i in range(0, len(jobs), self._max_jobs):
            self._run(jobs[i: i + self._max_jobs])
        if not final and self._streaming and min(self._next) < PREFILL_FRAMES:
            self._prefill(len(x))
        out = self._emit(total)
        if final:
            self._finished = True
            self._acc.clear()
        else:
            keep_from = min(max(self._next_start(), self._buf_start), self._n)
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
        return out

    def flush(self) -> np.ndarray:
        """End the stream: `push(empty, final=True)`."""
        return self.push(np.zeros(0, np.float32), final=True)

    # -- scheduling ---------------------------------------------------------------------------
    def _start(self, k: int, i: int) -> int:
        """First sample of prediction i's window of frame k: `frame_starts` of the widened window
        (on the frame grid, round half to even as torch.round) plus the prediction's offset."""
        grid = self.geometry.grid_samples
        return round(k * SAMPLE_RATE_HZ / self.fps / grid) * grid - self._past + self._preds[i][0]

    def _next_start(self) -> int:
        """Start of the earliest window not yet run: no later window reads audio before it."""
        return min(self._start(k, i) for i, k in enumerate(self._next))

    def _ready(self, final: bool, total: int) -> list[tuple[int, int, int]]:
        """(start, frame, prediction) of every window that can run now, in order of start."""
        jobs = []
        span = self.geometry.span_samples
        while True:
            best = None
            for i, k in enumerate(self._next):
                if final and k >= total:
                    continue
                s = self._start(k, i)
                if best is None or s < best[0]:
                    best = (s, k, i)
            if best is None or (not final and best[0] + span > self._n):
                return jobs
            jobs.append(best)
            self._next[best[2]] += 1

    def _hold_back(self, jobs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """The jobs to run now: in a push that completes a frame, windows of frames it does not
        complete wait for the next push, which runs them whatever it completes (`_due`), unless a
        window of their phase with a later start runs now (a phase's windows run in order of start).

        Why: with smoothing, a frame's last prediction (534 samples after its first) is often ready
        one sample after the next frame's first (frames 533 samples apart at 30 fps), so the push
        that completed the frame also ran the next frame's first window before returning it: a
        whole window more on the frame's latency. Held back, that window runs on the next push,
        which completes no frame at real-time pace (10 ms pushes, a frame every 33 ms); where every
        push completes a frame (a game's frame of audio per push) the work only moves by a push.
        The frames and the total work are unchanged; with one prediction a frame (no smoothing)
        every ready window completes its frame, and nothing is held."""
        end = min(self._next)  # frames below are complete once these jobs have run
        if end <= self._emitted:  # no frame comes out of this push: nothing to wait for
            return jobs
        held = [(s, k, i) for s, k, i in jobs if k >= end and k >= self._due[i]]
        if not held:
            return jobs
        hop = self.geometry.hop_samples
        run = [j for j in jobs if j[1] < end or j[1] < self._due[j[2]]]
        latest: dict[int, int] = {}  # phase -> latest start among the windows run now
        for s, _, _ in run:
            latest[s % hop] = max(latest.get(s % hop, s), s)
        if any(s < latest.get(s % hop, s) for s, _, _ in held):
            return jobs
        for i in range(len(self._preds)):
            mine = [k for _, k, p in held if p == i]  # the last frames of prediction i's jobs
            if mine:
                self._due[i], self._next[i] = self._next[i], min(mine)
        return run

    def _emit(self, total: int) -> np.ndarray:
        end = min(min(self._next), total)  # frames below have all their predictions
        rows = [self._acc.pop(k) for k in range(self._emitted, end)]
        self._emitted = max(self._emitted, end)
        if not rows:
            return np.zeros((0, len(self.names)), np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    def _samples(self, lo: int, hi: int) -> np.ndarray:
        """Audio [lo, hi) with zeros before 0 and after the samples received so far."""
        if max(lo, 0) < self._buf_start:
            raise AssertionError(f"stream: samples from {lo} needed, only {self._buf_start} on kept")
        out = np.zeros(hi - lo, np.float32)
        a, b = max(lo, self._buf_start), min(hi, self._n)
        if b > a:
            out[a - lo: b - lo] = self._buf[a - self._buf_start: b - self._buf_start]
        return out

    def _run(self, jobs: list[tuple[int, int, int]]) -> None:
        g = self.geometry
        preds: list[np.ndarray | None] = [None] * len(jobs)
        if self._streaming:
            by_phase: dict[int, list[int]] = defaultdict(list)
            for j, (s, _, _) in enumerate(jobs):
                by_phase[s % g.hop_samples].append(j)
            for phase, js in by_phase.items():
                got = self._run_phase(phase, sorted({(jobs[j][0] - phase) // g.hop_samples for j in js}))
                for j in js:
                    preds[j] = got[(jobs[j][0] - phase) // g.hop_samples]
        else:
            windows = np.stack([self._samples(s, s + g.window_samples) for s, _, _ in jobs])
            preds = list(self.backend.windows(windows))
            self._stats["encoder_steps"] += len(jobs) * g.steps_per_window
            self._stats["windows"] += len(jobs)
        for (_, k, i), pred in zip(jobs, preds):  # in order of start: predictions in order i
            w = self._preds[i][1]
            self._acc[k] = w * pred if k not in self._acc else self._acc[k] + w * pred

    def _prefill(self, pushed: int) -> None:
        """Encode, for the phases whose first window starts within the audio received so far,
        steps whose audio is complete, never a window's last (that window's own call), at most
        `pushed` samples' share of them: the steps still to encode before those windows, spread
        over the look-ahead's audio, so that each push of the start costs about the same. The
        earliest window's phase goes first. The state then reads as if a window ending at the
        last step encoded had run (`_Phase.first` W - 1 steps before it, no prediction), so the
        window finds its earlier steps cached."""
        g = self.geometry
        w = g.cache_steps + 1
        firsts: dict[int, int] = {}  # phase -> first step of its earliest window not run
        for i, k in enumerate(self._next):
            while (s := self._start(k, i)) < self._n:
                phase = s % g.hop_samples
                st = self._phases.get(phase)
                if st is None or st.pred is None:
                    step = (s - phase) // g.hop_samples
                    firsts[phase] = min(firsts.get(phase, step), step)
                k += 1
        budget = -(-pushed * len(firsts) * (w - 1) // max(self.lookahead_samples, 1))  # ceil
        for phase, first in sorted(firsts.items(), key=lambda pf: pf[1] * g.hop_samples + pf[0]):
            if budget <= 0:
                break
            st = self._state(phase, first)
            done = st.first + w - 1 if st is not None else first - 1  # the last step encoded
            last = min((self._n - phase - g.receptive_samples) // g.hop_samples, first + w - 2, done + budget)
            if last > done:
                self._phase_call(phase, st, [first], last)
                budget -= last - done

    def _run_phase(self, phase: int, firsts: list[int]) -> dict[int, np.ndarray]:
        """Frames of windows starting at sequence steps `firsts` (ascending) of one phase."""
        g = self.geometry
        w = g.cache_steps + 1  # sequence steps from a window's first encoder step to its last
        st = self._state(phase, firsts[0])
        got: dict[int, np.ndarray] = {}
        if st is not None and firsts[0] < st.first:
            raise AssertionError(f"stream: phase {phase} went back from step {st.first} to {firsts[0]}")
        if st is not None and st.pred is not None and firsts[0] == st.first:  # the same window as last time
            got[st.first] = st.pred
            firsts = firsts[1:]
        if not firsts:
            return got
        got.update(zip(firsts, self._phase_call(phase, st, firsts, firsts[-1] + w - 1)))
        return got

    def _state(self, phase: int, first: int) -> "_Phase | None":
        """The phase's state; a phase not seen yet whose window at step `first` starts with steps
        that read only the silence before the stream starts from `silence_state`: as if it had
        encoded those steps and no others (the last of them at most the window's last but one)."""
        st = self._phases.get(phase)
        if st is not None or self._silence is None:
            return st
        g = self.geometry
        w = g.cache_steps + 1
        last = min(last_silent_step(g, phase), first + w - 2)
        if last < first:  # no step of the window reads only silence: nothing to skip
            return None
        st = self._phases[phase] = _Phase(last - (w - 1), None, self._silence)
        return st

    def _phase_call(self, phase: int, st: "_Phase | None", firsts: list[int], new_to: int) -> np.ndarray:
        """One `phase_step` that encodes up to step `new_to` and runs the windows at `firsts`
        (none when `new_to` ends before the last window's last step: a prefill) -> their frames."""
        g = self.geometry
        w, r = g.cache_steps + 1, g.tail_steps
        if st is not None and firsts[0] <= st.first + w:  # new steps follow the cache directly
            base, cache = st.first + 1, st.cache  # base: the step at index 0 of cache + new steps
            new_from, skip = base + w - 1, r  # the state's tail covers the first r hops of audio
        else:  # first window of this phase, or a gap: nothing cached is read
            base, cache = firsts[0] - (w - 1) - r, None  # r new steps before firsts[0] read zeros
            new_from, skip = firsts[0], 0
        windows = firsts if new_to >= firsts[-1] + w - 1 else []
        audio = self._samples(phase + (new_from + skip) * g.hop_samples,
                              phase + new_to * g.hop_samples + g.receptive_samples)
        out, cache = self.backend.phase_step(audio, cache, np.asarray(windows, np.int64) - base)
        self._stats["encoder_steps"] += new_to - new_from + 1
        self._stats["windows"] += len(windows)
        self._phases[phase] = _Phase(new_to - (w - 1), out[-1] if windows else None, cache)
        return out
