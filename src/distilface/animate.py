"""Animate an audio file of any length with a student: audio file -> `Curves`.

The file streams through in blocks, so memory stays bounded however long it is. A first pass
(`scan_file`) checks every block (decoder errors, NaN/inf: AudioError naming the file before any
model work) and measures the file (`AudioStats`: silence and clipping are warned about, a DC
offset beyond `DC_OFFSET_MAX` is subtracted, float audio beyond full scale scaled to peak 1); then
the second pass:

    read a block (soundfile for wav/flac/ogg/mp3, PyAV for everything else)
    -> mix down to mono, conditioned (`AudioStats.condition`: minus a DC offset, scaled, if so)
    -> `StreamResampler` to 16 kHz: exact polyphase resampling with carried-over context, so the
       stream equals `scipy.signal.resample_poly` over the whole file (what `load_audio` does)
    -> `StreamingAnimator` (distilface.runtime.streaming): runs the student on every frame whose
       window (past + future context) has fully arrived, reusing the encoder steps that frames
       of one phase share, keeping only the audio the next frames still need

Frames are defined as for the whole file at once (`animate_audio`): frame k shows time k / fps,
its window starts at `frame_starts(...)[k]`, windows are zero-padded beyond the file's ends, and
there are `num_frames(len(audio) / 16000, fps)` frames. A window sees the same samples whichever
block it falls in, so blockwise output equals whole-file output (up to float rounding, ~1e-7).

The model is a torch student (optionally `EnsembleSmoothed`) or an exported ONNX file run by
onnxruntime (`distilface.runtime.ort.OrtModel`); this module imports torch only for the former.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distilface.audio import (MAX_RATIO_TERM, SAMPLE_RATE_HZ, AudioError, AudioStats, av_frame_samples,
                              bad_samples, check_rate, declared_wav_frames, decoder_error, mix_to_mono)
from distilface.curves import Curves, num_frames

if TYPE_CHECKING:
    import torch

    from distilface.student import Student

logger = logging.getLogger(__name__)

PASS_S = 20.0  # most audio one student pass encodes: bounds memory whatever block_s is
PROGRESS_MIN_S = 60.0  # files shorter than this get no progress bar
MAX_BLOCK_VALUES = 1 << 23  # samples x channels decoded at once (32 MB float32): bounds the block
#                             of a file with many channels at a high rate whatever block_s is


class StreamResampler:
    """Streaming polyphase resampler equal to `scipy.signal.resample_poly` on the whole signal.

    Call it with chunks of any size (`final=True` with the last one, which may be empty); it
    returns the output samples that are complete so far. Same filter as resample_poly's default
    (Kaiser-windowed sinc, beta 5, 10 zero crossings per side at the lower rate); every call runs
    resample_poly over the retained input, which starts at a multiple of `down` so the output
    phase matches, and keeps `margin` input samples of context on each side of new output.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        if min(from_hz, to_hz) <= 0:
            raise ValueError(f"resampling {from_hz} Hz -> {to_hz} Hz: rates must be positive")
        g = gcd(int(from_hz), int(to_hz))
        self.up, self.down = int(to_hz) // g, int(from_hz) // g
        if max(self.up, self.down) > MAX_RATIO_TERM:  # the filter would have 20x that many taps
            raise ValueError(f"resampling {from_hz} Hz -> {to_hz} Hz: ratio {self.up}/{self.down} has terms "
                             f"over {MAX_RATIO_TERM} (see distilface.audio.check_rate)")
        half_len = 10 * max(self.up, self.down)  # resample_poly's filter half-length (upsampled)
        self.margin = half_len // self.up + 2  # input samples on each side that reach an output
        self._h = None
        if self.up != self.down:
            from scipy.signal import firwin

            self._h = firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)  # retained input, from sample _buf_start
        self._buf_start = 0
        self._n_in = 0
        self._m_next = 0  # next output sample to emit

    def __call__(self, chunk: np.ndarray, final: bool = False) -> np.ndarray:
        """(n,) float32 input at from_hz -> (m,) float32 output at to_hz."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self._h is None:
            return chunk
        from scipy.signal import resample_poly

        self._buf = np.concatenate([self._buf, chunk])
        self._n_in += len(chunk)
        up, down = self.up, self.down
        if final:
            m_end = -(-self._n_in * up // down)  # ceil: resample_poly's output length
        else:
            # output m reads inputs up to (m * down + half_len) / up: all present below m_end
            m_end = max((self._n_in - 1 - self.margin) * up // down + 1, 0)
        if m_end <= self._m_next or not len(self._buf):
            return np.zeros(0, np.float32)
        # float32 taps like resample_poly's own default for float32 input: identical arithmetic
        y = resample_poly(self._buf, up, down, window=self._h.astype(self._buf.dtype))
        offset = self._buf_start * up // down
        out = y[self._m_next - offset: m_end - offset]
        self._m_next = m_end
        keep_from = max(self._buf_start, ((m_end * down) // up - self.margin) // down * down)
        self._buf = self._buf[keep_from - self._buf_start:]
        self._buf_start = keep_from
        return out.astype(np.float32, copy=False)


def animate_audio(model: Student, audio: np.ndarray, fps: float = 30.0) -> Curves:
    """Whole-signal reference: (samples,) float32 16 kHz in memory -> Curves, in one pass.
    A model without `forward_frames` (an ONNX `OrtModel`) streams the signal in one push."""
    audio = np.asarray(audio, dtype=np.float32)
    if not hasattr(model, "forward_frames"):
        from distilface.runtime.streaming import StreamingAnimator, stream_all

        stream = StreamingAnimator(model, fps)
        return Curves(fps, stream.names, stream_all(stream, audio, len(audio)))
    import torch

    from distilface.student import frame_starts

    n = num_frames(len(audio) / SAMPLE_RATE_HZ, fps)
    if n == 0:  # no audio, no frames (as a stream of nothing)
        return Curves(fps, model.cfg.names, np.zeros((0, len(model.cfg.names)), np.float32))
    with torch.inference_mode():
        values = model.forward_frames(torch.from_numpy(audio), frame_starts(n, fps, model.cfg)).numpy()
    return Curves(fps, model.cfg.names, values)


# -- reading ----------------------------------------------------------------------------------

def _open_soundfile(path: Path, block_s: float, stack: contextlib.ExitStack):
    import soundfile as sf

    f = stack.enter_context(sf.SoundFile(str(path)))
    rate = check_rate(f.samplerate, path)
    block_samples = max(min(round(block_s * rate), MAX_BLOCK_VALUES // max(int(f.channels), 1)), 1)

    def blocks() -> Iterator[np.ndarray]:
        while True:
            data = f.read(block_samples, dtype="float32", always_2d=True)
            if not len(data):
                return
            yield mix_to_mono(data)

    return rate, blocks()


def _open_av(path: Path, block_s: float, stack: contextlib.ExitStack):
    import av

    container = stack.enter_context(av.open(str(path)))
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        raise AudioError(f"{path}: no audio stream")
    rate = check_rate(stream.codec_context.sample_rate or 0, path)
    block_samples = max(min(round(block_s * rate), MAX_BLOCK_VALUES), 1)  # mono: frames are mixed down as decoded

    def blocks() -> Iterator[np.ndarray]:
        pending, held = [], 0
        for frame in container.decode(stream):
            pending.append(mix_to_mono(av_frame_samples(frame)))
            held += len(pending[-1])
            if held >= block_samples:
                yield np.concatenate(pending)
                pending, held = [], 0
        if pending:
            yield np.concatenate(pending)

    return rate, blocks()


def _open_blocks(path: Path, block_s: float, stack: contextlib.ExitStack):
    """-> (source rate, iterator of (n,) float32 mono source blocks)."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        return _open_soundfile(path, block_s, stack)
    except AudioError:
        raise
    except Exception:
        pass  # not for libsndfile: PyAV (ffmpeg) decodes the rest
    try:
        return _open_av(path, block_s, stack)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{path}: unsupported or corrupt audio ({decoder_error(e)})") from None


