"""The C step (distilface.runtime.native): equal to torch's `PhaseStep` call by call (outputs and
state, exact times and frame grids, every norm, activation, width and window the C code has a
path for), streaming equal to offline torch for any chunking, the file format and its errors,
the real CLI, and a run without torch."""

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distilface.animate import animate_audio
from distilface.audio import EXAMPLE_AUDIO, load_audio
from distilface.checkpoint import load_student, save_checkpoint
from distilface.cli import main
from distilface.curves import num_frames
from distilface.models import resolve_model
from distilface.runtime import native
from distilface.runtime.native import NativeModel, NativeUnavailable, save_native
from distilface.runtime.step import TorchBackend
from distilface.runtime.streaming import StreamingAnimator, stream_all
from distilface.smoothing import EnsembleSmoothed
from distilface.student import StudentConfig, build_student, on_frame_grid

TOL = 1e-5  # measured: up to 5e-7 on the shipped C0/4 (tests below, docs/runtime.md)


def student(**kw):
    torch.manual_seed(0)
    return build_student(StudentConfig(**{"channels": 16, "context_groups": 8, **kw})).eval()


def batch_norm_student(**kw):
    s = student(norm="batch", **kw)
    g = torch.Generator().manual_seed(1)
    for n in s.encoder_norms:  # running statistics other than the initial 0 / 1
        n.norm.running_mean.copy_(0.1 * torch.randn(n.norm.running_mean.shape, generator=g))
        n.norm.running_var.copy_(0.5 + torch.rand(n.norm.running_var.shape, generator=g))
        n.norm.weight.data.copy_(1 + 0.1 * torch.randn(n.norm.weight.shape, generator=g))
    return s


def shipped_c04(grid):
    return on_frame_grid(load_student(resolve_model("c0-4-256ms-ft"))[0].eval(), grid)


def shipped_default(grid=1):
    """The shipped default: the frozen Whisper front end (log-mel, biased convs, no context conv)."""
    s = load_student(resolve_model(None))[0].eval()
    assert s.cfg.arch == "whisper_conv"
    return on_frame_grid(s, grid)


CASES = {
    # the shipped C0/4: 72 channels, groups of 9 (three output channels at a time in the context conv)
    "c0-4 exact": lambda: shipped_c04(1),
    "c0-4 grid 80": lambda: shipped_c04(80),
    # 16 channels (groups of 2: the one-channel context path), 36 (rows padded to 40)
    "16 ch grid 160": lambda: on_frame_grid(student(), 160),
    "36 ch batch norm tanh grid 80": lambda: on_frame_grid(
        batch_norm_student(channels=36, context_groups=4, output_activation="tanh"), 80),
    # a 256 ms window (12 steps: the context conv's generic path), no norm, no output activation
    "20 ch no norm 256 ms window": lambda: student(channels=20, context_groups=4, norm="none",
                                                   output_activation="none", window_ms=256.0, future_ms=64.0),
    # the shipped default: log-mel front end, 80 -> 384 -> 384 channels, 288 features, plain head;
    # on a grid it keeps one sequence per phase (no dense encoder)
    "default exact": lambda: shipped_default(1),
    "default grid 80": lambda: shipped_default(80),
}


@pytest.mark.parametrize("case", CASES)
def test_step_equals_torch_call_by_call(case):
    s = CASES[case]()
    tb, nb = TorchBackend(s), NativeModel.from_student(s)
    g = tb.geometry
    assert nb.geometry == g
    rng = np.random.default_rng(0)
    c = s.cfg.channels
    # a first call (no state): n new steps, enough for a first window and one 4 steps later; the
    # windows index the (zero) cache's S steps and then the new ones
    n = (g.steps_per_window - 1 + 4) * g.dilation + 1
    audio = (0.1 * rng.standard_normal(g.hop_samples * (n - 1 - g.tail_steps) + g.receptive_samples)
             ).astype(np.float32)
    frames = np.array([g.cache_steps, g.cache_steps + 4 * g.dilation], np.int64)
    want, state_t = tb.phase_step(audio, None, frames)
    got, state_n = nb.phase_step(audio, None, frames)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(state_n[:, :c].T, state_t, atol=TOL, rtol=0)
    assert not state_n[:, c:].any()  # the padding rows stay zero
    # three cached calls of 1, 7 and 3 new steps, the frames ending in the new steps
    for new in (1, 7, 3):
        audio = (0.1 * rng.standard_normal(g.hop_samples * (new - 1 - g.tail_steps) + g.receptive_samples)
                 ).astype(np.float32)
        frames = np.arange(new, dtype=np.int64)[::2]
        want, state_t = tb.phase_step(audio, state_t, frames)
        got, state_n = nb.phase_step(audio, state_n, frames)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
        np.testing.assert_allclose(state_n[:, :c].T, state_t, atol=TOL, rtol=0)


