"""Audio constants, loading and writing.

All models and stages work on mono float32 at `SAMPLE_RATE_HZ`; anything else is converted on load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distilface.fileio import atomic_path

SAMPLE_RATE_HZ = 16_000
EXAMPLE_AUDIO = Path(__file__).resolve().parent / "data" / "example_en.wav"  # the shipped example clip


class AudioError(ValueError):
    """Unreadable or unusable audio; the message names the file and the problem."""


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Band-limited polyphase resampling of a 1-D float signal."""
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(audio, to_hz // g, from_hz // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Read any common audio file -> (samples,) float32 mono in [-1, 1] at `sample_rate_hz`.

    soundfile reads wav/flac/ogg/mp3; PyAV is the fallback for everything else (G.722, m4a, ...).
    Stereo and multichannel audio is mixed down. Raises AudioError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        import soundfile as sf

        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:
        data, rate = _load_with_av(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    mono = mix_to_mono(data)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return resample(mono, int(rate), sample_rate_hz)


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


def _load_with_av(path: Path) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a core dependency
        raise AudioError(f"{path}: unsupported audio format") from None
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(f"{path}: no audio stream")
            rate = stream.codec_context.sample_rate
            chunks = [av_frame_samples(frame) for frame in container.decode(stream)]
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{path}: unsupported or corrupt audio ({type(e).__name__})") from None
    if not chunks:
        raise AudioError(f"{path}: no audio samples")
    return np.concatenate(chunks, axis=0), int(rate)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Write mono float audio atomically; format from the extension (.wav 16-bit PCM, .flac)."""
    import soundfile as sf

    path = Path(path)
    subtype = "PCM_16"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate_hz, subtype=subtype,
                 format=path.suffix.lstrip(".").upper())
