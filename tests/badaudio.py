"""Odd and broken audio files for the bad-input tests (tests/test_bad_input.py, docs/robustness.md).

    write_bad_audio(folder)        -> {name: Case}: every short case below, written into folder
    write_long_wav(path, hours)    -> a real long WAV, written block by block (never one big array)

The short cases are the bundled example clip (`EXAMPLE_AUDIO`, 3.3 s of real speech, 16 kHz, its
words in `TRANSCRIPT`) in odd formats and broken ways. Each `Case` says what the animating
commands (animate, stream) must do with its file: `outcome` is "ok" (a result), "warn" (a result
and a warning line containing `match`) or "error" (exit != 0 and one error line naming the file
and containing `match`). Generated at test time, never committed; all short files together are
about 2 MB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from distilface.audio import EXAMPLE_AUDIO, resample

RATE_HZ = 16_000
TRANSCRIPT = "Please enter your password followed by the pound key."  # EXAMPLE_AUDIO's words
LONG_BLOCK_S = 60.0  # the long file is written this much at a time


@dataclass(frozen=True)
class Case:
    name: str  # file name inside the folder
    what: str  # one line for docs/robustness.md
    outcome: str  # ok | warn | error
    match: str = ""  # warn / error: text the message must contain
    duration_s: float | None = None  # ok / warn: seconds of audio the result covers

    @property
    def fails(self) -> bool:
        return self.outcome == "error"


def speechy(seconds: float, rate_hz: int = RATE_HZ, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts: a gliding 150 Hz tone plus noise under a 3 Hz envelope -> (n,) float32, peak < 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t)
    x = env * (0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.1 * rng.standard_normal(len(t)))
    return x.astype(np.float32)


def _wav(path: Path, data: np.ndarray, rate_hz: int = RATE_HZ, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), data, rate_hz, subtype=subtype, format="WAV")
    return path


def _wav_with_rate(path: Path, data: np.ndarray, claimed_rate_hz: int) -> None:
    """A PCM_16 WAV whose header claims `claimed_rate_hz` (libsndfile refuses to write absurd rates)."""
    _wav(path, data)
    raw = bytearray(path.read_bytes())
    fmt = raw.index(b"fmt ") + 8  # the fmt chunk: tag, channels, rate, byte rate, block align, bits
    channels, bits = struct.unpack_from("<H", raw, fmt + 2)[0], struct.unpack_from("<H", raw, fmt + 14)[0]
    struct.pack_into("<II", raw, fmt + 4, claimed_rate_hz, claimed_rate_hz * channels * bits // 8)
    path.write_bytes(bytes(raw))


def example_speech() -> np.ndarray:
    """The bundled example clip: (n,) float32 at 16 kHz."""
    x, rate = sf.read(str(EXAMPLE_AUDIO), dtype="float32")
    assert rate == RATE_HZ and x.ndim == 1
    return x


def write_bad_audio(folder: str | Path) -> dict[str, Case]:
    """Write every short case into `folder` (created) -> {file name: Case}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = example_speech()
    speech_s = len(x) / RATE_HZ
    cases: list[Case] = []

    def add(name: str, what: str, outcome: str, match: str = "", duration_s: float | None = speech_s) -> Path:
        cases.append(Case(name, what, outcome, match, None if outcome == "error" else duration_s))
        return folder / name

    # -- errors: nothing to animate --------------------------------------------------------------
    add("empty.wav", "0 bytes", "error", "empty file").write_bytes(b"")
    _wav(add("zero_samples.wav", "a valid WAV header and no samples", "error", "no audio samples"),
         np.zeros(0, np.float32))
    good = _wav(folder / "_good.wav", x)
    add("truncated_header.wav", "the first 30 bytes of a WAV (cut inside its header)", "error",
        "corrupt").write_bytes(good.read_bytes()[:30])
    add("notes.wav", "a text file named .wav", "error", "corrupt").write_text(
        "meeting notes, not audio\n" * 40)
    nan = x.copy()
    nan[8000] = np.nan
    _wav(add("nan.wav", "32-bit float WAV with one NaN sample", "error", "NaN or infinite"), nan, subtype="FLOAT")
    inf = x.copy()
    inf[100:110] = np.inf
    _wav(add("inf.wav", "32-bit float WAV with +inf samples", "error", "NaN or infinite"), inf, subtype="FLOAT")
    _wav_with_rate(add("rate_absurd.wav", "PCM WAV whose header claims 3,999,999 Hz", "error", "sample rate"),
                   x, 3_999_999)
    # -- results ---------------------------------------------------------------------------------
    (folder / "wav_named.mp3").write_bytes(good.read_bytes())
    add("wav_named.mp3", "a 16-bit WAV named .mp3 (the content decides, not the name)", "ok")
    good.unlink()
    raw = _wav(folder / "_full.wav", x).read_bytes()
    add("truncated_data.wav", "a 16-bit WAV cut at 2 s (its header claims 3.3 s)", "warn",
        "the file holds 2.00 s (truncated?)", duration_s=2.0).write_bytes(raw[: raw.index(b"data") + 8 + 2 * int(2.0 * RATE_HZ)])
    (folder / "_full.wav").unlink()
    _wav(add("pcm_u8.wav", "8-bit unsigned PCM", "ok"), x, subtype="PCM_U8")
    _wav(add("pcm_24.wav", "24-bit PCM", "ok"), x, subtype="PCM_24")
    _wav(add("float64.wav", "64-bit float WAV", "ok"), x, subtype="DOUBLE")
    _wav(add("rate_96k.wav", "96 kHz (resampled to 16 kHz)", "ok"), resample(x, RATE_HZ, 96_000), 96_000)
    _wav(add("rate_8k.wav", "8 kHz, telephone band (resampled to 16 kHz)", "ok"), resample(x, RATE_HZ, 8_000), 8_000)
    six = np.stack([x * (1 - 0.1 * c) for c in range(6)], axis=1)
    _wav(add("six_channels.wav", "6 channels (5.1): mixed down to the mean", "ok"), six)
    _wav(add("dc_offset.wav", "speech on a +0.25 DC offset", "ok"), x + 0.25)
    _wav(add("clipped.wav", "speech 8x too loud, clipped at full scale", "warn", "clipped"),
         np.clip(8 * x, -1, 1))
    _wav(add("silence.wav", "3.3 s of digital silence", "warn", "silent"), np.zeros_like(x))
    _wav(add("float_unnormalised.wav", "32-bit float WAV at integer scale (peak ~22,000)", "warn",
             "beyond full scale"), x * 32768, subtype="FLOAT")
    _wav(add("float_absurd.wav", "32-bit float WAV with one sample of 1e30", "error", "far outside"),
         np.where(np.arange(len(x)) == 5000, np.float32(1e30), x), subtype="FLOAT")
    return {c.name: c for c in cases}


def write_long_wav(path: str | Path, hours: float, rate_hz: int = RATE_HZ) -> Path:
    """A real mono 16-bit WAV of `hours`: `speechy(LONG_BLOCK_S)` minute after minute, each one
    rotated a little (the first one not), written a block at a time (2 h at 16 kHz: 230 MB in
    about a second, never more than one block in memory)."""
    path = Path(path)
    block = speechy(LONG_BLOCK_S, rate_hz)
    total = int(round(hours * 3600 * rate_hz))
    with sf.SoundFile(str(path), "w", rate_hz, 1, "PCM_16", format="WAV") as f:
        written = 0
        while written < total:
            n = min(len(block), total - written)
            f.write(np.roll(block, written % 997)[:n])  # not one block repeated bit for bit
            written += n
    return path
