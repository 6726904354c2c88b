"""`distilface export MODEL -o model.onnx`: a student as an ONNX graph, checked before it is kept.

Two graphs (`GRAPHS`):

    windowed   window (N, window_samples) -> curves (N, outputs): one window in, one frame out
    streaming  audio (1, L), cache (1, C, W - 1), frames (F,) -> curves (F, outputs), cache_out
               (1, C, W - 1): `distilface.runtime.step.PhaseStep`, the state explicit

Every export is checked before it lands at the output path (written to a temporary file, renamed
only when all checks pass): the ONNX checker (full check, with shape inference), then the file is
loaded in onnxruntime and streamed (`StreamingAnimator(OrtModel(...))`, pushed in 20 ms chunks)
over real speech, the bundled example clip, and compared with the torch student's offline frames
(`animate_audio`); beyond `FP32_TOLERANCE` (or `INT8_TOLERANCE` with `int8`) it raises
`ExportMismatch` and nothing is written.

Export formulation. `StepConv` runs its im2col with `Tensor.unfold`, which the TorchScript ONNX
exporter cannot express on a dynamic axis, and `WindowConv` picks its kernel taps from the input's
length, which tracing turns into a dynamic slice of the kernel (a conv "of unknown shape"). The
exported copy (`export_copy`) gathers each StepConv's k taps by k strided slices (one MatMul on
the concatenated patches, as in torch) and fixes the context conv's taps for the window's steps:
the same arithmetic up to summation order (measured differences in docs/runtime.md). The torch
model itself is not touched. (As conv1d the StepConvs export too, but int8 then runs them as
ConvInteger, 3x slower than fp32 on this CPU; as MatMulInteger they are faster than fp32.)

`int8`: onnxruntime's dynamic quantisation (weights int8 per output channel, activations uint8
with ranges computed per call) of every Conv, MatMul and Gemm past the front end
(`front_end_nodes`: convs on raw audio or its spectrum stay float). Its quality cost on the test
sets is `distilface.runtime.quality.int8_quality` (`distilface export --int8 --eval-sets clean,real`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distilface.audio import EXAMPLE_AUDIO, SAMPLE_RATE_HZ
from distilface.fileio import atomic_path
from distilface.runtime.ort import GRAPHS, META_KEY, META_VERSION, OrtModel
from distilface.runtime.step import PhaseStep, stream_geometry
from distilface.runtime.streaming import StreamingAnimator, stream_all
from distilface.student import StepConv, WindowConv

log = logging.getLogger(__name__)

ONNX_OPSET = 17  # LayerNormalization is an ONNX op from 17 on
FP32_TOLERANCE = 1e-4  # onnxruntime fp32 vs torch, max abs over all curves and frames
INT8_TOLERANCE = 0.05  # int8 vs torch fp32: catches a broken graph (shipped default: 0.015), not a quality figure
CHECK_CHUNK_S = 0.02  # the check streams the clip in 20 ms pushes, like a game loop


class ExportMismatch(ValueError):
    """The exported graph does not reproduce the torch student; nothing was written."""


class _SlicedStepConv(StepConv):
    """StepConv with its patches gathered by strided slices (or a reshape) instead of `unfold`:
    exports with dynamic batch and time axes, as one MatMul (which int8 runs as MatMulInteger)."""

    batch1 = False  # set for the streaming graph: batch 1, time axis dynamic (else the reverse)

    def forward(self, x: torch.Tensor, dilation: int = 0) -> torch.Tensor:  # (B, T, C_in) -> (B, T_out, C_out)
        if dilation:
            return self._dense(x, dilation)
        k, s = self.kernel_size[0], self.stride[0]
        c_out, c_in, _ = self.weight.shape
        t = int(x.shape[1])  # a constant of the trace: the window's length, or one valid stream length
        # the streaming graph's dynamic axis is time where the batch is the stream's 1; a batch of
        # frames (the MFCC baseline's convs over cepstra) is dynamic there, its time axis is not
        batch1 = self.batch1 and int(x.shape[0]) == 1
        if k % s == 0 and (t - k) % s == 0 and (batch1 or not self.batch1):
            # Kernel a whole number of strides and no leftover steps: rows of s steps (a reshape,
            # no copy) hold the patches, kernel / stride rows each. Fewer nodes than k slices: about
            # 10 us less per streaming call (docs/performance.md). Leftover steps are the
            # same for every stream length L = 320 (n - 1) + receptive (320 is a multiple of every
            # layer's total stride), so the trace's length decides for all of them.
            rows = x.reshape((1, -1, s * c_in) if batch1 else (-1, t // s, s * c_in))
            m = k // s
            patches = rows if m == 1 else torch.cat([rows[:, j: (j - (m - 1)) or None] for j in range(m)], dim=2)
        else:
            # Tap j of every output step: rows j, j + s, ... up to T - (k - 1 - j), exclusive: that
            # range holds ceil((T - k + 1) / s) = t_out rows for every j. Ends counted from the back
            # keep the slices constant in the graph; computed from T, they cost shape-arithmetic
            # nodes (Shape, Gather, Sub, Div, Unsqueeze): with the squeeze's If, 137 of C0/4's 288.
            patches = torch.cat([x[:, j: (j - (k - 1)) or None: s] for j in range(k)], dim=2)  # (k, C_in) order
        out = patches @ self.weight.permute(0, 2, 1).reshape(c_out, k * c_in).t()
        return out if self.bias is None else out + self.bias

    def _dense(self, x: torch.Tensor, dilation: int) -> torch.Tensor:  # (B, T, C_in) -> (B, T_out, C_out)
        """The dilated stride-1 conv by k slices `dilation` rows apart, ends counted from the back."""
        k = self.kernel_size[0]
        c_out, c_in, _ = self.weight.shape
        reach = (k - 1) * dilation
        patches = torch.cat([x[:, j * dilation: (j * dilation - reach) or None] for j in range(k)], dim=2)
        return patches @ self.weight.permute(0, 2, 1).reshape(c_out, k * c_in).t()


class _FixedWindowConv(WindowConv):
    """WindowConv at inference on windows of `steps` steps: the used taps are fixed here, not read
    from the input's (traced, so dynamic) shape."""

    steps: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, steps) -> (N, C, steps)
        lo, hi = self.used_taps(self.steps)
        return F.conv1d(x, self.weight[:, :, lo: hi + 1], self.bias, padding=self.padding[0] - lo,
                        groups=self.groups)[..., : self.steps]


