"""The students in C (csrc/), called through ctypes: a `StreamingAnimator` backend with the torch
`PhaseStep`'s inputs and outputs and no per-node cost, whose animator bookkeeping runs in C too
(`CStream`).

    net = NativeModel.from_student(student)       # or NativeModel("model.npz" | "model.dfn")
    StreamingAnimator(net, fps=30).push(chunk)

The C sources ship in the package and are compiled on first use with the machine's C compiler
(`cc`, or $CC) for this CPU (-march=native), into a cache keyed by the sources, the flags and the
CPU (`library_path`); `distilface export --native` and scripts/setup.sh build it ahead. Two
archs have a C step (`ARCHS`): the conv student, and the frozen-Whisper student (the shipped
default: log-mel as a windowed-DFT product, biased convs, no context conv). The state is
channels-last (S + R, cp) where the torch and ONNX steps keep (C, S + R) (the animator never reads
it).

Files (`save_native`): a `.npz` holds the weights laid out for the C products plus a JSON `meta`
(geometry, curve names, smoothing offset) and needs numpy only; a `.dfn` holds the same for C
callers without Python (`write_dfn`, csrc/dfmodel.c, the API of csrc/dfstep.h).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from distilface.curves import num_frames
from distilface.runtime.streaming import Smoothed, StreamGeometry, smooth_offset_samples

CSRC = Path(__file__).with_name("csrc")
SOURCE = CSRC / "dfstep.c"  # the step: products, norms, GELU (-ffast-math)
STREAM_SOURCE = CSRC / "dfstream.c"  # the animator's bookkeeping (IEEE: frame times as Python's)
MODEL_SOURCE = CSRC / "dfmodel.c"  # the .dfn loader, for C callers without Python
RESAMPLE_SOURCE = CSRC / "dfresample.c"  # resampling to 16 kHz (IEEE: scipy's float32 taps)
# -ffast-math lets glibc's libmvec vectorise erff (GELU); the step equals torch within 1e-5
# anyway (tests/test_native.py). -march=native: the library is built on the machine that runs it;
# 256-bit vectors even where gcc tunes for 128 (znver1: GELU and the norms 15-20 % faster there).
CFLAGS = ("-O3", "-march=native", "-mprefer-vector-width=256", "-ffast-math", "-fPIC")
# What is left when the compiler refuses the CPU flags above (clang on arm64 has no -march=native,
# only x86 gcc knows -mprefer-vector-width): a portable build, slower but the same results.
CFLAGS_PORTABLE = ("-O3", "-ffast-math", "-fPIC")
# Linked in a second command without -ffast-math: gcc 12 would otherwise link crtfastmath.o into the
# library, whose constructor turns on flush-to-zero in every process that loads it (dfstep.c
# flushes denormals inside its own calls only).
LDFLAGS = ("-shared",)
STREAM_CFLAGS = ("-O2", "-fPIC")
ABI = 4  # DF_ABI of dfstep.h
FILE_FORMAT = "distilface-native"
FILE_VERSION = 2  # 2: the Whisper front end (log-mel, biased convs, no context conv)
MAX_ENC, MAX_RED, MAX_FC = 8, 8, 6
NORMS = {"none": 0, "layer": 1, "batch": 2}
FRONTS = {"raw": 0, "logmel": 1}  # DF_FRONT_* of dfstep.h  # batch: eval-mode BatchNorm folded to scale and shift
ACTIVATIONS = {"none": 0, "sigmoid": 1, "tanh": 2}
ERRORS = {-1: "ABI mismatch", -2: "audio too short for one encoder step", -3: "frame index outside the steps",
          -4: "out of memory", -5: "stream state out of order", -6: "sample rate not supported",
          -7: "bad argument (a negative count or a missing buffer)"}


class NativeUnavailable(RuntimeError):
    """No C compiler, or the C step failed to build."""


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


class _Net(ctypes.Structure):
    """`df_net` of dfstep.c, field by field."""

    _fields_ = [
        ("abi", ctypes.c_int32), ("channels", ctypes.c_int32), ("cp", ctypes.c_int32), ("front", ctypes.c_int32),
        ("mel_window", ctypes.c_int32), ("mel_hop", ctypes.c_int32), ("mel_bins", ctypes.c_int32),
        ("mel_bands", ctypes.c_int32), ("mel_floor", ctypes.c_float), ("mel_scale", ctypes.c_float),
        ("mel_shift", ctypes.c_float), ("n_enc", ctypes.c_int32),
        ("enc_kernel", ctypes.c_int32 * MAX_ENC), ("enc_stride", ctypes.c_int32 * MAX_ENC),
        ("enc_dilation", ctypes.c_int32 * MAX_ENC), ("enc_cout", ctypes.c_int32 * MAX_ENC),
        ("enc_norm", ctypes.c_int32), ("proj_in", ctypes.c_int32), ("proj_gelu", ctypes.c_int32),
        ("steps", ctypes.c_int32), ("dilation", ctypes.c_int32),
        ("cache_steps", ctypes.c_int32), ("tail_steps", ctypes.c_int32),
        ("groups", ctypes.c_int32), ("ctx_zlen", ctypes.c_int32),
        ("n_red", ctypes.c_int32), ("red_kernel", ctypes.c_int32 * MAX_RED), ("red_stride", ctypes.c_int32 * MAX_RED),
        ("n_fc", ctypes.c_int32), ("fc_in", ctypes.c_int32 * MAX_FC), ("fc_out", ctypes.c_int32 * MAX_FC),
        ("activation", ctypes.c_int32), ("outputs", ctypes.c_int32),
        ("enc_eps", ctypes.c_float), ("proj_eps", ctypes.c_float), ("red_eps", ctypes.c_float),
        ("mel_dft", ctypes.c_void_p), ("mel_fb", ctypes.c_void_p),
        ("enc_w", ctypes.c_void_p * MAX_ENC), ("enc_bias", ctypes.c_void_p * MAX_ENC),
        ("enc_g", ctypes.c_void_p * MAX_ENC), ("enc_b", ctypes.c_void_p * MAX_ENC),
        ("proj_g", ctypes.c_void_p), ("proj_b", ctypes.c_void_p), ("proj_w", ctypes.c_void_p), ("proj_bias", ctypes.c_void_p),
        ("ctx_z", ctypes.c_void_p), ("ctx_bias", ctypes.c_void_p), ("red_g", ctypes.c_void_p), ("red_b", ctypes.c_void_p),
        ("red_w", ctypes.c_void_p * MAX_RED), ("red_bias", ctypes.c_void_p * MAX_RED),
        ("fc_w", ctypes.c_void_p * MAX_FC), ("fc_bias", ctypes.c_void_p * MAX_FC),
    ]


# -- building the library ------------------------------------------------------------------------
def compiler() -> str | None:
    """The C compiler: $CC, else cc, gcc or clang on PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compiler_cannot_run(cc: str, e: OSError) -> NativeUnavailable:
    """The error for a compiler that is no program, or one that cannot run ($CC says where from)."""
    source = " (from $CC)" if cc == os.environ.get("CC") else ""
    return NativeUnavailable(f"the C compiler {cc!r}{source} cannot run: {e.strerror or e}")