def _checked_blocks(path: Path, blocks: Iterator[np.ndarray], rate: int) -> Iterator[np.ndarray]:
    """Turns decoder failures into AudioError and rejects NaN / inf / absurd samples (`bad_samples`),
    naming the file."""
    read = 0
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except AudioError:
            raise
        except Exception as e:
            raise AudioError(f"{path}: corrupt audio, decoding failed past {read / rate:.1f} s "
                             f"({decoder_error(e)})") from None
        problem = bad_samples(block, rate, read)
        if problem:
            raise AudioError(f"{path}: {problem}")
        read += len(block)
        yield block


def scan_file(path: str | Path, block_s: float = 60.0) -> tuple[int, AudioStats]:
    """A first pass over an audio file, block by block -> (source rate, `AudioStats` of its mono
    samples). Raises AudioError, naming the file, for everything `animate_file` rejects, so that a
    bad file fails before any model work and the DC offset is known before the first block."""
    path = Path(path)
    stats = AudioStats()
    with contextlib.ExitStack() as stack:
        rate, blocks = _open_blocks(path, block_s, stack)
        for block in _checked_blocks(path, blocks, rate):
            stats.add(block)
    if stats.samples == 0:
        raise AudioError(f"{path}: no audio samples")
    stats.declared, stats.rate_hz = declared_wav_frames(path), rate
    return rate, stats


