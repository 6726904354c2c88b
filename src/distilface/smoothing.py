"""Ensemble smoothing (paper Sec. 3.4): each frame is a weighted average of three predictions.

The student runs at 60 fps; the frame shown at time t is w0 f(t - 1/60 s) + w1 f(t) + w2 f(t + 1/60 s).
It removes the frame-to-frame jitter of low-latency students at the price of 1/60 s more future
audio (the latency grows by it) and three head evaluations per frame.

`EnsembleSmoothed` wraps a student and looks like one: its config describes the widened window
(16.69 ms more past and more future), so `frame_starts`, `animate`, `eval` and the streaming
runtime work on it unchanged and report its real latency. The offset is 267 samples (16.69 ms),
1/60 s rounded to whole samples so that every window starts on a sample.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from distilface.audio import SAMPLE_RATE_HZ
# the weights and offset live with the torch-free runtime, which needs them without torch
from distilface.runtime.streaming import (DEFAULT_WEIGHTS, SMOOTH_OFFSET_SAMPLES, parse_weights,  # noqa: F401
                                         smooth_offset_samples)


class EnsembleSmoothed(nn.Module):
    """A student whose frame at t averages its predictions at t - 16.69 ms, t and t + 16.69 ms."""

    def __init__(self, student: nn.Module, weights: tuple[float, float, float] = DEFAULT_WEIGHTS,
                 offset_samples: int | None = None) -> None:
        super().__init__()
        if len(weights) != 3 or abs(sum(weights) - 1) > 1e-6:
            raise ValueError(f"smoothing weights must be three numbers summing to 1, got {weights}")
        self.student = student
        self.weights = tuple(float(w) for w in weights)
        # default: 1/60 s on the student's frame grid (267 samples off the grid)
        grid = getattr(student.cfg, "frame_grid_samples", 1)
        self.offset = smooth_offset_samples(grid) if offset_samples is None else int(offset_samples)
        inner = student.cfg
        off_ms = self.offset * 1000 / SAMPLE_RATE_HZ
        # the widened window: from the first prediction's window start to the last one's end
        self.cfg = replace(inner, window_ms=inner.window_ms + 2 * off_ms, future_ms=inner.future_ms + off_ms)
        self.steps_per_window = getattr(student, "steps_per_window", None)

    def forward_frames(self, audio: torch.Tensor, frame_starts: torch.Tensor) -> torch.Tensor:
        """audio (samples,), frame_starts (F,) of the widened windows -> (F, outputs)."""
        out = 0.0
        for i, w in enumerate(self.weights):
            if w:
                out = out + w * self.student.forward_frames(audio, frame_starts + i * self.offset)
        return out

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, widened window samples) -> (N, outputs)."""
        n = self.student.cfg.window_samples
        out = 0.0
        for i, w in enumerate(self.weights):
            if w:
                out = out + w * self.student(windows[:, i * self.offset: i * self.offset + n])
        return out