MODEL = on_frame_grid(student(), 80)
AUDIO = (0.1 * np.random.default_rng(0).standard_normal(16000 * 2 + 777)).astype(np.float32)
NATIVE = NativeModel.from_student(MODEL)
OFFLINE = {(fps, smooth): animate_audio(EnsembleSmoothed(MODEL) if smooth else MODEL, AUDIO, fps).values
           for fps in (30.0, 60.0) for smooth in (False, True)}


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 12000), min_size=1, max_size=30),
       fps=st.sampled_from([30.0, 60.0]), smooth=st.booleans())
def test_any_chunking_equals_offline_torch(sizes, fps, smooth):
    s = StreamingAnimator(NATIVE.smoothed((0.25, 0.5, 0.25)) if smooth else NATIVE, fps)
    outs, i, j = [], 0, 0
    while i < len(AUDIO):
        outs.append(s.push(AUDIO[i: i + sizes[j % len(sizes)]]))
        i, j = i + sizes[j % len(sizes)], j + 1
    got = np.concatenate(outs + [s.flush()])
    np.testing.assert_allclose(got, OFFLINE[fps, smooth], atol=1e-4, rtol=0)


def test_file_round_trip_and_bad_files(tmp_path):
    path = save_native(MODEL, tmp_path / "m.npz", source="tiny")
    loaded = NativeModel(path)
    assert loaded.names == NATIVE.names and loaded.geometry == NATIVE.geometry
    assert loaded.meta["source"] == "tiny" and loaded.meta["config"]["frame_grid_samples"] == 80
    np.testing.assert_array_equal(animate_audio(loaded, AUDIO[:9000]).values, animate_audio(NATIVE, AUDIO[:9000]).values)
    with pytest.raises(FileNotFoundError, match="no such native model file"):
        NativeModel(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="text.npz: not a DistilFace native model"):
        NativeModel(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a DistilFace native model"):
        NativeModel(tmp_path / "other.npz")
    meta = json.loads(np.load(path)["meta"].tobytes())
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    np.savez(tmp_path / "v9.npz", meta=np.frombuffer(json.dumps({**meta, "version": 9}).encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match="version 9, this runtime reads distilface-native version 2"):
        NativeModel(tmp_path / "v9.npz")
    # a damaged array would be read past its end in C: refused with its name
    np.savez(tmp_path / "cut.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
             **{**arrays, "enc_w3": arrays["enc_w3"][:-1]})
    with pytest.raises(ValueError, match="cut.npz: array enc_w3 .* floats, the model's sizes need"):
        NativeModel(tmp_path / "cut.npz")


def test_other_archs_and_bad_calls_fail_clearly():
    with pytest.raises(ValueError, match="runs the conv and whisper_conv students, not .mfcc."):
        NativeModel.from_student(student(arch="mfcc"))
    g = NATIVE.geometry
    with pytest.raises(ValueError, match="audio too short"):
        NATIVE.phase_step(np.zeros(g.receptive_samples // 4, np.float32), None, np.zeros(0, np.int64))
    audio = np.zeros(g.receptive_samples, np.float32)
    with pytest.raises(ValueError, match="frame index outside the steps"):
        NATIVE.phase_step(audio, None, np.array([g.state_steps + 1], np.int64))
    with pytest.raises(ValueError, match="expected"):
        NATIVE.phase_step(audio, np.zeros((3, 3), np.float32), np.zeros(0, np.int64))


def test_build_is_cached_atomic_and_needs_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILFACE_NATIVE_CACHE", str(tmp_path / "cache"))
    lib = native.build()
    assert lib.parent == tmp_path / "cache" and lib.is_file()
    assert [p.name for p in lib.parent.iterdir()] == [lib.name]  # no temporary file left behind
    mtime = lib.stat().st_mtime_ns
    assert native.build() == lib and lib.stat().st_mtime_ns == mtime  # cached: not rebuilt
    # a compiler that refuses the CPU flags (clang on arm64: no -march=native) gets a portable build
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS + ("-fno-such-flag-anywhere",))
    monkeypatch.setenv("DISTILFACE_NATIVE_CACHE", str(tmp_path / "portable"))
    with pytest.warns(RuntimeWarning, match="building with -O3 -ffast-math -fPIC"):
        portable = native.build()
    assert portable.is_file() and [p.name for p in portable.parent.iterdir()] == [portable.name]
    import ctypes
    assert ctypes.CDLL(str(portable)).df_abi() == native.ABI
    monkeypatch.setenv("DISTILFACE_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises((NativeUnavailable, OSError)):
        native.build(force=True)
    assert lib.stat().st_mtime_ns == mtime  # the failed build left the library alone
    monkeypatch.delenv("CC")
    monkeypatch.setattr(native, "compiler", lambda: None)
    monkeypatch.setenv("DISTILFACE_NATIVE_CACHE", str(tmp_path / "empty"))
    with pytest.raises(NativeUnavailable, match="needs a C compiler"):
        native.build()


DENORMALS = """
import numpy as np
from distilface.runtime.native import NativeModel, load_library
tiny = np.full(64, 1e-39, np.float32)  # denormals (64: numpy's vector loop, as a single value may not be)
load_library()
# compared as bits: with denormals-are-zero on, a float comparison would call 0 and tiny equal
assert ((tiny * np.float32(1.0)).view(np.uint32) == tiny.view(np.uint32)).all(), "the process's denormals are flushed"
"""


def test_loading_and_calling_leave_the_process_float_mode_alone(tmp_path):
    """A library built with -ffast-math and linked by gcc 12 sets flush-to-zero for the whole
    process on load; this one flushes inside its calls only."""
    subprocess.run([sys.executable, "-c", DENORMALS], check=True, timeout=120)
    tiny = np.full(64, 1e-39, np.float32)
    NATIVE.phase_step(np.zeros(NATIVE.geometry.receptive_samples, np.float32), None, np.zeros(0, np.int64))
    assert ((tiny * np.float32(1.0)).view(np.uint32) == tiny.view(np.uint32)).all()


def test_cli_export_native_and_animate(tmp_path, capsys):
    """The real CLI: `export --native` checks the C step against torch on real speech, and
    `animate --model x.npz` equals `animate` of the checkpoint."""
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, student())
    main(["export", str(ckpt), "--native", "--frame-grid", "80", "-o", str(tmp_path / "m.npz")])
    rep = json.loads(capsys.readouterr().out)
    assert rep["runtime"] == "native" and rep["frames"] == 99 and rep["max_abs_diff"] < 1e-4
    for model, name in ((ckpt, "torch.csv"), (tmp_path / "m.npz", "native.csv")):
        main(["animate", str(EXAMPLE_AUDIO), "-o", str(tmp_path / name), "--model", str(model), "--frame-grid", "80",
              "--no-progress"] + (["--runtime", "torch"] if name == "torch.csv" else []))
    a, b = (np.genfromtxt(tmp_path / n, delimiter=",", skip_header=1)[:, 2:] for n in ("torch.csv", "native.csv"))
    assert a.shape == (99, 61) and np.nanmax(np.abs(a - b)) < 1e-4
    with pytest.raises(SystemExit, match="no --int8"):
        main(["export", str(ckpt), "--native", "--int8", "-o", str(tmp_path / "q.npz")])
    with pytest.raises(SystemExit, match="add --native"):
        main(["export", str(ckpt), "--half", "-o", str(tmp_path / "q.onnx")])
    capsys.readouterr()
    main(["export", str(ckpt), "--native", "--half", "-o", str(tmp_path / "h.dfn")])
    rep = json.loads(capsys.readouterr().out)
    assert rep["half"] and rep["max_abs_diff"] < 1e-4 and 0 < rep["vs_fp32"]["max_abs_diff"] < 0.05
    # --runtime native: the checkpoint itself in the C runtime, no export step
    main(["animate", str(EXAMPLE_AUDIO), "-o", str(tmp_path / "rt.csv"), "--model", str(ckpt), "--frame-grid", "80",
          "--runtime", "native", "--smooth", "--no-progress"])
    main(["animate", str(EXAMPLE_AUDIO), "-o", str(tmp_path / "sm.csv"), "--model", str(ckpt), "--frame-grid", "80",
          "--smooth", "--no-progress", "--runtime", "torch"])
    c, d = (np.genfromtxt(tmp_path / n, delimiter=",", skip_header=1)[:, 2:] for n in ("rt.csv", "sm.csv"))
    assert c.shape == (99, 61) and np.nanmax(np.abs(c - d)) < 1e-4
    from distilface.animate import load_model
    with pytest.raises(ValueError, match="an ONNX export runs in onnxruntime"):
        load_model(tmp_path / "x.onnx", runtime="native")


NO_TORCH = """
import sys

class _NoTorch:  # any `import torch` fails, as on a machine without it
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, _NoTorch())
import numpy as np
from distilface.runtime.native import NativeModel
from distilface.runtime.streaming import StreamingAnimator, stream_all

np.save(sys.argv[3], stream_all(StreamingAnimator(NativeModel(sys.argv[1]), 30.0), np.load(sys.argv[2]), 320))
from distilface.cli import main  # the real CLI on the native file
main(["animate", sys.argv[4], "-o", sys.argv[3] + ".csv", "--model", sys.argv[1], "--smooth", "--no-progress"])
assert "torch" not in sys.modules and "onnxruntime" not in sys.modules
"""


def test_runs_without_torch_or_onnxruntime(tmp_path):
    path = save_native(MODEL, tmp_path / "m.npz")
    audio = load_audio(EXAMPLE_AUDIO)
    np.save(tmp_path / "audio.npy", audio)
    (tmp_path / "run.py").write_text(textwrap.dedent(NO_TORCH))
    subprocess.run([sys.executable, str(tmp_path / "run.py"), str(path), str(tmp_path / "audio.npy"),
                    str(tmp_path / "out.npy"), str(EXAMPLE_AUDIO)], check=True, timeout=120, env={**os.environ})
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), animate_audio(MODEL, audio, 30.0).values,
                               atol=1e-4, rtol=0)
    csv = np.genfromtxt(str(tmp_path / "out.npy") + ".csv", delimiter=",", skip_header=1)
    assert csv.shape[0] == len(np.load(tmp_path / "out.npy"))


def test_stream_all_of_shipped_c04_on_real_speech():
    s = shipped_c04(80)
    audio = load_audio(EXAMPLE_AUDIO)
    got = stream_all(StreamingAnimator(NativeModel.from_student(s), 30.0), audio, 320)
    np.testing.assert_allclose(got, animate_audio(s, audio, 30.0).values, atol=TOL, rtol=0)


def test_shipped_default_streams_in_c_equal_to_torch(tmp_path):
    """The default model through the C animator, 20 ms pushes, smoothed, on real speech with a
    stretch of digital silence (log-mel power 0: the floor) and a loud clipped one; and its .dfn
    loaded and streamed by C alone."""
    from distilface.runtime.native import stream_dfn

    s = shipped_default()
    speech = load_audio(EXAMPLE_AUDIO)[:32000]
    audio = np.concatenate([speech[:12000], np.zeros(8000, np.float32), np.clip(8 * speech[12000:], -1, 1)])
    net = NativeModel.from_student(s)
    got = stream_all(StreamingAnimator(net.smoothed((0.25, 0.5, 0.25)), 30.0), audio, 320)
    want = animate_audio(EnsembleSmoothed(s, (0.25, 0.5, 0.25)), audio, 30.0).values
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    names, got = stream_dfn(save_native(s, tmp_path / "default.dfn"), audio, 30.0, chunk=333)
    assert names == tuple(s.cfg.names)
    np.testing.assert_allclose(got, animate_audio(s, audio, 30.0).values, atol=TOL, rtol=0)
    # on a frame grid (which crashed torch streaming and offline animation of this arch until
    # the grid stopped asking it for the conv student's dense encoder): one sequence per phase
    s80 = shipped_default(80)
    got = stream_all(StreamingAnimator(NativeModel.from_student(s80), 30.0), audio, 533)
    np.testing.assert_allclose(got, animate_audio(s80, audio, 30.0).values, atol=TOL, rtol=0)


@pytest.mark.parametrize("which", ["c0-4 grid 80", "default"])
def test_half_precision_weights_compute_the_rounded_student(tmp_path, which):
    """`half`: the weight matrices stored as float16, about half the file; loaded (in Python, or by
    the C loader of a .dfn) they widen to float exactly, so the C step computes the student whose
    weights are rounded the same way (`round_to_half`), to the fp32 tolerance."""
    from distilface.runtime.native import round_to_half, stream_dfn

    s = shipped_c04(80) if which.startswith("c0-4") else shipped_default()
    audio = load_audio(EXAMPLE_AUDIO)[:24000]
    half = NativeModel.from_student(s, half=True)
    npz = np.load(save_native(s, tmp_path / "h.npz", half=True))
    assert {k: str(npz[k].dtype) for k in npz.files if k != "meta"} == {
        k: "float16" if native.is_matrix(k) else "float32" for k in half._arrays}
    want = animate_audio(round_to_half(s), audio, 30.0).values
    got = stream_all(StreamingAnimator(half, 30.0), audio, 533)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    full = animate_audio(s, audio, 30.0).values
    assert 1e-6 < np.abs(got - full).max() < 0.02  # rounding moves the curves, a little
    f16, f32 = save_native(s, tmp_path / "h.dfn", half=True), save_native(s, tmp_path / "f.dfn")
    assert 0.5 < f16.stat().st_size / f32.stat().st_size < 0.6
    names, got = stream_dfn(f16, audio, 30.0, chunk=320)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    np.testing.assert_array_equal(NativeModel(f16)._arrays["proj_w"], half._arrays["proj_w"])  # read back


def test_the_c_loaders_half_to_float_is_exact(tmp_path):
    """csrc/dfmodel.c widens a half file's weights bit by bit: numpy's float16 -> float32 for every
    one of the 65536 values but NaNs (zeros, subnormals, normals, infinities)."""
    if native.compiler() is None:
        pytest.skip("no C compiler")
    src = tmp_path / "h.c"
    src.write_text(textwrap.dedent(f"""
        #include "{native.MODEL_SOURCE}"
        #include <stdio.h>
        int main(void) {{
            for (unsigned i = 0; i < 65536; i++) {{ float f = half_to_float((uint16_t)i); fwrite(&f, 4, 1, stdout); }}
            return 0;
        }}"""))
    exe = tmp_path / "h"
    subprocess.run([native.compiler(), "-O2", "-Wno-psabi", "-I", str(native.CSRC), "-o", str(exe), str(src),
                    str(native.STREAM_SOURCE), str(native.RESAMPLE_SOURCE), str(native.SOURCE), "-lm"], check=True)
    got = np.frombuffer(subprocess.run([str(exe)], capture_output=True, check=True).stdout, np.float32)
    want = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(got[ok].view(np.uint32), want[ok].view(np.uint32))
    assert np.isnan(got[~ok]).all()


def _python_bookkeeping(model):
    """The same C step with `StreamingAnimator`'s own Python bookkeeping instead of csrc/dfstream.c."""
    py = NativeModel(meta=model.meta, arrays=model._arrays)
    py.stream_in_c = False
    return py


EXACT = student()  # exact frame times: 3 phases at 30 fps, more with smoothing and at 60 fps
C_EXACT, C_GRID = NativeModel.from_student(EXACT), NATIVE
PY = {"exact": _python_bookkeeping(C_EXACT), "grid": _python_bookkeeping(C_GRID)}


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=30), fps=st.sampled_from([30.0, 60.0, 24.0]),
       smooth=st.booleans(), which=st.sampled_from(["exact", "grid"]))
