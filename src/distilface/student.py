"""The tiny convolutional student: a raw 16 kHz audio window -> one frame of named curves.

Architecture (restored from "Tiny is not small enough", see ../shared/notes/paper.md):

    window (B, window_samples)                       512 ms: past + future context
    -> conv feature encoder, HuBERT-like             kernels 10,3,3,3,3,2,2 / strides 5,2,2,2,2,2,2
       (C channels, GELU, per-time-step norm)         -> (B, C, T) at 20 ms steps, 25 steps
    -> LayerNorm + Linear                            (pointwise)
    -> grouped Conv1d kernel 64 (+ residual)         global context over the window
    -> LayerNorm + strided convs down to 1 step
    -> 3 fully connected layers (fc_dims..., outputs) and the output activation

Normalisation never uses statistics over time (no GroupNorm over time): LayerNorm over channels
at each step, or BatchNorm with running statistics at inference. So the encoder's output at a
step depends only on the audio under its receptive field, and every frame whose window covers a
stretch of audio can share one encoder pass over it (`forward_frames`): this is what makes CPU
training and streaming cheap. The fully connected sizes do not depend on C, so students of
different widths have feature maps of the same size (the hybrid feature loss needs that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distilface.audio import SAMPLE_RATE_HZ
from distilface.rig.arkit import ARKIT_52

ENCODER_KERNELS = (10, 3, 3, 3, 3, 2, 2)
ENCODER_STRIDES = (5, 2, 2, 2, 2, 2, 2)
# "conv": the student below; the paper's baselines live in distilface.baselines.
ARCHS = ("conv", "mfcc", "whisper_conv")


def exact_div(a: float, b: int) -> int:
    q, r = divmod(round(a), b)
    if r or abs(a - round(a)) > 1e-9:
        raise ValueError(f"{a} is not a multiple of {b}")
    return q


@dataclass
class StudentConfig:
    channels: int = 288  # C0 (~3 M parameters, like the paper's C0); C0/2 = 144, C0/4 = 72
    window_ms: float = 512.0
    future_ms: float = 256.0  # audio after the frame time that the window sees
    names: tuple[str, ...] = ARKIT_52
    output_activation: str = "sigmoid"  # sigmoid: [0, 1] blendshapes | tanh: [-1, 1] rigs | none
    norm: str = "layer"  # layer | batch | none: all per time step, never over the window
    context_kernel: int = 64
    context_groups: int = 8
    fc_dims: tuple[int, ...] = (256, 150)  # independent of channels (hybrid feature loss)
    arch: str = "conv"  # conv (Student) | mfcc | whisper_conv (baselines, see build_student)

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.fc_dims = tuple(self.fc_dims)
        if self.output_activation not in ("sigmoid", "tanh", "none"):
            raise ValueError(f"output_activation must be sigmoid, tanh or none, not {self.output_activation!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.norm not in ("layer", "batch", "none"):
            raise ValueError(f"norm must be layer, batch or none, not {self.norm!r}")
        if self.channels % self.context_groups:
            raise ValueError(f"channels {self.channels} not divisible by context_groups {self.context_groups}")
        if not 0 <= self.future_ms <= self.window_ms:
            raise ValueError(f"future_ms {self.future_ms} outside [0, window_ms]")

    @property
    def window_samples(self) -> int:
        return exact_div(self.window_ms * SAMPLE_RATE_HZ / 1000, 1)

    @property
    def future_samples(self) -> int:
        return exact_div(self.future_ms * SAMPLE_RATE_HZ / 1000, 1)

    @property
    def past_samples(self) -> int:
        return self.window_samples - self.future_samples

    def to_dict(self) -> dict:
        d = asdict(self)
        d["names"] = list(self.names)
        d["fc_dims"] = list(self.fc_dims)
        return d


def encoder_stride() -> int:
    s = 1
    for stride in ENCODER_STRIDES:
        s *= stride
    return s


def encoder_length(samples: int) -> int:
    """Encoder steps produced by `samples` of audio (valid convolutions)."""
    n = samples
    for k, s in zip(ENCODER_KERNELS, ENCODER_STRIDES):
        n = (n - k) // s + 1
    return n


class StepNorm(nn.Module):
    """Normalisation over channels at each time step of a channels-last (B, T, C) tensor."""

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(channels)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(channels)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        if self.kind == "batch":  # statistics over batch and time in training, running ones after
            return self.norm(x.reshape(-1, x.shape[-1])).view(x.shape)
        return self.norm(x)


class StepConv(nn.Conv1d):
    """A bias-free, ungrouped Conv1d on channels-last (B, T, C_in) -> (B, T_out, C_out), one matmul.

    Same parameters and result as Conv1d on (B, C, T); on CPU the encoder runs about 1.5x faster
    this way because its per-step LayerNorms then need no transposes (docs/students.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C_in)
        k, s = self.kernel_size[0], self.stride[0]
        c_out, c_in, _ = self.weight.shape
        b, t, _ = x.shape
        t_out = (t - k) // s + 1
        if k == s:  # non-overlapping taps: a view, taps ordered (k, C_in)
            patches = x[:, : t_out * s].reshape(b, t_out, k * c_in)
            w = self.weight.permute(0, 2, 1).reshape(c_out, k * c_in)
        else:  # im2col copy, taps ordered (C_in, k)
            patches = x.unfold(1, k, s).reshape(b, t_out, c_in * k)
            w = self.weight.reshape(c_out, c_in * k)
        return patches @ w.t()


