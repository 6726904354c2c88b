"""`distilface info`: size, cost, memory and measured context of a student.

Figures, all for one output frame and fp32:

- parameters;
- MACs per frame, per-window evaluation (`model(window)`), counted with forward hooks on every
  Conv1d and Linear (a conv output element costs in_channels / groups * kernel MACs, a linear one
  in_features; the window context conv, as run at inference, uses only the kernel taps a window
  reaches: 2 x 25 - 1 = 49 of 64 for a 25-step window). Norms and activations are elementwise and not counted as MACs (as thop/fvcore);
  their element count is reported as `elementwise_per_frame`;
- MACs per frame with the shared encoder (`Student.forward_frames`): each phase of the frame times
  modulo the stream hop (`stream_hop`: the encoder stride, or a frame grid with `encode_dense`)
  runs the encoder once over the stream, so per frame the encoder costs phases * (samples per
  frame) / hop steps; the head runs once per frame. 50 fps: 1 phase, 1 step; 30 fps: 3 phases,
  5/3 step hop -> 5 steps; 30 fps on an 80-sample grid: 1 sequence, 6.67 steps of 80 samples.
  The per-step encoder cost is measured, not derived: MACs of `encode` (or `encode_dense`) on a
  window plus n steps of audio minus those on a window, over n;
- memory (MB = 1e6 bytes): parameters + all intermediate tensors of one per-window evaluation, as
  the paper counts it ("params + all intermediate tensors"): every tensor an op allocates
  (views excluded), captured with a dispatch mode. The peak of simultaneously live intermediates is
  reported too (`peak_live_activation_mb`), a lower bound for what an inference engine needs;
- receptive field and future context measured from the built model: the gradient of one output frame
  w.r.t. its input window (float64) marks the samples that influence it. The future context is the
  number of influential samples at or after the frame time (window sample `past_samples`); it falls
  short of the config's `future_ms` by the tail samples the valid encoder convolutions never read
  (less than one encoder stride).
"""

from __future__ import annotations

import copy
import math
import weakref
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from distilface.audio import SAMPLE_RATE_HZ
from distilface.dataset import TRAIN_FPS
from distilface.student import (Student, WindowConv, count_parameters, encoder_stride, frame_starts,
                                stream_hop)

BYTES_PER_FLOAT = 4  # fp32
MB = 1e6