class _Windowed(nn.Module):
    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, window: torch.Tensor) -> torch.Tensor:  # (N, window_samples) -> (N, outputs)
        return self.student(window)


def export_copy(student: nn.Module) -> nn.Module:
    """A deep copy of `student` in eval mode whose StepConvs gather patches by slicing and whose
    window context conv has its taps fixed (module doc); same parameters and outputs."""
    twin = copy.deepcopy(student).eval()
    for m in twin.modules():
        if type(m) is StepConv:
            m.__class__ = _SlicedStepConv
        elif type(m) is WindowConv:
            m.__class__ = _FixedWindowConv
            m.steps = int(student.steps_per_window)
    return twin


def _graph_module(student: nn.Module, graph: str) -> tuple[nn.Module, tuple, dict[str, Any]]:
    """(module, example inputs, torch.onnx.export keyword arguments) of one graph."""
    g = stream_geometry(student)
    twin = export_copy(student)
    if graph == "windowed":
        args = (0.1 * torch.randn(2, g.window_samples, generator=torch.Generator().manual_seed(0)),)
        kw = {"input_names": ["window"], "output_names": ["curves"],
              "dynamic_axes": {"window": {0: "windows"}, "curves": {0: "windows"}}}
        return _Windowed(twin), args, kw
    new_steps = 4
    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, g.receptive_samples + (new_steps - 1 - g.tail_steps) * g.hop_samples, generator=gen)
    cache = torch.randn(1, g.feature_channels, g.state_steps, generator=gen)
    args = (audio, cache, torch.tensor([1, new_steps - 1]))
    kw = {"input_names": ["audio", "cache", "frames"], "output_names": ["curves", "cache_out"],
          "dynamic_axes": {"audio": {1: "samples"}, "frames": {0: "frames"}, "curves": {0: "frames"}}}
    for m in twin.modules():
        if isinstance(m, _SlicedStepConv):
            m.batch1 = True
    return PhaseStep(twin), args, kw


def _metadata(student: nn.Module, graph: str, int8: bool, source: str, fps: float) -> dict[str, Any]:
    from distilface.smoothing import smooth_offset_samples

    cfg = student.cfg
    return {"version": META_VERSION, "graph": graph, "int8": int8, "source": source,
            "arch": cfg.arch, "channels": cfg.channels, "window_ms": cfg.window_ms, "future_ms": cfg.future_ms,
            "output_activation": cfg.output_activation, "names": list(cfg.names),
            "sample_rate_hz": SAMPLE_RATE_HZ, "checked_fps": fps,
            "smooth_offset_samples": smooth_offset_samples(cfg.frame_grid_samples), **asdict(stream_geometry(student))}


def _write_onnx(student: nn.Module, graph: str, path: Path, meta: dict[str, Any]) -> None:
    module, args, kw = _graph_module(student, graph)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=ONNX_OPSET,
                              do_constant_folding=True, **kw)
    _set_metadata(path, meta)


QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
# Where the front end ends: ops past one of these see features, not raw audio or its spectrum.
FRONT_END_ENDS = frozenset({"Log", "LayerNormalization", "Erf", "Tanh", "Sigmoid", "Relu"})