def _cpu() -> str:
    """What -march=native depends on: the CPU model and its flags (a cache on a shared home
    directory must not hand one machine's library to another)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines) or platform.processor()
    except OSError:
        return platform.machine() + platform.processor()


def library_path() -> Path:
    """Where the compiled step lives: $DISTILFACE_NATIVE_CACHE, else ~/.cache/distilface/native,
    one file per source, flags, compiler and CPU."""
    root = os.environ.get("DISTILFACE_NATIVE_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distilface" / "native")
    sources = b"".join(p.read_bytes() for p in (SOURCE, STREAM_SOURCE, MODEL_SOURCE, RESAMPLE_SOURCE,
                                                 CSRC / "dfstep.h"))
    key = hashlib.sha256(sources + " ".join(CFLAGS + CFLAGS_PORTABLE + STREAM_CFLAGS + LDFLAGS).encode()
                         + (compiler() or "").encode()
                         + _cpu().encode()).hexdigest()[:16]
    return Path(root) / f"dfstep-{key}.so"


def build(force: bool = False) -> Path:
    """Compile csrc/ (if not cached yet) and return the library's path. The compiler writes a
    temporary file that is renamed into place, so concurrent builds never see half a library.
    When the step does not compile with the CPU flags of `CFLAGS`, it is built with
    `CFLAGS_PORTABLE` (a warning says so). Raises NativeUnavailable without a compiler or when the
    portable build fails too."""
    out = library_path()
    if out.is_file() and not force:
        return out
    return compile_library(out, CFLAGS)


def compile_library(out: Path, step_flags: tuple[str, ...], cc: str | None = None,
                    ldflags: tuple[str, ...] = LDFLAGS, strict: bool = False,
                    used_flags: list[str] | None = None) -> Path:
    """csrc/ into the shared library `out` (atomically) with compiler `cc` (default `compiler()`):
    the step with `step_flags` (or `CFLAGS_PORTABLE` where the compiler refuses them, with a
    warning; `strict`: ValueError instead), the rest with `STREAM_CFLAGS`, linked with `ldflags`,
    without -ffast-math. `used_flags` receives the step's flags the library was built with."""
    cc = cc or compiler()
    if cc is None:
        raise NativeUnavailable("the native runtime needs a C compiler (cc, gcc or clang; Debian: apt-get install gcc)")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built in a private folder under its final name (a Windows DLL records its own file name as
    # the name programs import), then renamed into place.
    work = out.with_name(f".{out.name}.{os.getpid()}.build")
    work.mkdir(exist_ok=True)
    tmp = work / out.name
    obj, *others = (work / f"{n}.o" for n in ("step", "stream", "model", "resample"))
    step = [cc, *step_flags, "-c", "-o", str(obj), str(SOURCE)]
    cmds = [[cc, *STREAM_CFLAGS, "-c", "-o", str(o), str(src)]
            for o, src in zip(others, (STREAM_SOURCE, MODEL_SOURCE, RESAMPLE_SOURCE))]
    cmds.append([cc, *ldflags, "-o", str(tmp), str(obj), *map(str, others), "-lm"])

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise compiler_cannot_run(cc, e) from None

    try:
        proc = run(step)
        flags = step_flags
        if proc.returncode:
            import warnings

            why = proc.stderr.strip()[:300]
            if strict:
                raise ValueError(f"{cc} refuses {' '.join(step_flags)} for the library ({why})")
            warnings.warn(f"native runtime: {' '.join(step_flags)} refused ({why}); "
                          f"building with {' '.join(CFLAGS_PORTABLE)}", RuntimeWarning, stacklevel=3)
            flags = CFLAGS_PORTABLE
            cmds.insert(0, [cc, *CFLAGS_PORTABLE, "-c", "-o", str(obj), str(SOURCE)])
        if used_flags is not None:
            used_flags[:] = flags
        for cmd in cmds:
            proc = run(cmd)
            if proc.returncode:
                raise NativeUnavailable(f"building the native runtime failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


@functools.cache
def load_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build()))
    lib.df_abi.restype = ctypes.c_int
    if lib.df_abi() != ABI:
        raise NativeUnavailable(f"{library_path()}: ABI {lib.df_abi()}, this module speaks {ABI}")
    lib.df_step.restype = ctypes.c_int
    lib.df_step.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.df_net_problem.restype = ctypes.c_char_p
    lib.df_net_problem.argtypes = [vp, i64, i64, i64, i64, i64]
    lib.df_stream_new.restype = vp
    lib.df_stream_new.argtypes = [vp, ctypes.c_double, i64, i64, i64, i64, i64, ctypes.c_int, vp, vp, i64]
    lib.df_stream_push.restype = i64
    lib.df_stream_push.argtypes = [vp, vp, i64, ctypes.c_int, vp, i64]
    for name in ("df_stream_reset", "df_stream_free"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [vp], None
    lib.df_stream_stats.argtypes, lib.df_stream_stats.restype = [vp, vp], None
    lib.df_model_load.restype, lib.df_model_load.argtypes = vp, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.df_model_load_memory.restype = vp
    lib.df_model_load_memory.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.c_size_t]
    lib.df_model_stream.restype, lib.df_model_stream.argtypes = vp, [vp, ctypes.c_double, vp]
    lib.df_model_free.restype, lib.df_model_free.argtypes = None, [vp]
    lib.df_model_name.restype, lib.df_model_name.argtypes = ctypes.c_char_p, [vp, ctypes.c_int]
    lib.df_model_outputs.restype, lib.df_model_outputs.argtypes = ctypes.c_int, [vp]
    lib.df_stream_set_input_rate.restype, lib.df_stream_set_input_rate.argtypes = ctypes.c_int, [vp, ctypes.c_int]
    lib.df_resampler_new.restype, lib.df_resampler_new.argtypes = vp, [ctypes.c_int, ctypes.c_int]
    lib.df_resampler_push.restype = i64
    lib.df_resampler_push.argtypes = [vp, vp, i64, ctypes.c_int, vp, i64]
    for name in ("df_resampler_reset", "df_resampler_free"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [vp], None
    return lib


def _address(a: np.ndarray) -> int:
    """The data pointer of a C-contiguous array: 0.7 us through the buffer protocol where
    `a.ctypes.data` takes 2.8 (it builds a helper object), five times per step. Read-only or
    empty arrays take the slow path."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError):
        return a.ctypes.data


# -- weights laid out for the C products ---------------------------------------------------------
ARCHS = ("conv", "whisper_conv")  # the students with a C step


def _np(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _panels(m: np.ndarray) -> np.ndarray:
    """A (K, np) matrix in the column panels dfstep.c's `conv_rows` reads: columns n..n+23 while
    n + 24 <= np, then 8 at a time, each panel's K rows contiguous (flat, K np floats)."""
    k, n = m.shape
    widths = [24] * (n // 24) + [8] * (n % 24 // 8)
    starts = np.cumsum([0] + widths[:-1])
    return np.ascontiguousarray(np.concatenate([m[:, a: a + w].reshape(-1) for a, w in zip(starts, widths)]),
                                np.float32)


def _matrix(m: np.ndarray, n: int) -> np.ndarray:
    """m (K, columns) with zero columns up to n (a multiple of 8), as panels (`_panels`)."""
    return _panels(np.pad(m, ((0, 0), (0, n - m.shape[1]))).astype(np.float32))


def _conv_rows(w: Any, n: int) -> np.ndarray:
    """A conv weight (C_out, C_in, k) as the (k C_in, n) matrix of dfstep.c's `conv_rows`: row
    j C_in + ci holds W[:, ci, j]."""
    co, ci, k = w.shape
    return _matrix(_np(w).transpose(2, 1, 0).reshape(k * ci, co), n)


def _vec(v: Any, n: int) -> np.ndarray:
    v = v if isinstance(v, np.ndarray) else _np(v)
    return np.ascontiguousarray(np.pad(v, (0, n - len(v))), np.float32)


def is_matrix(name: str) -> bool:
    """Whether array `name` is a weight matrix of the C products (`_matrix`): what a half-precision
    file stores as float16 (norms, biases and the context conv stay float32). Loaders widen them
    back to float32: half precision halves the file, not the work (docs/runtime.md)."""
    return name in ("mel_dft", "mel_fb", "proj_w") or name.rstrip("0123456789") in ("enc_w", "red_w", "fc_w")


def round_to_half(student: Any) -> Any:
    """A copy of `student` whose weights that `pack_student(half=True)` stores as float16 are
    rounded to float16 (and back): the function a half-precision file computes."""
    import copy

    import torch

    s = copy.deepcopy(student)
    if s.cfg.arch == "conv":
        tensors = [c.weight for c in s.encoder_convs]
    else:
        fe = s.frontend
        tensors = [fe.conv1.weight, fe.conv2.weight, fe.mel.dft.weight, fe.mel.mel.weight]
    tensors += [s.proj.weight, *(c.weight for c in s.reduce), *(m.weight for m in s.fc)]
    with torch.no_grad():
        for t in tensors:
            t.copy_(t.half().float())
    return s


def pack_student(student: Any, half: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a student for the C step: the conv student (`distilface.student.Student`)
    or the frozen-Whisper one (`distilface.baselines.WhisperConvStudent`). half: the weight
    matrices in IEEE half precision (`is_matrix`; about half the file; the frames of
    `round_to_half(student)`). Raises ValueError for other archs."""
    from distilface.runtime.step import stream_geometry
    from distilface.student import Student

    arch = getattr(getattr(student, "cfg", None), "arch", type(student).__name__)
    if not isinstance(student, Student) or arch not in ARCHS:
        raise ValueError(f"the native runtime runs the {' and '.join(ARCHS)} students, not {arch!r}")
    cfg = student.cfg
    steps = stream_geometry(student).steps_per_window
    if arch == "conv" and steps > MAX_CONTEXT_STEPS:
        raise ValueError(f"the native runtime's context conv takes windows of at most {MAX_CONTEXT_STEPS} encoder "
                         f"steps ({MAX_CONTEXT_STEPS * 20} ms); this student's has {steps} ({cfg.window_ms:g} ms): "
                         "use the torch or ONNX runtime")
    c, cp = cfg.channels, _pad8(cfg.channels)
    meta, arrays = (_pack_conv if arch == "conv" else _pack_whisper)(student)
    proj_in = student.proj.in_features
    arrays["proj_g"], arrays["proj_b"] = _vec(student.proj_norm.weight, _pad8(proj_in)), _vec(student.proj_norm.bias, _pad8(proj_in))
    arrays["proj_w"], arrays["proj_bias"] = _matrix(_np(student.proj.weight).T, cp), _vec(student.proj.bias, cp)
    for i, conv in enumerate(student.reduce):
        arrays[f"red_w{i}"], arrays[f"red_bias{i}"] = _conv_rows(conv.weight, cp), _vec(conv.bias, cp)
    for i, layer in enumerate(student.fc):
        n = _pad8(layer.out_features)
        arrays[f"fc_w{i}"], arrays[f"fc_bias{i}"] = _matrix(_np(layer.weight).T, n), _vec(layer.bias, n)
    meta.update({
        "format": FILE_FORMAT, "version": FILE_VERSION, "arch": arch, "names": list(cfg.names), "channels": c,
        "config": cfg.to_dict(), "smooth_offset_samples": smooth_offset_samples(cfg.frame_grid_samples),
        "geometry": asdict(stream_geometry(student)), "proj_in": proj_in, "proj_eps": float(student.proj_norm.eps),
        "red_kernel": [m.kernel_size[0] for m in student.reduce], "red_stride": [m.stride[0] for m in student.reduce],
        "fc_in": [m.in_features for m in student.fc], "fc_out": [m.out_features for m in student.fc],
        "activation": ACTIVATIONS[cfg.output_activation], "half": int(half),
    })
    if half:
        arrays = {k: v.astype(np.float16) if is_matrix(k) else v for k, v in arrays.items()}
    return meta, arrays


def _pack_conv(student: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The conv student's encoder (raw audio, per-step norms, no biases) and context conv."""
    import torch

    from distilface.student import encoder_stride, stream_hop

    cfg = student.cfg
    c, cp = cfg.channels, _pad8(cfg.channels)
    hop = stream_hop(student)
    dil = [d for _, d in student._dense_plan(hop)] if hop != encoder_stride() else [0] * len(student.encoder_convs)
    arrays: dict[str, np.ndarray] = {}
    enc_eps = 1e-5
    for i, (conv, norm) in enumerate(zip(student.encoder_convs, student.encoder_norms)):
        arrays[f"enc_w{i}"] = _conv_rows(conv.weight, cp)
        if cfg.norm == "layer":
            g, b, enc_eps = _np(norm.norm.weight), _np(norm.norm.bias), norm.norm.eps
        elif cfg.norm == "batch":
            bn = norm.norm
            g = _np(bn.weight / torch.sqrt(bn.running_var + bn.eps))
            b = _np(bn.bias) - _np(bn.running_mean) * g
        else:
            continue  # no norm arrays: the C step skips the norm
        arrays[f"enc_g{i}"], arrays[f"enc_b{i}"] = _vec(g, cp), _vec(b, cp)
    # context conv: z[co, ci, q] = w[co, ci, pad + W - 1 - q], zero outside the kernel (dfstep.c `context`)
    w_ctx = _np(student.context.weight)  # (C, C / groups, kernel)
    kk, pad, steps = w_ctx.shape[2], student.context.padding[0], student.steps_per_window
    zlen = steps - 1 + _pad8(steps)
    tap = pad + steps - 1 - np.arange(zlen)
    valid = (tap >= 0) & (tap < kk)
    arrays["ctx_z"] = np.ascontiguousarray(w_ctx[:, :, np.clip(tap, 0, kk - 1)] * valid, np.float32)
    arrays["ctx_bias"] = _vec(student.context.bias, c)
    arrays["red_g"], arrays["red_b"] = _vec(student.reduce_norm.weight, c), _vec(student.reduce_norm.bias, c)
    convs = student.encoder_convs
    meta = {"front": FRONTS["raw"], "enc_kernel": [m.kernel_size[0] for m in convs],
            "enc_stride": [m.stride[0] for m in convs], "enc_dilation": dil, "enc_cout": [c] * len(convs),
            "enc_bias": [0] * len(convs), "enc_norm": NORMS[cfg.norm], "enc_eps": float(enc_eps), "proj_gelu": 0,
            "groups": student.context.groups, "red_eps": float(student.reduce_norm.eps)}
    return meta, arrays


def _pack_whisper(student: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The frozen Whisper front end: log-mel (windowed DFT and mel filterbank as matrices), two
    biased convs without norms; GELU after the projection; no context conv."""
    from distilface.baselines import HOP_SAMPLES, WHISPER_LOG10_FLOOR, WHISPER_LOG10_SHIFT

    fe = student.frontend
    dft, fb = _np(fe.mel.dft.weight), _np(fe.mel.mel.weight)  # (2 bins, 1, window), (bands, bins, 1)
    bins, bands = fe.mel.bins, fb.shape[0]
    arrays = {"mel_dft": _matrix(dft[:, 0, :].T, _pad8(2 * bins)), "mel_fb": _matrix(fb[:, :, 0].T, _pad8(bands))}
    convs = (fe.conv1, fe.conv2)
    for i, conv in enumerate(convs):
        arrays[f"enc_w{i}"] = _conv_rows(conv.weight, _pad8(conv.out_channels))
        arrays[f"enc_bias{i}"] = _vec(conv.bias, _pad8(conv.out_channels))
    meta = {"front": FRONTS["logmel"], "mel_window": int(dft.shape[2]), "mel_hop": HOP_SAMPLES, "mel_bins": bins,
            "mel_bands": bands, "mel_floor": float(np.float32(10 ** WHISPER_LOG10_FLOOR)),
            "mel_scale": 1.0 / WHISPER_LOG10_SHIFT, "mel_shift": 1.0,  # (log10 + shift) / shift
            "enc_kernel": [m.kernel_size[0] for m in convs], "enc_stride": [m.stride[0] for m in convs],
            "enc_dilation": [0, 0], "enc_cout": [m.out_channels for m in convs], "enc_bias": [1, 1],
            "enc_norm": NORMS["none"], "enc_eps": 1e-5, "proj_gelu": 1, "groups": 0, "red_eps": 1e-5}
    return meta, arrays


def array_sizes(meta: dict) -> dict[str, int]:
    """Every array the C step reads, in .dfn order, with the floats its meta implies (what
    csrc/dfmodel.c checks a .dfn against, and `NativeModel` any file)."""
    c, cp, g = int(meta["channels"]), _pad8(int(meta["channels"])), meta["geometry"]
    sizes: dict[str, int] = {}
    cin = 1
    if meta["front"] == FRONTS["logmel"]:
        bins, bands = meta["mel_bins"], meta["mel_bands"]
        sizes.update(mel_dft=meta["mel_window"] * _pad8(2 * bins), mel_fb=bins * _pad8(bands))
        cin = bands
    for i, (k, co) in enumerate(zip(meta["enc_kernel"], meta["enc_cout"])):
        sizes[f"enc_w{i}"] = k * cin * _pad8(co)
        if meta["enc_bias"][i]:
            sizes[f"enc_bias{i}"] = _pad8(co)
        if meta["enc_norm"] != NORMS["none"]:
            sizes[f"enc_g{i}"] = sizes[f"enc_b{i}"] = _pad8(co)
        cin = co
    pin = meta["proj_in"]
    sizes.update(proj_g=_pad8(pin), proj_b=_pad8(pin), proj_w=pin * cp, proj_bias=cp)
    if meta["groups"]:
        steps = g["steps_per_window"]
        sizes.update(ctx_z=c * (c // meta["groups"]) * (steps - 1 + _pad8(steps)), ctx_bias=c, red_g=c, red_b=c)
    for i, k in enumerate(meta["red_kernel"]):
        sizes.update({f"red_w{i}": k * c * cp, f"red_bias{i}": cp})
    for i, (n_in, n_out) in enumerate(zip(meta["fc_in"], meta["fc_out"])):
        sizes.update({f"fc_w{i}": n_in * _pad8(n_out), f"fc_bias{i}": _pad8(n_out)})
    return sizes


def check_meta(meta: dict, where: str) -> None:
    """The layer sizes of a meta agree with each other (ValueError naming `where` if not)."""
    m = meta
    n_enc, n_red, n_fc = len(m["enc_kernel"]), len(m["red_kernel"]), len(m["fc_in"])
    problems = []
    if not (1 <= n_enc <= MAX_ENC and 0 <= n_red <= MAX_RED and 1 <= n_fc <= MAX_FC):
        problems.append(f"{n_enc} encoder, {n_red} reduction, {n_fc} fc layers (at most {MAX_ENC}, {MAX_RED}, {MAX_FC})")
    if any(len(m[k]) != n_enc for k in ("enc_stride", "enc_dilation", "enc_cout", "enc_bias")):
        problems.append("encoder lists of different lengths")
    if m["proj_in"] != m["enc_cout"][-1]:
        problems.append(f"projection from {m['proj_in']} channels, the encoder gives {m['enc_cout'][-1]}")
    if m["fc_in"][0] != m["channels"] or m["fc_out"][-1] != len(m["names"]):
        problems.append(f"fc layers {m['fc_in'][0]} -> {m['fc_out'][-1]} for {m['channels']} channels and "
                        f"{len(m['names'])} curve names")
    if m["groups"] and m["channels"] % m["groups"]:
        problems.append(f"{m['channels']} channels in {m['groups']} groups")
    if problems:
        raise ValueError(f"{where}: inconsistent native model: {'; '.join(problems)}")


# The .dfn file for C callers (csrc/dfmodel.c has the layout): the header's integers in this order,
# then each layer's sizes; six floats; the names; the arrays in `array_sizes` order.
DFN_VERSION = 2
MAX_CONTEXT_STEPS = 64  # csrc/dfstep.c `context`: eight 8-float vectors per row (df_net_problem)
DFN_INTS = ("channels", "front", "mel_window", "mel_hop", "mel_bins", "mel_bands", "n_enc", "enc_norm", "proj_in",
            "proj_gelu", "steps", "dilation", "cache_steps", "tail_steps", "groups", "ctx_zlen", "n_red", "n_fc",
            "activation", "outputs", "past_samples", "span_samples", "receptive_samples", "hop_samples",
            "grid_samples", "smooth_offset_samples", "window_samples", "half")
DFN_LISTS = (("enc_kernel", "n_enc"), ("enc_stride", "n_enc"), ("enc_dilation", "n_enc"), ("enc_cout", "n_enc"),
             ("enc_bias", "n_enc"), ("red_kernel", "n_red"), ("red_stride", "n_red"), ("fc_in", "n_fc"),
             ("fc_out", "n_fc"))
DFN_FLOATS = ("enc_eps", "proj_eps", "red_eps", "mel_floor", "mel_scale", "mel_shift")
MEL_KEYS = ("mel_window", "mel_hop", "mel_bins", "mel_bands", "mel_floor", "mel_scale", "mel_shift")


def _dfn_ints(meta: dict) -> list[int]:
    g = meta["geometry"]
    d = g["stride_samples"] // g["hop_samples"]
    steps = g["steps_per_window"]
    v = {**{k: meta.get(k, 0) for k in ("front", "mel_window", "mel_hop", "mel_bins", "mel_bands", "enc_norm",
                                           "proj_in", "proj_gelu", "groups", "activation", "half")},
         "channels": meta["channels"], "n_enc": len(meta["enc_kernel"]), "steps": steps, "dilation": d,
         "cache_steps": (steps - 1) * d, "tail_steps": g["tail_steps"],
         "ctx_zlen": steps - 1 + _pad8(steps) if meta["groups"] else 0,
         "n_red": len(meta["red_kernel"]), "n_fc": len(meta["fc_in"]), "outputs": len(meta["names"]),
         "past_samples": g["past_samples"],
         "span_samples": (steps - 1) * g["stride_samples"] + g["receptive_samples"],
         "receptive_samples": g["receptive_samples"], "hop_samples": g["hop_samples"],
         "grid_samples": g["grid_samples"], "smooth_offset_samples": meta["smooth_offset_samples"],
         "window_samples": g["window_samples"]}
    return [int(v[k]) for k in DFN_INTS] + [int(x) for k, _ in DFN_LISTS for x in meta[k]]


def _dtype(meta: dict, name: str) -> str:
    """Little-endian type of array `name` in a file of this meta."""
    return "<f2" if meta.get("half") and is_matrix(name) else "<f4"


def write_dfn(meta: dict, arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """The .dfn file of csrc/dfmodel.c (atomically): what a C caller loads with `df_model_load`."""
    import struct

    from distilface.fileio import atomic_write

    check_meta(meta, str(path))
    ints = _dfn_ints(meta)
    names = "\n".join(meta["names"]).encode()
    with atomic_write(path, "wb") as f:
        f.write(b"DFN1" + struct.pack("<ii", DFN_VERSION, len(ints)) + struct.pack(f"<{len(ints)}i", *ints))
        f.write(struct.pack(f"<{len(DFN_FLOATS)}f", *(meta.get(k, 0.0) for k in DFN_FLOATS)))
        f.write(struct.pack("<i", len(names)) + names)
        order = array_sizes(meta)
        f.write(struct.pack("<i", len(order)))
        for name in order:
            a = np.ascontiguousarray(arrays[name], _dtype(meta, name)).reshape(-1)
            f.write(struct.pack("<i", a.size) + a.tobytes())
    return Path(path)


def read_dfn(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a .dfn file (`write_dfn`), so that Python streams it too
    (`NativeModel("model.dfn")`). Raises ValueError naming the file for anything else."""
    import struct

    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ValueError(f"{path}: truncated .dfn file")
        pos += size
        return struct.unpack_from(fmt, data, pos - size)

    if data[:4] != b"DFN1":
        raise ValueError(f"{path}: not a DistilFace native model (.dfn)")
    pos = 4
    version, n = take("<ii")
    if version != DFN_VERSION:
        raise ValueError(f"{path}: .dfn version {version}, this runtime reads {DFN_VERSION} (export it again)")
    ints = take(f"<{n}i")
    v = dict(zip(DFN_INTS, ints))
    lists, i = {}, len(DFN_INTS)
    for name, count in DFN_LISTS:
        lists[name], i = list(ints[i: i + v[count]]), i + v[count]
    if i != n:
        raise ValueError(f"{path}: inconsistent .dfn header ({n} integers, the sizes imply {i})")
    floats = dict(zip(DFN_FLOATS, take(f"<{len(DFN_FLOATS)}f")))
    (nb,) = take("<i")
    names = data[pos: pos + nb].decode().split("\n")
    pos += nb
    meta = {"format": FILE_FORMAT, "version": FILE_VERSION, "names": names, "channels": v["channels"],
            **{k: v[k] for k in ("front", "enc_norm", "proj_in", "proj_gelu", "groups", "activation",
                                 "smooth_offset_samples", "half")},
            **floats, **lists,
            "geometry": {"window_samples": v["window_samples"], "past_samples": v["past_samples"],
                         "stride_samples": v["hop_samples"] * v["dilation"], "steps_per_window": v["steps"],
                         "receptive_samples": v["receptive_samples"], "feature_channels": v["channels"],
                         "hop_samples": v["hop_samples"], "grid_samples": v["grid_samples"],
                         "tail_steps": v["tail_steps"]}}
    if v["front"] == FRONTS["logmel"]:
        meta.update({k: v.get(k, floats.get(k)) for k in MEL_KEYS})
    check_meta(meta, str(path))
    (count,) = take("<i")
    order = array_sizes(meta)
    if count != len(order):
        raise ValueError(f"{path}: {count} arrays, the header implies {len(order)}")
    arrays = {}
    for name in order:
        (size,) = take("<i")
        dtype = np.dtype(_dtype(meta, name))
        if size < 0 or pos + dtype.itemsize * size > len(data):
            raise ValueError(f"{path}: truncated .dfn file")
        arrays[name] = np.frombuffer(data, dtype, size, pos).astype(dtype.newbyteorder("="))
        pos += dtype.itemsize * size
    if pos != len(data):
        raise ValueError(f"{path}: unexpected data after the weights")
    if "ctx_z" in arrays:  # the one array read by its shape
        c, g = v["channels"], v["groups"]
        arrays["ctx_z"] = arrays["ctx_z"].reshape(c, c // g, v["ctx_zlen"])
    return meta, arrays


def stream_dfn(path: str | Path, audio: np.ndarray, fps: float = 30.0, chunk: int = 320,
               smooth: tuple[float, float, float] | None = None,
               rate_hz: int = 16000) -> tuple[tuple[str, ...], np.ndarray]:
    """Stream `audio` (at rate_hz) through a .dfn file entirely in C, as an engine would
    (csrc/dfmodel.c loads it, csrc/dfstream.c streams it after csrc/dfresample.c, `chunk` samples
    per push, small output buffers so that frames wait between pushes): (curve names, (frames,
    outputs)). Raises ValueError with the loader's message for a bad file."""
    lib = load_library()
    err = ctypes.create_string_buffer(512)
    model = lib.df_model_load(str(path).encode(), err, len(err))
    if not model:
        raise ValueError(err.value.decode())
    try:
        outputs = lib.df_model_outputs(model)
        names = tuple(lib.df_model_name(model, i).decode() for i in range(outputs))
        weights = None if smooth is None else np.array(smooth, np.float32)
        stream = lib.df_model_stream(model, float(fps), None if weights is None else weights.ctypes.data)
        if not stream:
            raise ValueError(f"{path}: cannot stream at {fps} fps")
        try:
            r = lib.df_stream_set_input_rate(stream, int(rate_hz))
            if r < 0:
                raise ValueError(f"{path}: cannot stream {rate_hz} Hz audio: {ERRORS.get(r, r)}")
            audio = np.ascontiguousarray(audio, np.float32)
            out, buf = [], np.empty((2, outputs), np.float32)  # 2 frames a push at most: the rest waits
            for i in range(0, len(audio) + 1, chunk):
                final = i + chunk > len(audio)
                piece = audio[i: i + chunk]
                while True:
                    n = lib.df_stream_push(stream, piece.ctypes.data, len(piece), int(final), buf.ctypes.data, len(buf))
                    if n < 0:
                        raise RuntimeError(f"{path}: native stream: {ERRORS.get(n, n)}")
                    out.append(buf[:n].copy())
                    if not final or n == 0:
                        break
                    piece = piece[:0]  # drain what a final push left waiting
        finally:
            lib.df_stream_free(stream)
    finally:
        lib.df_model_free(model)
    return names, np.concatenate(out)


def save_native(student: Any, path: str | Path, source: str = "", half: bool = False) -> Path:
    """Write `student`'s C-step weights and meta to `path`, atomically: a `.dfn` for C callers
    (csrc/dfmodel.c), any other name a `.npz` for Python (numpy only); half: weight matrices in
    half precision (`pack_student`)."""
    from distilface.fileio import write_npz

    meta, arrays = pack_student(student, half=half)
    meta["source"] = source
    if Path(path).suffix == ".dfn":
        return write_dfn(meta, arrays, path)
    write_npz(path, {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays})
    return Path(path)


def export_native(student: Any, out_path: str | Path, fps: float = 30.0, source: str = "",
                  audio: np.ndarray | None = None, half: bool = False) -> dict[str, Any]:
    """`distilface export --native`: write `student`'s C-step file (`save_native`: .npz for
    Python, .dfn for C callers) and check it as `export_model` checks an ONNX file: the
    real-speech example streamed through it in 20 ms pushes (a .dfn loaded and streamed in C
    alone, `stream_dfn`) against the torch student's offline frames. Raises ExportMismatch
    (nothing written) beyond the fp32 tolerance. half: weight matrices in half precision, checked
    against the torch student with those weights rounded (`round_to_half`) to the same tolerance;
    the report adds its difference from the full-precision student (`vs_fp32`). Returns a report."""
    import time

    from distilface.audio import SAMPLE_RATE_HZ, load_audio
    from distilface.fileio import atomic_path
    from distilface.runtime.export import CHECK_CHUNK_S, EXAMPLE_AUDIO, FP32_TOLERANCE, ExportMismatch, frame_differences
    from distilface.runtime.streaming import StreamingAnimator, stream_all

    from distilface.animate import animate_audio

    student = student.eval()
    ref = round_to_half(student) if half else student  # the function the file computes
    audio = load_audio(EXAMPLE_AUDIO) if audio is None else np.asarray(audio, np.float32)
    t0 = time.perf_counter()
    out = Path(out_path)
    extra = {}
    with atomic_path(out) as tmp:
        if out.suffix == ".dfn":  # checked the way a C caller runs it: loader and stream in C
            meta, arrays = pack_student(student, half=half)
            write_dfn({**meta, "source": source}, arrays, tmp)
            names, got = stream_dfn(tmp, audio, fps)
            if names != tuple(student.cfg.names):
                raise ExportMismatch(f"{out}: curve names {names[:3]}... in the file, not the student's")
        else:  # read back and streamed in Python, 20 ms pushes as `export_model` checks an ONNX file
            save_native(student, tmp, source=source, half=half)
            got = stream_all(StreamingAnimator(NativeModel(tmp), fps), audio, round(CHECK_CHUNK_S * SAMPLE_RATE_HZ))
        cmp = frame_differences(got, animate_audio(ref, audio, fps).values, f"{out}: the C step")
        if not cmp["max_abs_diff"] <= FP32_TOLERANCE:
            raise ExportMismatch(f"{out}: the C step differs from torch by up to {cmp['max_abs_diff']:.3g} "
                                 f"(mean {cmp['mean_abs_diff']:.3g}) over {cmp['frames']} frames of real speech; "
                                 f"tolerance {FP32_TOLERANCE:g}; nothing written")
        if half:  # what half precision costs: its frames against the full-precision student's
            d = frame_differences(got, animate_audio(student, audio, fps).values, f"{out}: half against fp32")
            extra = {"half": True, "vs_fp32": {k: d[k] for k in ("max_abs_diff", "mean_abs_diff")}}
    return {"path": str(out), "runtime": "native", "library": str(library_path()), **cmp, **extra,
            "tolerance": FP32_TOLERANCE, "bytes": out.stat().st_size, "seconds": time.perf_counter() - t0}


class CResampler:
    """csrc/dfresample.c from Python: streaming resampling equal to `distilface.audio.resample`
    (scipy's resample_poly) on the whole signal, as `distilface.animate.StreamResampler` is; what
    a native stream at another rate than 16 kHz runs in C."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self._lib = load_library()
        self._handle = self._lib.df_resampler_new(int(from_hz), int(to_hz))
        if not self._handle:
            raise ValueError(f"resampling {from_hz} Hz -> {to_hz} Hz: not supported (rates "
                             f"1000..384000 Hz, ratio terms up to 8000; distilface.audio.check_rate)")
        self.from_hz, self.to_hz = int(from_hz), int(to_hz)
        self._n = self._out = 0

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.df_resampler_free(self._handle)
            self._handle = None

    def reset(self) -> None:
        self._lib.df_resampler_reset(self._handle)
        self._n = self._out = 0

    def __call__(self, chunk: np.ndarray, final: bool = False) -> np.ndarray:
        """(n,) float input at from_hz -> (m,) float32 output at to_hz, every sample complete so far."""
        chunk = np.ascontiguousarray(chunk, np.float32)
        self._n += len(chunk)
        cap = -(-self._n * self.to_hz // self.from_hz) - self._out + 1  # all outputs that can exist
        out = np.empty(max(cap, 1), np.float32)
        n = self._lib.df_resampler_push(self._handle, _address(chunk) if len(chunk) else None, len(chunk),
                                        int(final), _address(out), len(out))
        if n < 0:
            raise RuntimeError(f"native resampler: {ERRORS.get(n, n)}")
        self._out += n
        return out[:n]


class CStream:
    """`StreamingAnimator`'s bookkeeping for a `NativeModel`, in C (csrc/dfstream.c): 16 kHz audio
    in, frames out, the same frames as the Python animator. `StreamingAnimator` uses it for a
    `NativeModel` (resampling stays in Python); `NativeModel.stream_in_c = False` turns it off."""

    def __init__(self, model: "NativeModel", fps: float, past_samples: int,
                 preds: list[tuple[int, float]], max_jobs: int, rate_hz: int = 16000) -> None:
        g = model.geometry
        self._model, self._lib, self.fps, self.rate_hz = model, model._lib, float(fps), int(rate_hz)
        offsets = np.array([o for o, _ in preds], np.int64)
        weights = np.array([w for _, w in preds], np.float32)
        self._handle = self._lib.df_stream_new(model._net_ref, self.fps, past_samples, g.span_samples,
                                               g.receptive_samples, g.hop_samples, g.grid_samples, len(preds),
                                               offsets.ctypes.data, weights.ctypes.data, max_jobs)
        if not self._handle:
            raise ValueError(f"native stream: bad settings (fps {fps}, {len(preds)} predictions) or out of memory")
        if self.rate_hz != 16000:  # resampled in C (csrc/dfresample.c), as resample_poly would
            r = self._lib.df_stream_set_input_rate(self._handle, self.rate_hz)
            if r < 0:
                self._lib.df_stream_free(self._handle)
                self._handle = None
                raise ValueError(f"native stream at {rate_hz} Hz: {ERRORS.get(r, r)}")
        self._outputs = len(model.names)
        self._n = self._emitted = 0

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.df_stream_free(self._handle)
            self._handle = None

    def reset(self) -> None:
        self._lib.df_stream_reset(self._handle)
        self._n = self._emitted = 0

    def stats(self) -> tuple[int, int, int, int]:
        """(encoder steps computed, windows run, phases seen, frames emitted) since the reset."""
        out = np.zeros(4, np.int64)
        self._lib.df_stream_stats(self._handle, out.ctypes.data)
        return tuple(int(x) for x in out)  # type: ignore[return-value]

    def push(self, audio: np.ndarray, final: bool) -> np.ndarray:
        """(n,) float32 at `rate_hz` -> (frames, outputs) completed by it."""
        audio = np.ascontiguousarray(audio, np.float32)
        self._n += len(audio)
        n_16k = -(-self._n * 16000 // self.rate_hz)  # the most 16 kHz samples this input resamples to
        cap = num_frames(n_16k / 16000, self.fps) - self._emitted  # frames that exist, not yet out
        out = np.empty((max(cap, 1), self._outputs), np.float32)
        n = self._lib.df_stream_push(self._handle, _address(audio), len(audio), int(final), _address(out), len(out))
        if n < 0:
            raise RuntimeError(f"native stream: {ERRORS.get(n, n)}")
        self._emitted += n
        return out[:n]


class NativeModel:
    """A conv student's streaming step in C: a `StreamingAnimator` backend (module doc).

    NativeModel(path) reads a file of `save_native`; `NativeModel.from_student(student)` packs a
    torch student in memory."""

    streaming = True
    stream_in_c = True  # StreamingAnimator runs its bookkeeping in C too (`CStream`)

    def __init__(self, path: str | Path | None = None, *, meta: dict | None = None,
                 arrays: dict[str, np.ndarray] | None = None) -> None:
        self.path = None if path is None else Path(path)
        if path is None and (meta is None or arrays is None):
            raise TypeError("NativeModel: give a path, or meta and arrays (NativeModel.from_student)")
        where = self.path if self.path is not None else "native model"
        try:
            if self.path is not None:
                meta, arrays = self._read(self.path)
            # float16 weights of a half file widen to float32 exactly: the step multiplies floats
            self.meta, self._arrays = meta, {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}
            self.names: tuple[str, ...] = tuple(meta["names"])
            self.geometry = StreamGeometry(**{f.name: int(meta["geometry"][f.name]) for f in fields(StreamGeometry)})
            self._lib = load_library()
            self._net = self._struct()
        except (KeyError, TypeError, OverflowError, ZeroDivisionError) as e:  # a damaged meta (ctypes: OverflowError)
            raise ValueError(f"{where}: inconsistent native model ({type(e).__name__}: {e})") from None
        except ValueError as e:
            raise ValueError(str(e) if str(e).startswith(str(where)) else f"{where}: inconsistent native model ({e})") from None
        g = self.geometry
        # the relations the C step's buffers rely on (csrc/dfstream.c): a damaged file fails here
        problem = self._lib.df_net_problem(self._net_ref, g.past_samples, g.span_samples, g.receptive_samples,
                                           g.hop_samples, g.grid_samples)
        if problem:
            raise ValueError(f"{where}: inconsistent native model ({problem.decode()})")
        self._state_shape = (self.geometry.state_steps, self._net.cp)

    @classmethod
    def from_student(cls, student: Any, half: bool = False) -> "NativeModel":
        meta, arrays = pack_student(student, half=half)
        return cls(meta=meta, arrays=arrays)

    @staticmethod
    def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such native model file")
        if path.suffix == ".dfn":
            return read_dfn(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            # numpy's own words would be about pickles (a text file) or "No data left" (empty)
            why = "empty" if path.stat().st_size == 0 else ("not an .npz archive" if not zipfile.is_zipfile(path)
                                                           else f"a damaged .npz archive: {e}")
            raise ValueError(f"{path}: not a DistilFace native model ({why})") from None
        try:
            meta = json.loads(arrays.pop("meta").tobytes())
        except (KeyError, ValueError):
            raise ValueError(f"{path}: not a DistilFace native model (no readable 'meta')") from None
        if meta.get("format") != FILE_FORMAT or meta.get("version") != FILE_VERSION:
            raise ValueError(f"{path}: {meta.get('format')} version {meta.get('version')}, this runtime reads "
                             f"{FILE_FORMAT} version {FILE_VERSION}")
        return meta, arrays

    def _check_sizes(self) -> None:
        """Every array the C step reads holds exactly the floats the meta implies (as csrc/dfmodel.c
        checks a .dfn): a mis-sized array from a damaged file would be read past its end in C."""
        where = str(self.path or "native model")
        check_meta(self.meta, where)
        a = self._arrays
        for name, n in array_sizes(self.meta).items():
            if name not in a or a[name].size != n or (name == "ctx_z" and a[name].ndim != 3):
                got = "missing" if name not in a else f"{a[name].size} floats"
                raise ValueError(f"{where}: array {name} {got}, the model's sizes need {n}")

    def _struct(self) -> _Net:
        self._check_sizes()
        m, a, g = self.meta, self._arrays, self.geometry
        c = int(m["channels"])
        net = _Net(abi=ABI, channels=c, cp=_pad8(c), front=m["front"], n_enc=len(m["enc_kernel"]),
                   enc_norm=m["enc_norm"], proj_in=m["proj_in"], proj_gelu=m["proj_gelu"],
                   steps=g.steps_per_window, dilation=g.dilation, cache_steps=g.cache_steps, tail_steps=g.tail_steps,
                   groups=m["groups"], ctx_zlen=a["ctx_z"].shape[2] if m["groups"] else 0,
                   n_red=len(m["red_kernel"]), n_fc=len(m["fc_in"]), activation=m["activation"],
                   outputs=len(self.names), enc_eps=m["enc_eps"], proj_eps=m["proj_eps"], red_eps=m["red_eps"])
        if m["front"] == FRONTS["logmel"]:
            for k in MEL_KEYS:
                setattr(net, k, m[k])
        ptr = lambda name: a[name].ctypes.data if name in a else None  # noqa: E731 (kept alive in self._arrays)
        for name in ("mel_dft", "mel_fb", "proj_g", "proj_b", "proj_w", "proj_bias", "ctx_z", "ctx_bias", "red_g", "red_b"):
            setattr(net, name, ptr(name))
        for i in range(net.n_enc):
            net.enc_kernel[i], net.enc_stride[i] = m["enc_kernel"][i], m["enc_stride"][i]
            net.enc_dilation[i], net.enc_cout[i] = m["enc_dilation"][i], m["enc_cout"][i]
            net.enc_w[i], net.enc_bias[i] = ptr(f"enc_w{i}"), ptr(f"enc_bias{i}")
            net.enc_g[i], net.enc_b[i] = ptr(f"enc_g{i}"), ptr(f"enc_b{i}")
        for i in range(net.n_red):
            net.red_kernel[i], net.red_stride[i] = m["red_kernel"][i], m["red_stride"][i]
            net.red_w[i], net.red_bias[i] = ptr(f"red_w{i}"), ptr(f"red_bias{i}")
        for i in range(net.n_fc):
            net.fc_in[i], net.fc_out[i] = m["fc_in"][i], m["fc_out"][i]
            net.fc_w[i], net.fc_bias[i] = ptr(f"fc_w{i}"), ptr(f"fc_bias{i}")
        self._net_ref = ctypes.addressof(net)
        return net

    def __repr__(self) -> str:
        return f"NativeModel({str(self.path) if self.path else 'in memory'!r}, {self.meta['channels']} channels)"

    def c_stream(self, fps: float, past_samples: int, preds: list[tuple[int, float]], max_jobs: int,
                 rate_hz: int = 16000) -> CStream:
        """The animator's bookkeeping in C for this model, resampling included (`StreamingAnimator`
        calls it)."""
        return CStream(self, fps, past_samples, preds, max_jobs, rate_hz)

    def smoothed(self, weights: tuple[float, float, float]) -> Smoothed:
        """This model with ensemble smoothing (the torch student's offset, from the meta)."""
        return Smoothed(self, weights, int(self.meta["smooth_offset_samples"]))

    def phase_step(self, audio: np.ndarray, cache: np.ndarray | None,
                   frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L,) new-step audio, (S + R, cp) state or None, (F,) window indices -> ((F, outputs)
        frames, (S + R, cp) state); `distilface.runtime.step` has the meaning of each."""
        audio = np.ascontiguousarray(audio, np.float32)
        frames = np.ascontiguousarray(frames, np.int64)
        if cache is None:
            cache = np.zeros(self._state_shape, np.float32)
        elif cache.shape != self._state_shape or cache.dtype != np.float32 or not cache.flags.c_contiguous:
            raise ValueError(f"native step: state of shape {cache.shape} {cache.dtype}, expected {self._state_shape} float32")
        out = np.empty((len(frames), len(self.names)), np.float32)
        cache_out = np.empty(self._state_shape, np.float32)
        n = self._lib.df_step(self._net_ref, _address(audio), len(audio), _address(cache), _address(frames),
                              len(frames), _address(out), _address(cache_out))
        if n < 0:
            raise ValueError(f"native step: {ERRORS.get(n, n)} ({len(audio)} samples, frames {frames.tolist()})")
        return out, cache_out

    def windows(self, windows: np.ndarray) -> np.ndarray:
        """(N, window_samples) -> (N, outputs): every window alone through the step."""
        g = self.geometry
        first = np.zeros(1, np.int64) + g.cache_steps + g.tail_steps
        windows = np.ascontiguousarray(windows, np.float32)
        return np.concatenate([self.phase_step(w[: g.span_samples], None, first)[0] for w in windows])