# -- MACs -----------------------------------------------------------------------------------------
def layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-accumulates spent producing `out` (batch included); 0 for non-MAC layers."""
    if isinstance(module, WindowConv):  # (N, C, W) at inference: the conv on the taps a window reaches
        n, c_out, w = out.shape
        lo, hi = module.used_taps(w)
        return n * c_out * w * (module.in_channels // module.groups) * (hi - lo + 1)
    if isinstance(module, nn.Conv1d):
        return out.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


_ELEMENTWISE = (nn.LayerNorm, nn.BatchNorm1d, nn.GELU, nn.Sigmoid, nn.Tanh)


@contextmanager
def count_macs(model: nn.Module):
    """Context manager yielding a dict {module name: MACs}, filled as the model runs."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            def hook(m, args, out, name=name):
                counts[name] = counts.get(name, 0) + layer_macs(m, out)
            handles.append(module.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def _macs(model: Student, fn, *args) -> dict[str, int]:
    with torch.no_grad(), count_macs(model) as counts:
        fn(*args)
    return dict(counts)


def _elementwise_per_frame(model: Student) -> int:
    """Elements produced by norms and activations in one per-window evaluation (both functional and
    module ones), from the dispatch trace."""
    names = ("gelu", "layer_norm", "batch_norm", "sigmoid", "tanh")
    with _AllocTrace() as trace, torch.no_grad():
        model(torch.zeros(1, model.cfg.window_samples))
    return sum(n for op, n in trace.op_elements if any(k in op for k in names))


def encoder_macs_per_step(model: Student, extra_steps: int = 8, hop: int | None = None) -> float:
    """MACs of the shared encoder per step of the sequence a stream computes, measured by
    differencing: 20 ms steps of `encode`, or `hop`-sample steps of `encode_dense` (None: the
    student's `stream_hop`)."""
    w = model.cfg.window_samples
    hop = stream_hop(model) if hop is None else hop
    enc = model.encode if hop == encoder_stride() else (lambda x: model.encode_dense(x, hop))
    a = sum(_macs(model, enc, torch.zeros(1, w)).values())
    b = sum(_macs(model, enc, torch.zeros(1, w + extra_steps * hop)).values())
    return (b - a) / extra_steps


def phases(fps: float, model: Student, frames: int = 1000) -> int:
    """Distinct window starts modulo the stream hop on the frame grid (sequences per stream): at 30
    fps 3 with no grid, 1 on an 80-sample grid with a dense encoder."""
    return len(torch.unique(frame_starts(frames, fps, model.cfg) % stream_hop(model)))


def shared_macs_per_frame(model: Student, fps: float, step_macs: float | None = None) -> float:
    """Encoder amortised over the stream (sequences x encoder cost per frame's hop) + one head per
    frame. step_macs: `encoder_macs_per_step(model)` when already known."""
    cfg = model.cfg
    if step_macs is None:
        step_macs = encoder_macs_per_step(model)
    feats = torch.zeros(1, cfg.channels, model.steps_per_window)
    head = sum(_macs(model, model.head, feats).values())
    hop_steps = SAMPLE_RATE_HZ / fps / stream_hop(model)
    return phases(fps, model) * hop_steps * step_macs + head


# -- memory -----------------------------------------------------------------------------------------
class _AllocTrace(TorchDispatchMode):
    """Records every tensor an op allocates (outputs whose storage is new; views and in-place results
    are not), their total, and the running peak of live ones (a tensor is freed when it dies; a base
    freed while a view of it lives counts as freed, so the peak is a slight lower bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.total_bytes = 0
        self.live_bytes = 0
        self.peak_live_bytes = 0
        self.op_elements: list[tuple[str, int]] = []
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr()
                  for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            self.op_elements.append((str(func), t.numel()))
            ptr = t.untyped_storage().data_ptr()
            if ptr in inputs or ptr in self._seen:  # a view or an in-place result
                continue
            self._seen.add(ptr)
            nbytes = t.untyped_storage().nbytes()
            self.total_bytes += nbytes
            self.live_bytes += nbytes
            self.peak_live_bytes = max(self.peak_live_bytes, self.live_bytes)
            weakref.finalize(t, self._free, ptr, nbytes)
        return out

    def _free(self, ptr: int, nbytes: int) -> None:
        self.live_bytes -= nbytes
        self._seen.discard(ptr)


def activation_bytes(model: Student) -> tuple[int, int]:
    """-> (all intermediate tensors, peak simultaneously live) bytes of one per-window evaluation
    (batch 1, inference). The output frame counts; the input window does not."""
    window = torch.zeros(1, model.cfg.window_samples)
    with torch.no_grad(), _AllocTrace() as trace:
        out = model(window)
        total, peak = trace.total_bytes, trace.peak_live_bytes
    del out
    return total, peak


# -- receptive field ------------------------------------------------------------------------------
def measure_context(model: Student) -> dict[str, int]:
    """Samples of the window that influence the output frame, from the input gradient (float64).

    -> {"first", "last"} (window sample indices, inclusive), "receptive_field_samples",
    "future_samples" (influential samples at or after the frame time), "past_samples"."""
    m = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(0)
    window = (0.1 * torch.randn(1, m.cfg.window_samples, generator=gen, dtype=torch.float64)).requires_grad_()
    pre = m.head(m.encode(window))["pre"] if hasattr(m, "head") else m(window)  # smoothed: after the activation
    # A random projection of all outputs: no output channel is accidentally insensitive.
    (pre * torch.randn(pre.shape, generator=gen, dtype=torch.float64)).sum().backward()
    idx = torch.nonzero(window.grad[0] != 0).squeeze(1)
    if len(idx) == 0:
        raise ValueError("the output does not depend on the input window")
    first, last = int(idx[0]), int(idx[-1])
    t0 = m.cfg.past_samples  # window sample at the frame time
    return {"first": first, "last": last, "receptive_field_samples": last - first + 1,
            "future_samples": max(last + 1 - t0, 0), "past_samples": t0 - first}


# -- report -----------------------------------------------------------------------------------------
def model_info(model: Student) -> dict:
    """Size, cost per frame, fp32 memory and measured context of a student (see module doc)."""
    from distilface.smoothing import EnsembleSmoothed

    if isinstance(model, EnsembleSmoothed):
        return smoothed_info(model)
    cfg = model.cfg
    model = model.eval()
    params = count_parameters(model)
    window = torch.zeros(1, cfg.window_samples)
    per_layer = _macs(model, model, window)
    windowed = sum(per_layer.values())
    total_act, peak_act = activation_bytes(model)
    ctx = measure_context(model)
    step_macs = encoder_macs_per_step(model)
    ms = 1000 / SAMPLE_RATE_HZ
    return {
        "channels": cfg.channels,
        "parameters": params,
        "macs_per_frame_windowed": windowed,
        "macs_per_layer_windowed": per_layer,
        "elementwise_per_frame": _elementwise_per_frame(model),
        "encoder_macs_per_step": step_macs,
        "frame_grid_samples": cfg.frame_grid_samples,
        "stream_hop_samples": stream_hop(model),
        "macs_per_frame_shared_30fps": shared_macs_per_frame(model, 30.0, step_macs),
        "macs_per_frame_shared_50fps": shared_macs_per_frame(model, TRAIN_FPS, step_macs),
        "phases_30fps": phases(30.0, model),
        "phases_50fps": phases(TRAIN_FPS, model),
        "memory_mb": (params * BYTES_PER_FLOAT + total_act) / MB,
        "memory_rule": "params + all intermediate tensors of one per-window evaluation, fp32",
        "param_mb": params * BYTES_PER_FLOAT / MB,
        "activation_mb": total_act / MB,
        "peak_live_activation_mb": peak_act / MB,
        "window_ms": cfg.window_ms,
        "future_ms_config": cfg.future_ms,
        "receptive_field_samples": ctx["receptive_field_samples"],
        "receptive_field_ms": ctx["receptive_field_samples"] * ms,
        "receptive_field_first_sample": ctx["first"],
        "receptive_field_last_sample": ctx["last"],
        "future_samples_measured": ctx["future_samples"],
        "future_ms_measured": ctx["future_samples"] * ms,
        "future_within_one_stride": abs(ctx["future_samples"] - cfg.future_samples) < encoder_stride(),
        "outputs": len(cfg.names),
        "output_activation": cfg.output_activation,
        "norm": cfg.norm,
    }


def smoothed_info(model) -> dict:
    """`model_info` of an ensemble-smoothed student: k predictions per frame (k nonzero weights),
    each a separate evaluation, so MACs and intermediates are k times the student's; the
    context is measured on the widened window."""
    d = model_info(model.student)
    k = sum(1 for w in model.weights if w)
    for key in ("macs_per_frame_windowed", "encoder_macs_per_step", "macs_per_frame_shared_30fps",
                "macs_per_frame_shared_50fps", "elementwise_per_frame", "activation_mb"):
        d[key] *= k
    d["macs_per_layer_windowed"] = {n: v * k for n, v in d["macs_per_layer_windowed"].items()}
    d["memory_mb"] = d["param_mb"] + d["activation_mb"]
    d["memory_rule"] += f"; {k} predictions per frame (ensemble smoothing)"
    ctx = measure_context(model)
    ms = 1000 / SAMPLE_RATE_HZ
    d.update({"window_ms": model.cfg.window_ms, "future_ms_config": model.cfg.future_ms,
              "receptive_field_samples": ctx["receptive_field_samples"],
              "receptive_field_ms": ctx["receptive_field_samples"] * ms,
              "receptive_field_first_sample": ctx["first"], "receptive_field_last_sample": ctx["last"],
              "future_samples_measured": ctx["future_samples"],
              "future_ms_measured": ctx["future_samples"] * ms,
              "future_within_one_stride": abs(ctx["future_samples"] - model.cfg.future_samples) < encoder_stride(),
              "smoothing_weights": list(model.weights), "smoothing_offset_samples": model.offset})
    return d


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g}"


def format_info(d: dict) -> str:
    """Human-readable report of `model_info`."""
    lines = [
        f"channels              {d['channels']}",
        f"parameters            {d['parameters']:,} ({_si(d['parameters'])})",
        f"MACs/frame windowed   {_si(d['macs_per_frame_windowed'])} ({_si(2 * d['macs_per_frame_windowed'])}FLOPs)",
        f"MACs/frame shared     {_si(d['macs_per_frame_shared_30fps'])} at 30 fps ({d['phases_30fps']} phases), "
        f"{_si(d['macs_per_frame_shared_50fps'])} at 50 fps ({d['phases_50fps']} phase)",
        f"encoder MACs/step     {_si(d['encoder_macs_per_step'])} (a step every {d.get('stream_hop_samples', 320)} "
        f"samples of stream; frame grid {d.get('frame_grid_samples', 1)})",
        f"memory fp32           {d['memory_mb']:.2f} MB = params {d['param_mb']:.2f} + intermediates "
        f"{d['activation_mb']:.2f} (peak live {d['peak_live_activation_mb']:.2f})",
        f"receptive field       {d['receptive_field_samples']} samples = {d['receptive_field_ms']:.1f} ms "
        f"(window samples {d['receptive_field_first_sample']}..{d['receptive_field_last_sample']} "
        f"of {d['window_ms']:g} ms)",
        f"future context        {d['future_ms_measured']:.1f} ms measured, {d['future_ms_config']:g} ms config"
        + ("" if d["future_within_one_stride"] else "  (MISMATCH: more than one encoder stride)"),
        f"outputs               {d['outputs']} channels, {d['output_activation']} (norm {d['norm']})",
    ]
    if d.get("checkpoint"):
        lines.insert(0, f"checkpoint            {d['checkpoint']}")
    return "\n".join(lines)


# The files of `distilface export` that `animate --model` runs (distilface.animate.load_model
# tells them by this suffix): weights laid out for a runtime, not the torch model that `info`
# measures and `export` exports. torch.load would call them "not a readable checkpoint".
EXPORT_KINDS = {".onnx": "an ONNX export", ".npz": "a .npz file (a native export or curves)",
                ".dfn": "a native export (.dfn)"}


def refuse_export(path: str | Path) -> None:
    """ValueError naming `path` where it is an export (EXPORT_KINDS), not a checkpoint."""
    kind = EXPORT_KINDS.get(Path(path).suffix.lower())
    if kind is not None:
        raise ValueError(f"{path}: {kind}, not a checkpoint; info and export take a checkpoint (.pt) or a "
                         f"shipped model name (animate --model runs an export)")


def checkpoint_info(path: str) -> dict:
    """`model_info` of a checkpoint file, with its path and training step when stored."""
    from distilface.checkpoint import load_student

    refuse_export(path)
    model, ckpt = load_student(path)
    d = model_info(model)
    d["checkpoint"] = str(path)
    if "step" in ckpt:
        d["step"] = ckpt["step"]
    return d