class WindowConv(nn.Conv1d):
    """The zero-padded grouped context conv over one window, output cut to the window's length.

    Only taps p - i + pad for input step p and output step i of the window are ever used (with 25
    steps and kernel 64: taps 8..56). Training multiplies by a block-Toeplitz matrix built from
    them (25 x 25 MACs per channel pair, 2x faster on CPU than the conv); inference runs the conv
    on just those taps (25 x 49), which needs no matrix in memory. Both equal Conv1d(x)[..., :W]."""

    def used_taps(self, steps: int) -> tuple[int, int]:
        """[lo, hi] of the kernel taps a window of `steps` steps reaches."""
        pad, kk = self.padding[0], self.kernel_size[0]
        return max(pad - steps + 1, 0), min(pad + steps - 1, kk - 1)

    def toeplitz(self, steps: int) -> torch.Tensor:
        """(groups, C_in/groups * steps, C_out/groups * steps); entry (p, i) holds tap p - i + pad."""
        g, kk, pad = self.groups, self.kernel_size[0], self.padding[0]
        c_out, cg_in, _ = self.weight.shape
        pos = torch.arange(steps)
        tap = pos[:, None] - pos[None, :] + pad
        valid = (tap >= 0) & (tap < kk)
        wt = self.weight[:, :, tap.clamp(0, kk - 1)] * valid  # (C_out, cg_in, p, i)
        return wt.view(g, c_out // g, cg_in, steps, steps).permute(0, 2, 3, 1, 4).reshape(
            g, cg_in * steps, c_out // g * steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, W) -> (N, C, W)
        n, c, w = x.shape
        if self.training:
            xg = x.reshape(n, self.groups, c // self.groups * w).transpose(0, 1)  # (g, N, C/g * W)
            out = torch.bmm(xg, self.toeplitz(w)).transpose(0, 1).reshape(n, c, w)
            return out + self.bias[:, None]
        lo, hi = self.used_taps(w)  # out[i] = sum_p x[p] w[p - i + pad]: padding pad - lo on w[lo:hi+1]
        return F.conv1d(x, self.weight[:, :, lo: hi + 1], self.bias, padding=self.padding[0] - lo,
                        groups=self.groups)[..., :w]


def _reduction_plan(steps: int) -> list[tuple[int, int]]:
    """(kernel, stride) of convs that take `steps` time steps down to exactly 1."""
    plan = []
    while steps > 1:
        k = 3 if steps >= 3 else 2
        plan.append((k, 2 if steps > 3 else 1))
        steps = (steps - k) // plan[-1][1] + 1
    return plan


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.steps_per_window = encoder_length(cfg.window_samples)  # 25 for 512 ms
        convs, norms = [], []
        in_ch = 1
        for k, s in zip(ENCODER_KERNELS, ENCODER_STRIDES):
            convs.append(StepConv(in_ch, c, k, s, bias=False))
            norms.append(StepNorm(cfg.norm, c))
            in_ch = c
        self.encoder_convs = nn.ModuleList(convs)
        self.encoder_norms = nn.ModuleList(norms)
        self.proj_norm = nn.LayerNorm(c)
        self.proj = nn.Linear(c, c)
        # Global context over the window (HuBERT's positional conv): zero-padded at the window
        # edges, so it is evaluated per window, after the shared encoder.
        self.context = WindowConv(c, c, cfg.context_kernel, padding=cfg.context_kernel // 2,
                                 groups=cfg.context_groups)
        self.reduce_norm = nn.LayerNorm(c)
        self.reduce = nn.ModuleList(nn.Conv1d(c, c, k, s) for k, s in _reduction_plan(self.steps_per_window))
        dims = (c, *cfg.fc_dims, len(cfg.names))
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    # -- shared part --------------------------------------------------------------------------
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, C, steps): features every 20 ms, each from 400 samples."""
        x = audio.unsqueeze(2)  # (B, samples, 1): channels last throughout the encoder
        for conv, norm in zip(self.encoder_convs, self.encoder_norms):
            x = F.gelu(norm(conv(x)))
        return self.proj(self.proj_norm(x)).transpose(1, 2)

    # -- per-window part ----------------------------------------------------------------------
    def head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, steps_per_window) -> {"fc": [fc feature maps], "pre": (N, out), "out": (N, out)}."""
        ctx = self.context(feats)
        x = feats + F.gelu(ctx)
        x = self.reduce_norm(x.transpose(1, 2)).transpose(1, 2)
        for conv in self.reduce:
            x = F.gelu(conv(x))
        return self.fc_head(x[..., 0])  # (N, C, 1) -> (N, C); squeeze exports as an If on the shape

    def fc_head(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C) -> the fully connected layers' feature maps, the pre-activation output and the output."""
        fc_maps = []
        for layer in self.fc[:-1]:
            x = F.gelu(layer(x))
            fc_maps.append(x)
        pre = self.fc[-1](x)
        return {"fc": fc_maps, "pre": pre, "out": self._activate(pre)}

    def _activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.cfg.output_activation == "sigmoid":
            return torch.sigmoid(pre)
        if self.cfg.output_activation == "tanh":
            return torch.tanh(pre)
        return pre

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Per-window evaluation: (N, window_samples) -> (N, outputs)."""
        return self.head(self.encode(windows))["out"]

    def forward_chunks(self, audio: torch.Tensor, num_frames: int) -> dict[str, torch.Tensor]:
        """Shared evaluation of frames one encoder step (20 ms) apart.

        audio: (B, window_samples + (num_frames - 1) * 320); frame j's window starts at sample
        320 j. Returns head outputs for B * num_frames windows, frame-major within each chunk.
        Equals `forward` on each window (same phase, valid convolutions)."""
        feats = self.encode(audio)  # (B, C, steps)
        wins = feats.unfold(2, self.steps_per_window, 1)[:, :, :num_frames]  # (B, C, F, W)
        b, c, f, w = wins.shape
        if f != num_frames:
            raise ValueError(f"audio of {audio.shape[1]} samples holds {f} frames, not {num_frames}")
        return self.head(wins.permute(0, 2, 1, 3).reshape(b * f, c, w))

    def forward_frames(self, audio: torch.Tensor, frame_starts: torch.Tensor) -> torch.Tensor:
        """Frames at any sample positions of one utterance, sharing the encoder per phase.

        audio: (samples,); frame_starts: (F,) int first sample of each frame's window (may be
        negative or run past the end: zero padding). Returns (F, outputs). Frames whose starts
        are equal modulo the encoder stride share one encoder pass (30 fps: 3 phases)."""
        stride = encoder_stride()
        starts = frame_starts.to(torch.long)
        lo = int(starts.min())
        hi = int(starts.max()) + self.cfg.window_samples
        padded = F.pad(audio, (max(-lo, 0), max(hi - audio.shape[0], 0)))
        base = min(lo, 0)
        out = torch.empty(len(starts), len(self.cfg.names), dtype=audio.dtype)
        rel = starts - base
        for phase in torch.unique(rel % stride).tolist():
            idx = torch.nonzero(rel % stride == phase).squeeze(1)
            steps = (rel[idx] - phase) // stride  # encoder step of each window's first feature
            first, last = int(steps.min()), int(steps.max())
            seg = padded[phase + first * stride: phase + last * stride + self.cfg.window_samples]
            feats = self.encode(seg.unsqueeze(0))[0]  # (C, steps)
            wins = feats.unfold(1, self.steps_per_window, 1)  # (C, n, W)
            out[idx] = self.head(wins[:, steps - first].permute(1, 0, 2))["out"]
        return out


def build_student(cfg: StudentConfig) -> nn.Module:
    """The network `cfg.arch` names: `Student` for "conv", else a baseline of distilface.baselines
    (same interface: encode, head, forward, forward_chunks, forward_frames)."""
    if cfg.arch == "conv":
        return Student(cfg)
    from distilface.baselines import BASELINES

    return BASELINES[cfg.arch](cfg)


def frame_starts(num_frames: int, fps: float, cfg: StudentConfig) -> torch.Tensor:
    """First sample of each frame's window: frame k shows time k / fps (rounded to a sample)."""
    k = torch.arange(num_frames, dtype=torch.float64)
    return torch.round(k * SAMPLE_RATE_HZ / fps).to(torch.long) - cfg.past_samples


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