def test_c_bookkeeping_equals_the_python_animator(sizes, fps, smooth, which):
    """csrc/dfstream.c against `StreamingAnimator`'s Python on the same C step: the same frames
    push by push, and the same work (encoder steps, windows, phases)."""
    c_model = C_EXACT if which == "exact" else C_GRID
    wrap = (lambda m: m.smoothed((0.25, 0.5, 0.25))) if smooth else (lambda m: m)
    a, b = StreamingAnimator(wrap(c_model), fps), StreamingAnimator(wrap(PY[which]), fps)
    assert a._native is not None and b._native is None
    i, j = 0, 0
    while i < len(AUDIO):
        n = sizes[j % len(sizes)]
        x, y = a.push(AUDIO[i: i + n]), b.push(AUDIO[i: i + n])
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)
        i, j = i + n, j + 1
    np.testing.assert_allclose(a.flush(), b.flush(), atol=1e-6, rtol=0)
    assert (a.stats, a.phases, a.frames_out) == (b.stats, b.phases, b.frames_out)
    with pytest.raises(RuntimeError, match="push after the final one"):
        a.push(AUDIO[:10])
    a.reset()
    assert a.frames_out == 0 and a.stats == {"encoder_steps": 0, "windows": 0}
    got = np.concatenate([a.push(AUDIO[:7000]), a.flush()])
    want = animate_audio(EnsembleSmoothed(EXACT if which == "exact" else MODEL) if smooth
                         else (EXACT if which == "exact" else MODEL), AUDIO[:7000], fps).values
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_c_bookkeeping_resamples_in_c_and_bounds_batches():
    from distilface.audio import resample

    x44 = resample(AUDIO, 16000, 44100)
    for model, want_model in ((C_EXACT, EXACT), (C_EXACT.smoothed((0.25, 0.5, 0.25)), EnsembleSmoothed(EXACT))):
        a = StreamingAnimator(model, 30.0, sample_rate_hz=44100)
        assert a._resampler is None and a._native.rate_hz == 44100  # no Python on the way
        got = stream_all(a, x44, 4410)
        np.testing.assert_allclose(got, animate_audio(want_model, resample(x44, 44100, 16000), 30.0).values,
                                   atol=1e-4, rtol=0)
    # push by push the same frames as scipy's resampling and the Python bookkeeping (odd pieces)
    x48 = resample(AUDIO, 16000, 48000)
    a, b = StreamingAnimator(C_EXACT, 60.0, 48000), StreamingAnimator(PY["exact"], 60.0, 48000)
    assert b._resampler is not None
    rng, i, outs = np.random.default_rng(3), 0, [[], []]
    while i < len(x48):
        n = int(rng.integers(1, 9000))
        outs[0].append(a.push(x48[i: i + n]))
        outs[1].append(b.push(x48[i: i + n]))
        i += n
    x, y = np.concatenate(outs[0] + [a.flush()]), np.concatenate(outs[1] + [b.flush()])
    assert x.shape == y.shape == (num_frames(len(x48) / 48000, 60.0), len(EXACT.cfg.names))
    np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
    # a tiny pass: every push's windows run in many batches of at most 3 jobs
    s = StreamingAnimator(C_EXACT.smoothed((0.25, 0.5, 0.25)), 60.0, pass_s=0.02)
    got = np.concatenate([s.push(AUDIO), s.flush()])
    np.testing.assert_allclose(got, animate_audio(EnsembleSmoothed(EXACT), AUDIO, 60.0).values, atol=1e-4, rtol=0)