def front_end_nodes(model: Any, inputs: tuple[str, ...] = ("audio", "window")) -> list[str]:
    """Names of the QUANTISED_OPS nodes that read the audio input before any of FRONT_END_ENDS:
    the first encoder conv on raw samples, or the DFT and mel filterbank convs of the baselines.
    uint8 activations cannot hold speech's dynamic range there (docs/runtime.md: with the conv
    student's first conv quantised too, curves moved by up to 0.15, without it 0.0055), so they
    stay float."""
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found, seen, todo = [], set(), [i for i in inputs if i in readers]
    while todo:
        for node in readers.get(todo.pop(), []):
            if node.name in seen or node.op_type in FRONT_END_ENDS:
                continue
            seen.add(node.name)
            if node.op_type in QUANTISED_OPS:
                found.append(node.name)
            todo.extend(node.output)
    return found


def _quantise(src: Path, dst: Path) -> list[str]:
    """Dynamic int8 quantisation of src into dst; returns the nodes kept in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_float = front_end_nodes(onnx.load(str(src)))
    hint = _DropHint()  # its advice to pre-process: measured, it changes nothing here
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(QUANTISED_OPS), nodes_to_exclude=keep_float)
    finally:
        logging.getLogger().removeFilter(hint)
    return keep_float


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def check_onnx(path: Path) -> None:
    """The ONNX checker with full shape inference; raises onnx's ValidationError."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def compare_on_audio(onnx_path: Path, student: nn.Module, audio: np.ndarray, fps: float,
                     chunk_s: float = CHECK_CHUNK_S, backend: Any = None) -> dict[str, float]:
    """Stream `audio` (16 kHz) through the ONNX file (or `backend`, another runtime of the file
    at `onnx_path`) in `chunk_s` pushes and compare with the torch student's offline frames:
    {"frames", "max_abs_diff", "mean_abs_diff"}."""
    from distilface.animate import animate_audio

    want = animate_audio(student, audio, fps).values
    model = OrtModel(onnx_path) if backend is None else backend
    got = stream_all(StreamingAnimator(model, fps), audio, round(chunk_s * SAMPLE_RATE_HZ))
    return frame_differences(got, want, f"{onnx_path}: {model!r}")


def frame_differences(got: np.ndarray, want: np.ndarray, what: str) -> dict[str, float]:
    """{"frames", "max_abs_diff", "mean_abs_diff"} of an export's frames against torch's (inf where
    any is not finite); ExportMismatch when their shapes differ (`what` names the export)."""
    if got.shape != want.shape:
        raise ExportMismatch(f"{what}: {got.shape} frames, {want.shape} from torch")
    diff = np.abs(got.astype(np.float64) - want)
    return {"frames": int(len(want)), "max_abs_diff": float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf"),
            "mean_abs_diff": float(diff.mean())}


def export_model(student: nn.Module, out_path: str | Path, *, streaming: bool = False, int8: bool = False,
                 fps: float = 30.0, source: str = "", audio: np.ndarray | None = None) -> dict[str, Any]:
    """Export `student` (torch, eval mode) to `out_path` and check it (module doc).

    Returns a report: path, graph, int8, bytes (and fp32_bytes with int8), the comparison with
    torch and the seconds taken. Raises ExportMismatch (nothing written) when onnxruntime's
    frames differ from torch's by more than the tolerance, onnx's ValidationError when the checker
    fails."""
    from distilface.audio import load_audio

    graph = GRAPHS[1] if streaming else GRAPHS[0]
    out = Path(out_path)
    student = student.eval()
    audio = load_audio(EXAMPLE_AUDIO) if audio is None else np.asarray(audio, np.float32)
    t0 = time.perf_counter()
    meta = _metadata(student, graph, int8, source, fps)
    report: dict[str, Any] = {"path": str(out), "graph": graph, "int8": int8, "opset": ONNX_OPSET}
    with atomic_path(out) as final:
        fp32 = final.with_name(final.name + ".fp32.onnx") if int8 else final
        try:
            _write_onnx(student, graph, fp32, {**meta, "int8": False})
            check_onnx(fp32)
            if int8:
                report["float_nodes"] = _quantise(fp32, final)
                _set_metadata(final, meta)
                check_onnx(final)
                report["fp32_bytes"] = fp32.stat().st_size
        finally:
            if int8:
                fp32.unlink(missing_ok=True)
        cmp = compare_on_audio(final, student, audio, fps)
        tol = INT8_TOLERANCE if int8 else FP32_TOLERANCE
        report.update(cmp, tolerance=tol, bytes=final.stat().st_size)
        if not cmp["max_abs_diff"] <= tol:
            raise ExportMismatch(f"{out}: onnxruntime differs from torch by up to {cmp['max_abs_diff']:.3g} "
                                 f"(mean {cmp['mean_abs_diff']:.3g}) over {cmp['frames']} frames of real speech; "
                                 f"tolerance {tol:g}; nothing written")
    report["seconds"] = time.perf_counter() - t0
    log.info("exported %s", report)
    return report


def _set_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Write `meta` as JSON under META_KEY in the file's metadata_props (replacing an old one)."""
    import onnx

    model = onnx.load(str(path))
    model.producer_name = "distilface"
    for entry in model.metadata_props:
        if entry.key == META_KEY:
            entry.value = json.dumps(meta)
            break
    else:
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(model, str(path))