def file_blocks(path: str | Path, block_s: float, stack: contextlib.ExitStack,
                stats: AudioStats | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """-> (source rate, iterator of (n,) float32 mono blocks of about `block_s` seconds at that
    rate, conditioned by `stats` (`AudioStats.condition`) if given); the decoder stays open until
    `stack` closes. Decoder failures and bad samples raise AudioError naming the file as they are
    reached."""
    path = Path(path)
    rate, blocks = _open_blocks(path, block_s, stack)
    checked = _checked_blocks(path, blocks, rate)
    if stats is not None:
        checked = (stats.condition(block) for block in checked)
    return rate, checked


def log_conditioning(path: str | Path, stats: AudioStats, log: logging.Logger = logger) -> None:
    """Logs what the animating commands make of a file with these stats: a warning line for
    silence, clipping or float audio beyond full scale, an info line for a removed DC offset."""
    for line in stats.warnings(path):
        log.warning("%s", line)
    if stats.dc_offset:
        log.info("%s: DC offset %.3f removed", path, stats.dc_offset)


def animate_file(model: Student, audio_path: str | Path, fps: float = 30.0, block_s: float = 60.0,
                 progress: bool = True) -> Curves:
    """Animate any common audio file with `model` (a torch student or an ONNX `OrtModel`) ->
    Curves(fps, curve names, (frames, outputs)).

    Any sample rate (resampled to 16 kHz exactly as `load_audio` does) and channel count (mixed
    down). Reads `block_s` seconds of source audio at a time, twice: a first pass checks the file
    (`scan_file`), the second animates it; memory is bounded by the block and by `PASS_S` seconds
    per student pass, not by the file's length. The result equals
    `animate_audio(model, load_audio(path, conditioned=True), fps)`: a DC offset beyond
    `DC_OFFSET_MAX` is subtracted (logged), float audio beyond full scale is scaled to peak 1
    (warned). Raises AudioError, naming the file, for a missing, empty, unreadable or corrupt
    file, one without audio or samples, an unsupported sample rate, NaN/inf or absurd samples.
    An all-silent or clipped file animates with a logged warning.
    """
    if not block_s > 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    from distilface.runtime.streaming import StreamingAnimator

    path = Path(audio_path)
    frames = StreamingAnimator(model, fps)
    rate, stats = scan_file(path, block_s)
    log_conditioning(path, stats)
    duration_s = stats.samples / rate
    outs = []
    with contextlib.ExitStack() as stack:
        rate, blocks = file_blocks(path, block_s, stack, stats)
        resampler = StreamResampler(rate, SAMPLE_RATE_HZ)
        from tqdm import tqdm

        bar = stack.enter_context(tqdm(
            total=round(duration_s, 1), unit="s", desc=f"animate {path.name}",
            disable=not progress or duration_s < PROGRESS_MIN_S,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]"))
        n_source = 0
        for block in blocks:
            n_source += len(block)
            outs.append(frames.push(resampler(block)))
            bar.update(len(block) / rate)
        if n_source == 0:
            raise AudioError(f"{path}: no audio samples")
        outs.append(frames.push(resampler(np.zeros(0, np.float32), final=True), final=True))
    return Curves(fps, frames.names, np.concatenate(outs))


RUNTIMES = ("auto", "torch", "native")  # for a checkpoint (`load_model`)


def configure_torch(threads: int | None = None) -> None:
    """Where torch is installed: flush denormals (near-silent audio makes denormals that slow CPU
    convs) and run `threads` threads (None: torch's default). Without torch, nothing to do: an
    exported model runs in onnxruntime or C."""
    try:
        import torch
    except ImportError:
        return
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def _auto_runtime(student: Any, path: str | Path) -> str:
    """"native" where `student` has a C step and the C runtime builds here, else "torch" (with a
    line on stderr saying why, when a compiler is what is missing). The two give the same frames
    within 1e-5 (tests/test_native.py); the C step costs a fraction of torch's CPU per frame."""
    from distilface.runtime.native import ARCHS, MAX_CONTEXT_STEPS, NativeUnavailable, load_library
    from distilface.runtime.step import stream_geometry

    cfg = getattr(student, "cfg", None)
    if getattr(cfg, "arch", None) not in ARCHS:
        return "torch"
    if cfg.arch == "conv" and stream_geometry(student).steps_per_window > MAX_CONTEXT_STEPS:
        return "torch"  # a window longer than the C context conv takes (pack_student says why)
    try:
        load_library()
    except (NativeUnavailable, OSError) as e:
        print(f"{path}: the native runtime is unavailable ({str(e).splitlines()[0]}); running in torch",
              file=sys.stderr)
        return "torch"
    return "native"


def load_model(model_path: str | Path, smooth: tuple[float, float, float] | None = None,
               ort_threads: int | None = None, frame_grid: int | None = None, runtime: str = "auto"):
    """A checkpoint as a torch student, or a `.onnx` export (`distilface export`) as an `OrtModel`
    that needs no torch (`ort_threads`: onnxruntime threads, None for its default); with `smooth`
    (ensemble-smoothing weights, `distilface.smoothing`) wrapped to average three predictions.
    frame_grid: frame times on a grid of this many samples (`StudentConfig.frame_grid_samples`;
    None: the model's own); an export carries the grid it was exported with. A `.npz` or `.dfn`
    of `distilface export --native` runs the C step (`distilface.runtime.native`), also without torch.
    runtime "native": a checkpoint runs in the C runtime (conv and whisper_conv students, the default
    among them; the file still loads with torch). "auto": native where the student has a C step and
    the runtime builds on this machine (a C compiler), else torch, saying why on stderr."""
    if Path(model_path).suffix in (".onnx", ".npz", ".dfn"):
        if Path(model_path).suffix == ".onnx" and runtime == "native":
            raise ValueError(f"{model_path}: an ONNX export runs in onnxruntime; the native runtime takes a "
                             f"checkpoint, or a file of `distilface export --native`")
        if Path(model_path).suffix in (".npz", ".dfn"):
            from distilface.runtime.native import NativeModel

            model = NativeModel(model_path)
        else:
            from distilface.runtime.ort import OrtModel

            model = OrtModel(model_path, threads=ort_threads)
        if frame_grid is not None and frame_grid != model.geometry.grid_samples:
            raise ValueError(f"{model_path}: exported on a frame grid of {model.geometry.grid_samples} samples, "
                             f"not {frame_grid}: export it again with --frame-grid {frame_grid}")
        return model.smoothed(smooth) if smooth is not None else model
    from distilface.checkpoint import load_student
    from distilface.student import on_frame_grid

    model = on_frame_grid(load_student(model_path)[0], frame_grid)
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "auto":
        runtime = _auto_runtime(model, model_path)
    if runtime == "native":  # the checkpoint packed for the C runtime in memory (export --native, unsaved)
        from distilface.runtime.native import NativeModel

        native = NativeModel.from_student(model.eval())
        return native.smoothed(smooth) if smooth is not None else native
    if smooth is not None:
        from distilface.smoothing import EnsembleSmoothed

        model = EnsembleSmoothed(model, smooth)
    return model


def animate_command(audio_path: str | Path, out_path: str | Path, model_path: str | Path,
                    fps: float = 30.0, fmt: str | None = None, block_s: float = 60.0,
                    progress: bool = True, smooth: tuple[float, float, float] | None = None,
                    frame_grid: int | None = None, runtime: str = "auto") -> Path:
    """`distilface animate`: load the student, animate the file, write `out_path` in `fmt`
    (or by its extension, see `distilface.formats`); `smooth`: ensemble-smoothing weights
    (`distilface.smoothing`); `frame_grid`: frame times on a grid of this many samples
    (`load_model`). A `.onnx` model (`distilface export`) runs in onnxruntime and needs no torch.
    Returns the path written."""
    from distilface.fileio import check_output
    from distilface.formats import format_for, write_curves

    fmt = format_for(out_path, fmt)  # a bad extension or folder fails before the long run
    check_output(out_path, inputs=(audio_path,))
    model = load_model(model_path, smooth, frame_grid=frame_grid, runtime=runtime)
    curves = animate_file(model, audio_path, fps=fps, block_s=block_s, progress=progress)
    return write_curves(curves, out_path, fmt, sound_file=str(audio_path))