@settings(max_examples=25, deadline=None)
@given(rate=st.sampled_from([1000, 8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000, 96000, 384000]),
       # empty pushes among others; not only empty ones, which would never get through the signal
       sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=20).filter(any), ms=st.integers(0, 1500))
def test_c_resampler_equals_resample_poly_for_any_chunking(rate, sizes, ms):
    """csrc/dfresample.c, chunk by chunk, against scipy's resample_poly on the whole signal (what
    `distilface.audio.resample` and the Python `StreamResampler` compute): same length, values
    within 1e-6 (float sums in another order)."""
    from distilface.audio import resample
    from distilface.runtime.native import CResampler

    x = (np.random.default_rng(rate).standard_normal(ms * rate // 1000) * 0.3).astype(np.float32)
    r, outs, i, j = CResampler(rate, 16000), [], 0, 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        outs.append(r(x[i: i + n]))
        i, j = i + n, j + 1
    got = np.concatenate(outs + [r(x[:0], final=True)])
    want = resample(x, rate, 16000)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_c_resampler_limits_waiting_outputs_and_bad_rates():
    """Outputs beyond a push's room wait for the next push (and a final push's for the pushes after
    it); rates outside 1 to 384 kHz, or whose ratio to 16 kHz has terms over 8000, are refused
    by name; a push after the end is refused."""
    from distilface.audio import resample
    from distilface.runtime.native import CResampler, load_library

    lib = load_library()
    x = AUDIO[:30000]
    x44 = resample(x, 16000, 44100)
    h = lib.df_resampler_new(44100, 16000)
    try:
        out, got = np.empty(7, np.float32), []
        for i in range(0, len(x44), 1000):
            piece = np.ascontiguousarray(x44[i: i + 1000])
            n = lib.df_resampler_push(h, piece.ctypes.data, len(piece), 0, out.ctypes.data, 7)
            assert 0 <= n <= 7
            got.append(out[:n].copy())
        while (n := lib.df_resampler_push(h, None, 0, 1, out.ctypes.data, 7)) > 0:
            got.append(out[:n].copy())
        assert n == 0
        np.testing.assert_allclose(np.concatenate(got), resample(x44, 44100, 16000), atol=1e-6, rtol=0)
        assert lib.df_resampler_push(h, x44.ctypes.data, 10, 0, out.ctypes.data, 7) == -5  # after the end
        assert lib.df_resampler_push(h, None, -1, 0, out.ctypes.data, 7) == -7
    finally:
        lib.df_resampler_free(h)
    for rate in (999, 384001, 16001):
        with pytest.raises(ValueError, match=f"resampling {rate} Hz -> 16000 Hz: not supported"):
            CResampler(rate, 16000)
        with pytest.raises(ValueError, match=f"at {rate} Hz: sample rate not supported"):
            StreamingAnimator(C_EXACT, 30.0, sample_rate_hz=rate)


# -- the .dfn file and the C API for callers without Python ---------------------------------------

@pytest.mark.parametrize("which,fps,smooth,rate", [("exact", 30.0, False, 16000), ("exact", 60.0, True, 16000),
                                                   ("grid", 30.0, True, 16000), ("grid", 30.0, False, 48000)])
def test_dfn_loaded_and_streamed_in_c_equals_torch(tmp_path, which, fps, smooth, rate):
    from distilface.audio import resample
    from distilface.runtime.native import stream_dfn

    s = EXACT if which == "exact" else MODEL
    path = save_native(s, tmp_path / "m.dfn")
    weights = (0.25, 0.5, 0.25) if smooth else None
    x = resample(AUDIO, 16000, rate)
    names, got = stream_dfn(path, x, fps, chunk=960, smooth=weights, rate_hz=rate)
    assert names == tuple(s.cfg.names)
    want = animate_audio(EnsembleSmoothed(s, weights) if smooth else s, resample(x, rate, 16000), fps).values
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_dfn_bad_files_fail_with_the_loaders_message(tmp_path):
    from distilface.runtime.native import stream_dfn

    good = save_native(MODEL, tmp_path / "m.dfn").read_bytes()
    for name, data, message in (("npz.dfn", b"PK\x03\x04" + good[4:], "not a DistilFace native model"),
                                ("v1.dfn", good[:4] + b"\x01\x00\x00\x00" + good[8:], "unsupported .dfn version"),
                                ("cut.dfn", good[:100], "truncated header"),
                                ("short.dfn", good[:-4], "truncated or mis-sized weights"),
                                ("long.dfn", good + b"\x00", "unexpected data after the weights")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            stream_dfn(tmp_path / name, AUDIO[:4000])
    with pytest.raises(ValueError, match="missing.dfn: cannot open"):
        stream_dfn(tmp_path / "missing.dfn", AUDIO[:4000])
    # from memory (df_model_load_memory: an engine's assets, the browser): the same checks and names
    lib, err = native.load_library(), ctypes.create_string_buffer(512)
    for name, data, message in (("npz.dfn", b"PK\x03\x04" + good[4:], "not a DistilFace native model"),
                                ("cut.dfn", good[:100], "truncated header"),
                                ("long.dfn", good + b"\x00", "unexpected data after the weights"),
                                ("empty.dfn", b"", "not a DistilFace native model")):
        assert not lib.df_model_load_memory(data, len(data), name.encode(), err, len(err))
        assert err.value.decode().startswith(f"{name}: {message}")
    m = lib.df_model_load_memory(good, len(good), b"m.dfn", err, len(err))
    try:
        assert lib.df_model_outputs(m) == len(MODEL.cfg.names)
        assert [lib.df_model_name(m, i).decode() for i in range(len(MODEL.cfg.names))] == list(MODEL.cfg.names)
    finally:
        lib.df_model_free(m)


def test_dfanimate_example_program_needs_no_python(tmp_path):
    """csrc/dfanimate.c built as its comment says, fed 16-bit PCM on stdin: the CSV's frames are
    the torch student's on the same (quantised) audio."""
    csrc = native.CSRC
    cc = native.compiler()
    objs = []
    for src, flags in (("dfstep.c", ["-O3", "-march=native", "-ffast-math"]), ("dfstream.c", ["-O2"]),
                       ("dfmodel.c", ["-O2"]), ("dfresample.c", ["-O2"]), ("dfanimate.c", ["-O2"])):
        objs.append(tmp_path / (src[:-2] + ".o"))
        subprocess.run([cc, *flags, "-c", str(csrc / src), "-o", str(objs[-1])], check=True)
    exe = tmp_path / "dfanimate"
    subprocess.run([cc, "-o", str(exe), *map(str, objs), "-lm"], check=True)
    model = save_native(EXACT, tmp_path / "m.dfn")
    pcm = np.clip(np.round(AUDIO * 32768), -32768, 32767).astype("<i2")
    for fps, extra, wrap in ((30.0, [], lambda s: s), (60.0, ["smooth"], EnsembleSmoothed)):
        r = subprocess.run([str(exe), str(model), f"{fps:g}", *extra], input=pcm.tobytes(), capture_output=True,
                           timeout=120, check=True)
        lines = r.stdout.decode().splitlines()
        assert lines[0].split(",") == ["frame", "time_s", *EXACT.cfg.names]
        got = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
        want = animate_audio(wrap(EXACT), pcm.astype(np.float32) / 32768, fps).values
        assert got.shape == (len(want), 2 + len(EXACT.cfg.names))
        np.testing.assert_array_equal(got[:, 0], np.arange(len(want)))
        np.testing.assert_allclose(got[:, 2:], want, atol=1e-4, rtol=0)
    # 44.1 kHz PCM, resampled in C: the student's frames on scipy's resampling of it
    from distilface.audio import resample

    pcm44 = np.clip(np.round(resample(AUDIO, 16000, 44100) * 32768), -32768, 32767).astype("<i2")
    r = subprocess.run([str(exe), str(model), "30", "--rate", "44100"], input=pcm44.tobytes(), capture_output=True,
                       timeout=120, check=True)
    got = np.array([[float(x) for x in line.split(",")] for line in r.stdout.decode().splitlines()[1:]])
    want = animate_audio(EXACT, resample(pcm44.astype(np.float32) / 32768, 44100, 16000), 30.0).values
    assert got.shape == (len(want), 2 + len(EXACT.cfg.names))
    np.testing.assert_allclose(got[:, 2:], want, atol=1e-4, rtol=0)
    r = subprocess.run([str(exe), str(tmp_path / "none.dfn")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "none.dfn: cannot open" in r.stderr
    r = subprocess.run([str(exe), str(model), "--rate", "16001"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "sample rate 16001 Hz not supported" in r.stderr


def test_dfn_reads_back_in_python_and_through_the_cli(tmp_path, capsys):
    path = save_native(MODEL, tmp_path / "m.dfn")
    loaded = NativeModel(path)
    assert loaded.geometry == NATIVE.geometry and loaded.names == NATIVE.names
    np.testing.assert_array_equal(animate_audio(loaded, AUDIO[:9000]).values, animate_audio(NATIVE, AUDIO[:9000]).values)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, student())
    main(["export", str(ckpt), "--native", "-o", str(tmp_path / "c.dfn")])
    rep = json.loads(capsys.readouterr().out)
    assert rep["frames"] == 99 and rep["max_abs_diff"] < 1e-4
    main(["animate", str(EXAMPLE_AUDIO), "-o", str(tmp_path / "c.csv"), "--model", str(tmp_path / "c.dfn"), "--no-progress"])
    got = np.genfromtxt(tmp_path / "c.csv", delimiter=",", skip_header=1)[:, 2:]
    assert got.shape == (99, 61)
    (tmp_path / "bad.dfn").write_bytes(b"DFN1" + b"\x01\x00\x00\x00")
    with pytest.raises(ValueError, match="bad.dfn: truncated .dfn file"):
        NativeModel(tmp_path / "bad.dfn")


@pytest.mark.parametrize("grid", [7, 160, 320])  # no dense encoder at 7: one sequence per phase
@pytest.mark.parametrize("fps", [25.0, 29.97, 59.94])
def test_c_bookkeeping_on_odd_grids_and_rates(grid, fps):
    """Frame times round(k 16000 / fps / grid) * grid in C as in Python, for rates whose frame
    times are not whole samples and grids with and without a dense encoder."""
    s = on_frame_grid(student(), grid)
    c, py = NativeModel.from_student(s), _python_bookkeeping(NativeModel.from_student(s))
    rng = np.random.default_rng(grid)
    for wrap in (lambda m: m, lambda m: m.smoothed((0.25, 0.5, 0.25))):
        a, b = StreamingAnimator(wrap(c), fps), StreamingAnimator(wrap(py), fps)
        i, outs_a, outs_b = 0, [], []
        while i < 24000:
            n = int(rng.integers(1, 4000))
            outs_a.append(a.push(AUDIO[i: i + n]))
            outs_b.append(b.push(AUDIO[i: i + n]))
            assert outs_a[-1].shape == outs_b[-1].shape
            i += n
        x, y = np.concatenate(outs_a + [a.flush()]), np.concatenate(outs_b + [b.flush()])
        assert x.shape == y.shape and (a.stats, a.phases) == (b.stats, b.phases)
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)
