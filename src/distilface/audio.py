"""Audio constants, loading and writing.

All models and stages work on mono float32 at `SAMPLE_RATE_HZ`; anything else is converted on load.
"""

from __future__ import annotations

import logging
from math import gcd
from pathlib import Path

import numpy as np

from distilface.fileio import atomic_path

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
EXAMPLE_AUDIO = Path(__file__).resolve().parent / "data" / "example_en.wav"  # the shipped example clip

# Sample rates taken (any input: files, stdin, WebSocket). Resampling by up/down in lowest terms
# uses a filter of 20 * max(up, down) + 1 taps: a header claiming 3,999,999 Hz would ask for 80 M
# taps (3.8 GB, 20 s for a 1.5 s file), so the reduced ratio is bounded too. Every common rate
# (8k ... 384k, the 11.025k family: 441) is far inside.
MIN_RATE_HZ = 1_000
MAX_RATE_HZ = 384_000
MAX_RATIO_TERM = 8_000

# Whole-file loading (`load_audio(max_s=...)`): the commands that hold an utterance in memory
# (eval, corpus ingest) refuse longer files; `animate` and `stream` read in blocks, any length.
MAX_WHOLE_FILE_S = 600.0

# Input conditioning of the animating commands (animate, stream wav:, and corpus ingest), measured
# on the whole file (`AudioStats`):
DC_OFFSET_MAX = 0.02  # mean above this is subtracted: a recording defect (the synthetic training
#                       corpus stays under 0.016; the student's jaw follows speech at 0.58
#                       correlation on a +0.3 offset)
FULL_SCALE_MAX = 1.01  # float audio peaking above this is not normalised: scaled to peak 1, warned
CLIP_LEVEL = 0.99  # |sample| at or above this counts as clipped (8-bit full scale is 0.992)
CLIP_FRACTION = 1e-3  # more clipped samples than this share: warned about
SILENCE_PEAK = 1e-4  # -80 dBFS: a file whose peak stays below this is "all silence": warned about

# Samples beyond this are no audio (any input): beyond any integer scale (int32: 2.1e9) and far
# below where float32 convolutions overflow (~1e19: NaN frames). Files: AudioError; live PCM: zeroed.
MAX_SAMPLE_MAGNITUDE = 1e10


class AudioError(ValueError):
    """Unreadable or unusable audio; the message names the file and the problem."""


def check_rate(rate_hz: float, what: str | Path) -> int:
    """`rate_hz` as an int if it can be resampled to 16 kHz, else AudioError naming `what`."""
    rate = int(rate_hz) if float(rate_hz).is_integer() else 0
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioError(f"{what}: sample rate {rate or rate_hz} Hz not supported "
                         f"(expected {MIN_RATE_HZ} to {MAX_RATE_HZ} Hz)")
    g = gcd(rate, SAMPLE_RATE_HZ)
    if max(rate, SAMPLE_RATE_HZ) // g > MAX_RATIO_TERM:
        raise AudioError(f"{what}: sample rate {rate} Hz not supported (no resampling ratio to "
                         f"{SAMPLE_RATE_HZ} Hz in terms up to {MAX_RATIO_TERM}; use a common rate)")
    return rate


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Band-limited polyphase resampling of a 1-D float signal."""
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(audio, to_hz // g, from_hz // g).astype(np.float32)


class AudioStats:
    """Running statistics of a file's mono source samples: count, mean, peak, clipped samples.
    `add` blocks as they are read; then `condition` (what the animating commands feed a student:
    minus `dc_offset`, times `gain`) and `warnings(path)` (the lines they log)."""

    def __init__(self) -> None:
        self.samples = 0
        self._sum = 0.0
        self.peak = 0.0
        self.clipped = 0
        self.declared: int | None = None  # samples the file's header promises (WAV), when known
        self.rate_hz: int | None = None  # of the source, for the truncation warning

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        self.samples += len(block)
        self._sum += float(np.sum(block, dtype=np.float64))
        magnitude = np.abs(block)
        self.peak = max(self.peak, float(magnitude.max()))
        self.clipped += int(np.count_nonzero(magnitude >= CLIP_LEVEL))

    @property
    def mean(self) -> float:
        return self._sum / self.samples if self.samples else 0.0

    @property
    def dc_offset(self) -> float:
        """The mean if it is a DC offset to remove (|mean| * gain > DC_OFFSET_MAX), else 0."""
        return self.mean if abs(self.mean) * self.gain > DC_OFFSET_MAX else 0.0

    @property
    def gain(self) -> float:
        """1 / peak for float audio beyond full scale (peak > FULL_SCALE_MAX), else 1."""
        return 1.0 / self.peak if self.peak > FULL_SCALE_MAX else 1.0

    def condition(self, samples: np.ndarray) -> np.ndarray:
        """What the animating commands feed the student: (samples - dc_offset) * gain, float32
        (the same arithmetic for a whole file and for each of its blocks)."""
        if not self.dc_offset and self.gain == 1.0:
            return samples
        return ((samples - np.float32(self.dc_offset)) * np.float32(self.gain)).astype(np.float32, copy=False)

    def warnings(self, path: str | Path) -> list[str]:
        out = []
        if self.declared and self.rate_hz and self.samples < self.declared:
            out.append(f"{path}: the header declares {self.declared / self.rate_hz:.2f} s of audio, the file holds "
                       f"{self.samples / self.rate_hz:.2f} s (truncated?): animating what is there")
        if self.samples and self.peak < SILENCE_PEAK:
            out.append(f"{path}: audio is silent (peak {self.peak:.1e}): animating it anyway, the face should rest")
        elif self.peak > FULL_SCALE_MAX:
            out.append(f"{path}: audio goes beyond full scale (peak {self.peak:.3g}; float samples not normalised "
                       "to [-1, 1]?): scaled to peak 1")
        elif self.samples and self.clipped > CLIP_FRACTION * self.samples:
            out.append(f"{path}: audio is clipped ({100 * self.clipped / self.samples:.1f} % of samples at full "
                       "scale): the animation may be off; lower the recording level")
        return out


def declared_wav_frames(path: str | Path) -> int | None:
    """Frames a RIFF/WAVE file's `data` chunk header declares, or None (not a WAV, or a size a
    streaming writer left open: 0 or 0xFFFFFFFF, or RF64). Lets a truncated copy be told from a
    short file: libsndfile silently reads what is there."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    block_align = int.from_bytes(fmt[12:14], "little")
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)  # chunks are padded to even sizes
    except OSError:
        return None


