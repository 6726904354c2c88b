"""The streaming step in torch: one phase's new encoder steps and the frames they complete.

`PhaseStep` is the function `StreamingAnimator` calls per phase (`distilface.runtime.streaming`),
and what `distilface export --streaming` exports as the ONNX streaming graph, with its state as
explicit inputs and outputs:

    audio   (1, L)           the samples of n new steps: L = hop (n - 1) + receptive - R hop
    cache   (1, C, S + R)    state in: the phase's last S = (W - 1) d feature steps, then the
                             last R outputs of the shared encoder layers (R = 0 without a grid)
    frames  (F,) int64       first step of each wanted window, as an index into cache + new steps
 -> curves  (F, outputs)     one frame per window (its W steps d apart)
    cache_out (1, C, S + R)  the last S steps of cache + new steps, and the new R outputs (state out)

hop is the encoder stride (320 samples, d = 1, R = 0: one sequence per phase), or with a frame
grid and a dense encoder the grid (`distilface.student.stream_hop`; at 80 samples d = 4, R = 3
and all frames of a stream share one sequence). The R cached outputs spare each call the
encoder's shared layers on R hops of audio it has seen (`Student.encode_dense_tail`). With a
zero cache (the first call, or after a gap) `audio` holds R hops more, as if R = 0, and the
first R new steps read zeros: they come before any window the caller reads.

It works for every arch whose `encode` gives step t from samples [320 t, 320 t + receptive) only
(the conv student and both baselines); the receptive field is measured from the built model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from distilface.runtime.streaming import StreamGeometry
from distilface.student import encoder_stride, stream_hop


def _encoded_steps(student: nn.Module, samples: int) -> int:
    try:
        with torch.inference_mode():
            return int(student.encode(torch.zeros(1, samples)).shape[-1])
    except RuntimeError:  # shorter than a kernel
        return 0


def receptive_samples(student: nn.Module) -> int:
    """Fewest samples `student.encode` turns into one step, measured by bisection. Steps of valid
    operations with stride 320: a window of n samples holds (n - receptive) // 320 + 1 steps."""
    stride, w = encoder_stride(), student.steps_per_window
    hi = student.cfg.window_samples - (w - 1) * stride  # holds one step at least
    lo = hi - stride  # holds none
    if _encoded_steps(student, hi) != 1 or _encoded_steps(student, lo) != 0:
        raise ValueError(f"{type(student).__name__}: encoder steps are not every {stride} samples")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _encoded_steps(student, mid) >= 1 else (mid, hi)
    return hi


def stream_geometry(student: nn.Module) -> StreamGeometry:
    cfg = student.cfg
    r = receptive_samples(student)
    hop = stream_hop(student)
    with torch.inference_mode():
        channels = int(student.encode(torch.zeros(1, r)).shape[1])
    return StreamGeometry(window_samples=cfg.window_samples, past_samples=cfg.past_samples,
                          stride_samples=encoder_stride(), steps_per_window=student.steps_per_window,
                          receptive_samples=r, feature_channels=channels, hop_samples=hop,
                          grid_samples=cfg.frame_grid_samples,
                          tail_steps=student.dense_tail_steps(hop) if hop != encoder_stride() else 0)


class PhaseStep(nn.Module):
    """New encoder steps of one phase + the head on the windows they complete (module doc)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.steps = int(student.steps_per_window)
        if self.steps < 2:
            raise ValueError("streaming needs at least 2 encoder steps per window")
        self.hop = stream_hop(student)
        d = encoder_stride() // self.hop
        self.cache_steps = (self.steps - 1) * d
        self.register_buffer("taps", torch.arange(self.steps) * d, persistent=False)

    def forward(self, audio: torch.Tensor, cache: torch.Tensor,
                frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.cache_steps
        if self.hop == encoder_stride():
            new, tail = self.student.encode(audio), cache[:, :, s:]  # (1, C, n), (1, C, 0)
        else:
            new, tail = self.student.encode_dense_tail(audio, self.hop, cache[:, :, s:].transpose(1, 2))
            tail = tail.transpose(1, 2)  # (1, C, R)
        feats = torch.cat([cache[:, :, :s], new], dim=2)[0]  # (C, S + n)
        idx = (frames[:, None] + self.taps[None, :]).reshape(-1)  # (F W,)
        wins = feats.index_select(1, idx).reshape(feats.shape[0], -1, self.steps).transpose(0, 1)  # (F, C, W)
        return self.student.head(wins)["out"], torch.cat([feats[:, -s:], tail[0]], dim=1).unsqueeze(0)


class TorchBackend:
    """`StreamingAnimator` backend running `PhaseStep` in torch (numpy in and out)."""

    streaming = True

    def __init__(self, student: nn.Module) -> None:
        if not hasattr(student, "encode") or not hasattr(student, "head"):
            raise TypeError(f"{type(student).__name__}: not a student (needs encode and head)")
        self.step = PhaseStep(student.eval())
        self.names = tuple(student.cfg.names)
        self.geometry = stream_geometry(student)

    @torch.inference_mode()
    def phase_step(self, audio: np.ndarray, cache: np.ndarray | None,
                   frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.geometry
        c = (torch.zeros(1, g.feature_channels, g.state_steps) if cache is None
             else torch.from_numpy(cache)[None])
        out, cache_out = self.step(torch.from_numpy(audio)[None], c, torch.from_numpy(frames))
        return out.numpy(), cache_out[0].numpy()
