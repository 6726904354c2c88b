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

from dataclasses import asdict, dataclass, field, replace

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
    # Frame times are rounded to a multiple of this many samples (1: to the sample). A grid that
    # is one of `dense_hops()` lets all frames share one dense encoder pass (`encode_dense`)
    # instead of one pass per phase. An inference setting: training never reads it.
    frame_grid_samples: int = 1

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
        if not 1 <= int(self.frame_grid_samples) <= encoder_stride():
            raise ValueError(f"frame_grid_samples must be 1..{encoder_stride()}, not {self.frame_grid_samples}")
        self.frame_grid_samples = int(self.frame_grid_samples)

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


def dense_hops() -> tuple[int, ...]:
    """Spacings (samples) at which `Student.encode_dense` can run: the encoder's cumulative
    strides (5, 10, 20, 40, 80, 160, 320)."""
    hops, s = [], 1
    for stride in ENCODER_STRIDES:
        s *= stride
        hops.append(s)
    return tuple(hops)


def stream_hop(student: nn.Module) -> int:
    """Samples between the encoder steps a stream computes: the frame grid where the student has a
    dense encoder for it (every frame then reads one shared sequence), else the encoder stride (one
    sequence per phase of the frame grid)."""
    grid = student.cfg.frame_grid_samples
    return grid if grid in dense_hops() and getattr(student, "dense_encoder", False) else encoder_stride()


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

    def forward(self, x: torch.Tensor, dilation: int = 0) -> torch.Tensor:  # (B, T, C_in)
        """dilation > 0: the conv at stride 1 with its taps that many steps apart, its output at
        every input step where plain gives every stride-th (`Student.encode_dense`)."""
        if dilation:
            return self._dense(x, dilation)
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


    def _dense(self, x: torch.Tensor, dilation: int) -> torch.Tensor:  # (B, T, C_in) -> (B, T_out, C_out)
        k = self.kernel_size[0]
        c_out, c_in, _ = self.weight.shape
        b = x.shape[0]
        patches = x.unfold(1, (k - 1) * dilation + 1, 1)[..., ::dilation]  # (B, T_out, C_in, k)
        return patches.reshape(b, -1, c_in * k) @ self.weight.reshape(c_out, c_in * k).t()


# Batched windows without gradients (offline `animate`, `eval`) take the block-Toeplitz product
# from this many on: C0/4 on one thread, 64 windows 10.0 -> 4.2 ms, 512 windows 71 -> 11 ms
# (matrix build included; the build is cached, so the product alone is faster still).
TOEPLITZ_MIN_WINDOWS = 8