def load_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ, *, max_s: float | None = None,
               conditioned: bool = False) -> np.ndarray:
    """Read any common audio file -> (samples,) float32 mono in [-1, 1] at `sample_rate_hz`.

    soundfile reads wav/flac/ogg/mp3; PyAV is the fallback for everything else (G.722, m4a, ...).
    Stereo and multichannel audio is mixed down. max_s: refuse files longer than this (checked
    on the header before decoding, and while decoding), for callers that hold the file whole.
    conditioned: subtract a DC offset and scale float audio beyond full scale down to peak 1
    (`AudioStats.condition`), as the animating commands do. Raises AudioError naming the file:
    missing, empty, unreadable or corrupt, no samples, an unsupported sample rate, NaN / inf /
    absurd samples (`bad_samples`), longer than max_s.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    data = None
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:  # not for libsndfile: PyAV (ffmpeg) decodes the rest
        info = None
    if info is not None:
        rate = check_rate(info.samplerate, path)
        _check_length(path, info.frames / rate if 0 <= info.frames < 2**62 else None, max_s)
        try:
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception:
            data = None
    if data is None:
        data, rate = _load_with_av(path, max_s)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    _check_length(path, data.shape[0] / rate, max_s)
    mono = mix_to_mono(data)
    del data
    problem = bad_samples(mono, rate)
    if problem:
        raise AudioError(f"{path}: {problem}")
    if conditioned:
        stats = AudioStats()
        stats.add(mono)
        if stats.dc_offset:
            logger.info("%s: DC offset %.3f removed", path, stats.dc_offset)
        mono = stats.condition(mono)
    return resample(mono, rate, sample_rate_hz)


def bad_samples(samples: np.ndarray, rate_hz: int, offset: int = 0) -> str | None:
    """What is wrong with (n,) float samples, if anything: NaN / inf, or magnitudes beyond
    `MAX_SAMPLE_MAGNITUDE` (the first one's time, counting `offset` samples before them)."""
    bad = ~(np.abs(samples) <= MAX_SAMPLE_MAGNITUDE)  # NaN compares False: bad too
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    at = (offset + i) / rate_hz
    if np.isfinite(samples[i]):
        return (f"audio sample {float(samples[i]):.3g} at {at:.3f} s is far outside [-1, 1]: not audio, "
                "or read in the wrong format")
    return f"audio contains NaN or infinite samples (first at {at:.3f} s)"


def _check_length(path: Path, duration_s: float | None, max_s: float | None) -> None:
    if max_s is not None and duration_s is not None and duration_s > max_s:
        raise AudioError(f"{path}: {duration_s:.1f} s long, over the {max_s:g} s this command holds in "
                         "memory (split it; `distilface animate` and `stream` take any length)")


def mix_to_mono(data: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) float32: channels averaged."""
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def av_frame_samples(frame) -> np.ndarray:
    """One decoded PyAV audio frame -> (n, channels) float32; integers scaled to [-1, 1]."""
    arr = frame.to_ndarray()  # (channels, n) planar or (1, n * channels) packed
    arr = arr.T if frame.format.is_planar else arr.reshape(-1, len(frame.layout.channels))
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    return arr.astype(np.float32, copy=False)


def _load_with_av(path: Path, max_s: float | None = None) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a core dependency
        raise AudioError(f"{path}: unsupported audio format") from None
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(f"{path}: no audio stream")
            rate = check_rate(stream.codec_context.sample_rate or 0, path)
            if stream.duration and stream.time_base:
                _check_length(path, float(stream.duration * stream.time_base), max_s)
            chunks, held = [], 0
            for frame in container.decode(stream):
                chunks.append(av_frame_samples(frame))
                held += len(chunks[-1])
                _check_length(path, held / rate, max_s)  # a header may not say how long
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{path}: unsupported or corrupt audio ({decoder_error(e)})") from None
    if not chunks:
        raise AudioError(f"{path}: no audio samples")
    return np.concatenate(chunks, axis=0), int(rate)


def decoder_error(e: Exception) -> str:
    """One line on a decoder's exception (ffmpeg's strerror: its message repeats the path)."""
    text = getattr(e, "strerror", None) or str(e)
    text = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def write_audio(path: str | Path, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Write mono float audio atomically; format from the extension (.wav 16-bit PCM, .flac)."""
    import soundfile as sf

    path = Path(path)
    subtype = "PCM_16"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate_hz, subtype=subtype,
                 format=path.suffix.lstrip(".").upper())