class WindowConv(nn.Conv1d):
    """The zero-padded grouped context conv over one window, output cut to the window's length.

    Only taps p - i + pad for input step p and output step i of the window are ever used (with 25
    steps and kernel 64: taps 8..56). Training multiplies by a block-Toeplitz matrix built from
    them (25 x 25 MACs per channel pair, 2x faster on CPU than the conv), and so do batches of
    `TOEPLITZ_MIN_WINDOWS` or more without gradients (the matrix cached); a few windows run the
    conv on just those taps (25 x 49), which needs no matrix in memory (streaming, the exported
    graphs). All equal Conv1d(x)[..., :W]."""

    def used_taps(self, steps: int) -> tuple[int, int]:
        """[lo, hi] of the kernel taps a window of `steps` steps reaches."""
        pad, kk = self.padding[0], self.kernel_size[0]
        return max(pad - steps + 1, 0), min(pad + steps - 1, kk - 1)

    def _cached_toeplitz(self, steps: int) -> torch.Tensor:
        """`toeplitz(steps)` kept between calls without gradients: building it costs about as
        much as the conv on 8 windows (4 ms for C0/4), the product on many windows a tenth of the
        conv. Rebuilt when the weights change (in-place updates bump their version)."""
        key = (steps, self.weight.data_ptr(), self.weight._version, self.weight.dtype)
        cache = getattr(self, "_toeplitz_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, self.toeplitz(steps))
            self._toeplitz_cache = cache
        return cache[1]

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
        if self.training or (n >= TOEPLITZ_MIN_WINDOWS and not torch.is_grad_enabled()):
            xg = x.reshape(n, self.groups, c // self.groups * w).transpose(0, 1)  # (g, N, C/g * W)
            out = torch.bmm(xg, self.toeplitz(w) if self.training else self._cached_toeplitz(w))
            return out.transpose(0, 1).reshape(n, c, w) + self.bias[:, None]
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
    # `encode_dense` runs on this class's raw-audio encoder (`encoder_convs`); subclasses with
    # another encoder (distilface.baselines) set it False and stream one sequence per phase.
    dense_encoder = True

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

    def encode_dense(self, audio: torch.Tensor, hop: int) -> torch.Tensor:
        """(B, samples) -> (B, C, steps): encoder steps every `hop` samples (one of `dense_hops()`),
        step q equal to `encode(audio[:, hop * q:])[..., 0]`.

        The layers whose total stride is at most `hop` (the *shared* layers) run as in `encode`,
        once for all the shifted copies; each later layer runs at stride 1 with its taps as far
        apart as its input steps would have been (a dilated conv, "a trous"). At hop 80 the first
        five layers, 98 % of the encoder's multiply-adds, are shared by the four 80-sample phases
        of the 320 stride."""
        return self.encode_dense_tail(audio, hop)[0]

    def dense_tail_steps(self, hop: int) -> int:
        """Outputs of the shared layers (hop apart) that one dense step reads beyond its own: at
        hop 80, 3 (the last two layers, kernel 2, dilations 1 and 2)."""
        return sum((conv.kernel_size[0] - 1) * d for conv, d in self._dense_plan(hop) if d)

    def _dense_plan(self, hop: int) -> list[tuple[nn.Module, int]]:
        """(conv, dilation) per encoder layer of `encode_dense`: 0 for a shared layer."""
        if hop not in dense_hops():
            raise ValueError(f"encode_dense: hop {hop} is not one of {dense_hops()}")
        plan, total = [], 1  # total: stride of the layer's input steps in samples
        for conv in self.encoder_convs:
            s = conv.stride[0]
            plan.append((conv, 0 if total * s <= hop else total // hop))
            total *= s
        return plan

    def encode_dense_tail(self, audio: torch.Tensor, hop: int,
                          tail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_dense` for a stream: tail (B, R, C) are the last R = `dense_tail_steps(hop)`
        shared-layer outputs before `audio` (from the previous call), so `audio` need not hold
        their samples again. Returns ((B, C, steps), the new tail (B, R, C)); with a tail, steps =
        the shared layers' outputs on `audio`."""
        r = self.dense_tail_steps(hop)
        x = audio.unsqueeze(2)  # (B, samples, 1): channels last
        new_tail = None
        for (conv, d), norm in zip(self._dense_plan(hop), self.encoder_norms):
            if d and new_tail is None:  # x: the shared layers' output, hop apart
                if tail is not None:
                    x = torch.cat([tail, x], dim=1)
                new_tail = x[:, -r:]  # r >= 1: every upper layer has a kernel of 2 or more
            x = F.gelu(norm(conv(x, d)))
        if new_tail is None:  # hop 320: no upper layer, no tail
            new_tail = x[:, :0]
        return self.proj(self.proj_norm(x)).transpose(1, 2), new_tail

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
        are equal modulo the stream hop (`stream_hop`: the encoder stride, 320, or the frame grid
        with `encode_dense`) share one encoder pass (30 fps on no grid: 3 phases)."""
        hop = stream_hop(self)
        k = encoder_stride() // hop  # encoder sequence steps per 320 samples
        starts = frame_starts.to(torch.long)
        lo = int(starts.min())
        hi = int(starts.max()) + self.cfg.window_samples
        padded = F.pad(audio, (max(-lo, 0), max(hi - audio.shape[0], 0)))
        base = min(lo, 0)
        out = torch.empty(len(starts), len(self.cfg.names), dtype=audio.dtype)
        rel = starts - base
        taps = torch.arange(self.steps_per_window) * k
        for phase in torch.unique(rel % hop).tolist():
            idx = torch.nonzero(rel % hop == phase).squeeze(1)
            steps = (rel[idx] - phase) // hop  # sequence step of each window's first feature
            first, last = int(steps.min()), int(steps.max())
            seg = padded[phase + first * hop: phase + last * hop + self.cfg.window_samples]
            seq = seg.unsqueeze(0)
            feats = (self.encode(seq) if hop == encoder_stride() else self.encode_dense(seq, hop))[0]  # (C, steps)
            wins = feats[:, (steps - first)[:, None] + taps[None, :]]  # (C, n, W)
            out[idx] = self.head(wins.permute(1, 0, 2))["out"]
        return out


def narrower(cfg: StudentConfig, channels: int) -> StudentConfig:
    """`cfg` with `channels`; the context conv's groups shrink with it where they no longer divide
    (the groups of a width-C0/4 student, 8, leave 9 channels per group: kept at 9 or more), as in
    configs/c0-8-hybrid.toml and c0-16-hybrid.toml; the cost scripts build their widths with it."""
    groups = cfg.context_groups
    while channels % groups or channels // groups < 9 and groups > 1:
        groups -= 1
    return replace(cfg, channels=channels, context_groups=groups)


def build_student(cfg: StudentConfig) -> nn.Module:
    """The network `cfg.arch` names: `Student` for "conv", else a baseline of distilface.baselines
    (same interface: encode, head, forward, forward_chunks, forward_frames)."""
    if cfg.arch == "conv":
        return Student(cfg)
    from distilface.baselines import BASELINES

    return BASELINES[cfg.arch](cfg)


def on_frame_grid(student: nn.Module, grid_samples: int | None) -> nn.Module:
    """`student` with its frame times on a grid of `grid_samples` (None: as it is); wrap it for
    smoothing after this, so that the smoothing offset lands on the grid too."""
    if grid_samples is not None:
        student.cfg = replace(student.cfg, frame_grid_samples=int(grid_samples))
    return student


def frame_starts(num_frames: int, fps: float, cfg: StudentConfig) -> torch.Tensor:
    """First sample of each frame's window: frame k shows time k / fps rounded to a multiple of
    `cfg.frame_grid_samples` (1: to a sample), round half to even as `StreamingAnimator`."""
    k = torch.arange(num_frames, dtype=torch.float64)
    grid = getattr(cfg, "frame_grid_samples", 1)
    return torch.round(k * SAMPLE_RATE_HZ / fps / grid).to(torch.long) * grid - cfg.past_samples


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
