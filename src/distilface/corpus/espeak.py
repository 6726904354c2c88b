"""espeak-ng through ctypes: formant synthesis with sample-exact phone timings.

libespeak-ng runs in AUDIO_OUTPUT_SYNCHRONOUS mode with phoneme events given as IPA. Each
espeakEVENT_PHONEME marks the *start* of a phone; its `sample` field counts samples from the start
of the message (checked against the millisecond `audio_position`), so a segment is
[event_i.sample, event_{i+1}.sample) at `ESPEAK_RATE_HZ` and converts to seconds without rounding.

Two corrections turn espeak's phone events into lip-relevant timings:

1. Stop closures. espeak-ng places the event of a stop at its release in most contexts (always for
   /p t k/ after a vowel, nasal or fricative); the closure silence, 30-80 ms, is counted in the
   previous phone. `correct_closures` moves the start of every stop (p b t d k g) and of /m/ back to
   the start of the low-energy run that ends at the event: the high band (> 1 kHz) of the previous
   phone must fall more than `CLOSURE_DROP_DB` below that phone's own peak (or below an absolute
   floor relative to the utterance). The high band is used because a voiced closure (/b d g/) keeps
   a low-frequency voice bar. Where espeak already puts the closure inside the stop (voiced stops
   after a vowel, often) the run is empty and nothing moves. A stop after a pause gets the median
   closure measured in the same utterance (else `DEFAULT_CLOSURE_MS`), capped by the pause.
2. Mapping. IPA names are mapped to arpabet39 with `IPA_TO_ARPABET` (nearest sound, keeping height
   and lip rounding; some espeak phones are two arpabet phones and their interval is split evenly).

Determinism: espeak-ng's pitch flutter keeps a phase between calls, so voices run from a private
data tree whose variants have `flutter 0` (see `_private_data_dir`), and rand() is re-seeded before
each call. espeak-ng 1.51 also keeps other state in globals that no API resets: in-process,
about 80 % of sentences came out different (samples, and up to tens of ms in pauses and phone
lengths) depending on the sentences spoken before. So the library runs in a small server
process (`espeak_server.py`) that speaks every request from a freshly forked child, always from
the state right after initialisation. The same text and voice then give identical audio and
timings whatever was said before: a corpus resumed after a kill, or made by other workers or
shards, is byte-identical (tests/test_interrupt.py).

Formant factor: `params["formant"] = k` plays the 22050 Hz output as if it were 22050*k Hz
(all formants and f0 times k, durations / k); timings are rescaled exactly. The rate is pre-scaled by
k so the speaking rate stays about the same. Deterministic: no randomness anywhere.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ, resample
from distilface.corpus.engine import EngineError, Synthesis, Voice
from distilface.corpus.espeak_server import ESPEAK_RATE_HZ
from distilface.phones import SILENCE, STOPS, PhoneSegment, merge_adjacent_silence, validate

log = logging.getLogger(__name__)

DEFAULT_RATE_WPM = 175
DEFAULT_PITCH = 50
DEFAULT_RANGE = 50
PLAIN_VARIANT = "plain"  # written into the private data dir: default voice, flutter off

# espeak_SetParameter ids (speak_lib.h); the rest of the ABI is in espeak_server.py
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7

# --- IPA -> arpabet39 ----------------------------------------------------------------------------
# Nearest arpabet phone by sound (lips matter most: height and rounding are kept, frontness dropped
# for rounded front vowels). A tuple means the espeak phone spans several arpabet phones; its
# interval is split evenly. "" is espeak's pause.
IPA_TO_ARPABET: dict[str, str | tuple[str, ...]] = {
    # pauses
    "": SILENCE,
    # stops and affricates
    "p": "p", "b": "b", "t": "t", "t̪": "t", "d": "d", "k": "k", "ɡ": "g", "g": "g",
    "ʔ": "t",  # en-us glottalised /t/ ("button")
    "tʃ": "ch", "dʒ": "jh", "ts": ("t", "s"), "pf": ("p", "f"),
    # fricatives
    "f": "f", "v": "v", "θ": "th", "ð": "dh", "s": "s", "z": "z", "ʃ": "sh", "ʒ": "zh", "h": "hh",
    "x": "hh", "ç": "hh",  # de ach/ich, es jota: no arpabet dorsal fricative
    "β": "b",  # es lenited b: bilabial approximant, lips nearly closed
    "ɣ": "g",  # es lenited g
    # nasals and approximants
    "m": "m", "n": "n", "ŋ": "ng", "n̩": ("ah", "n"), "ɲ": ("n", "y"),
    "l": "l", "əl": ("ah", "l"), "ʎ": "y",  # es ll (yeismo)
    "ɹ": "r", "r": "r", "ʁ": "r", "ɾ": "r",  # en flap: see _LANGUAGE_OVERRIDES
    "j": "y", "ʝ": "y", "ʲ": "y", "w": "w", "ʍ": "w",
    # monophthongs
    "i": "iy", "iː": "iy", "ɪ": "ih", "ᵻ": "ih",
    "e": "ey", "eː": "ey", "e-": "eh", "ɛ": "eh", "ɛː": "eh", "æ": "ae",
    "a": "aa", "aː": "aa", "aa": "aa", "ɑ": "aa", "ɑː": "aa", "ɒ": "aa",
    "ɔ": "ao", "ɔː": "ao", "o": "ow", "oː": "ow",
    "u": "uw", "uː": "uw", "ʊ": "uh", "ʉ": "uw", "ʉː": "uw",
    "y": "uw", "yː": "uw", "ø": "ow", "øː": "ow", "œ": "ao",  # front rounded -> back rounded
    "ə": "ah", "ə-": "ah", "ɐ": "ah", "ʌ": "ah", "ɜ": "ah",  # de "-er" [ɐ] is espeak's ɜ
    "ɜː": "er", "ɚ": "er", "əɹ": "er", "ʌɹ": "er",
    # nasal vowels (fr)
    "ɑ̃": "aa", "ɔ̃": "ao", "ɛ̃": "eh", "œ̃": "ao",
    # diphthongs
    "aɪ": "ay", "aʊ": "aw", "æʊ": "aw", "ʌʉ": "aw", "eɪ": "ey", "ei": "ey", "əɪ": "ey",
    "oʊ": "ow", "əʊ": "ow", "ʌʊ": "ow", "əu": "ow", "ɔɪ": "oy", "oɪ": "oy", "ɔø": "oy",
    "iə": "ih", "eə": "eh", "ɛə": "eh", "ʊə": "uh", "ɑə": "aa", "ɔə": "ao", "oə": "ow",
    "eʊ": ("eh", "uw"),
    # vowel + r / schwa sequences espeak treats as one phone
    "aɪə": ("ay", "ah"), "aɪɚ": ("ay", "er"), "ɑːɹ": ("aa", "r"), "ɔːɹ": ("ao", "r"),
    "oːɹ": ("ao", "r"), "ɛɹ": ("eh", "r"), "ɪɹ": ("ih", "r"), "ʊɹ": ("uh", "r"), "ʉɹ": ("uw", "r"),
    # espeak-ng 1.51 has no IPA for German U6 (the [ʊɐ] of "durch", "Urgroß") and prints "??"
    "??": "uh",
}
# Language-specific readings of the same IPA symbol.
_LANGUAGE_OVERRIDES: dict[str, dict[str, str | tuple[str, ...]]] = {
    "en": {"ɾ": "d"},  # the flap of "better", "ladder": a tongue tap, no lip rounding
}
# Language-switch markers ("(en)", "(fr)") are not phones: their span goes to the previous phone.
_MARKER_PREFIX = "("

# --- closure correction --------------------------------------------------------------------------
CLOSURE_PHONES: frozenset[str] = STOPS | {"m"}
HIGHPASS_HZ = 1_000.0  # above a voiced closure's voice bar
ENERGY_WINDOW_MS = 5.0
ENERGY_HOP_MS = 1.0
CLOSURE_DROP_DB = 20.0  # below the previous phone's high-band peak
CLOSURE_FLOOR_DB = 45.0  # or below the utterance's high-band level (95th percentile) by this much
MAX_CLOSURE_MS = 150.0
MIN_KEPT_MS = 10.0  # the previous phone keeps at least this much (and its loudest frame)
DEFAULT_CLOSURE_MS = 40.0  # after a pause, when the utterance has no measured closure


@dataclass(frozen=True)
class EspeakParams:
    """Prosody of one espeak-ng voice. pitch, range: 0-99; rate: words/min; formant: factor."""

    pitch: int = DEFAULT_PITCH
    range: int = DEFAULT_RANGE
    rate: int = DEFAULT_RATE_WPM
    formant: float = 1.0

    @classmethod
    def from_voice(cls, voice: Voice) -> EspeakParams:
        p = voice.params
        return cls(int(p.get("pitch", DEFAULT_PITCH)), int(p.get("range", DEFAULT_RANGE)),
                   int(p.get("rate", DEFAULT_RATE_WPM)), float(p.get("formant", 1.0)))


class _Library:
    """libespeak-ng behind `espeak_server`, one server per process (a forked worker starts its own)."""

    def __init__(self, data_dir: Path) -> None:
        self.pid = os.getpid()
        self.data_dir = data_dir
        self.server: subprocess.Popen | None = None
        self.lock = threading.Lock()  # one request at a time on the pipes
        self._start()

    def _start(self) -> None:
        self.server = subprocess.Popen([sys.executable, "-m", "distilface.corpus.espeak_server",
                                        str(self.data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:  # a first call checks that the library loads and speaks
            self._request("a", espeak_voice_name("en"), [])
        except EngineError:
            self.server.kill()
            raise

    def _request(self, text: str, voice: str, params: list[tuple[int, int]]
                 ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        assert self.server is not None and self.server.stdin and self.server.stdout
        try:
            self.server.stdin.write(json.dumps({"text": text, "voice": voice, "params": params}).encode() + b"\n")
            self.server.stdin.flush()
            header = json.loads(self.server.stdout.readline() or b"null")
            if header is None:
                raise EngineError(f"espeak-ng: the server ended (exit status {self.server.wait()})")
            if "error" in header:
                raise EngineError(header["error"])
            data = self.server.stdout.read(2 * header["samples"])
        except (OSError, ValueError) as e:
            raise EngineError(f"espeak-ng: lost the server ({type(e).__name__}: {e})") from None
        if len(data) != 2 * header["samples"]:
            raise EngineError("espeak-ng: the server ended in the middle of an answer")
        return np.frombuffer(data, np.int16).copy(), [tuple(e) for e in header["events"]]

    def synth(self, text: str, voice_name: str, pitch: int, range_: int, rate: int
              ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """int16 audio at ESPEAK_RATE_HZ and (sample, audio_ms, ipa) phoneme events."""
        params = [(_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, range_), (_PARAM_VOLUME, 100),
                  (_PARAM_WORDGAP, 0)]
        with self.lock:
            if self.server is None or self.server.poll() is not None:
                self._start()  # a server lost to an earlier failure
            return self._request(text, espeak_voice_name(voice_name), params)


_library: _Library | None = None
_library_lock = threading.Lock()
_data_dir: Path | None = None


def _system_data_dir() -> Path:
    for candidate in (Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data"),
                      Path("/usr/lib/aarch64-linux-gnu/espeak-ng-data"),
                      Path("/usr/share/espeak-ng-data"), Path("/usr/local/share/espeak-ng-data")):
        if (candidate / "phontab").is_file():
            return candidate
    raise EngineError("espeak-ng: no espeak-ng-data directory found")


def _private_data_dir() -> Path:
    """A per-process espeak-ng data tree: the system one, with flutter off in every variant.

    espeak-ng's pitch flutter runs on a phase that survives between calls (no API resets it), so
    the same text gives phone boundaries a few samples apart on each call. With `flutter 0` in
    every variant (and `+plain` for voices without one) timings are identical call after call."""
    system = _system_data_dir()
    root = Path(tempfile.mkdtemp(prefix="distilface-espeak-"))
    atexit.register(shutil.rmtree, root, True)
    data = root / "espeak-ng-data"
    data.mkdir()
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    (data / "voices").mkdir()
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    variants = data / "voices" / "!v"
    variants.mkdir()
    for entry in (system / "voices" / "!v").iterdir():
        if entry.is_file():
            text = entry.read_text(encoding="utf-8", errors="replace")
            (variants / entry.name).write_text(f"{text}\nflutter 0\n", encoding="utf-8")
    (variants / PLAIN_VARIANT).write_text(f"language variant\nname {PLAIN_VARIANT}\nflutter 0\n")
    return root


def _get_library() -> _Library:
    global _library, _data_dir
    with _library_lock:
        if _library is None or _library.pid != os.getpid():  # a forked child must not share the pipes
            _data_dir = _data_dir or _private_data_dir()
            _library = _Library(_data_dir)
        return _library


def espeak_voice_name(name: str) -> str:
    """The name given to espeak-ng: a voice without a variant gets the flutter-free `+plain`."""
    return name if "+" in name else f"{name}+{PLAIN_VARIANT}"


def map_phone(ipa: str, language: str) -> tuple[str, ...]:
    """espeak-ng IPA phone name -> arpabet39 phones. Raises KeyError for an unmapped name."""
    lang = language.split("-")[0]
    # Some voices write length as an ASCII colon ("a:"); length never changes the viseme, so a
    # long vowel missing from the table falls back to its short form.
    for name in (ipa, ipa.replace(":", "ː"), ipa.replace(":", "").replace("ː", "")):
        value = _LANGUAGE_OVERRIDES.get(lang, {}).get(name, IPA_TO_ARPABET.get(name))
        if value is not None:
            break
    else:
        raise KeyError(ipa)
    return (value,) if isinstance(value, str) else value


def raw_phones(text: str, voice_name: str, pitch: int = DEFAULT_PITCH, range_: int = DEFAULT_RANGE,
               rate: int = DEFAULT_RATE_WPM) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """espeak-ng's own output: int16 audio at ESPEAK_RATE_HZ and (start_sample, end_sample, ipa).

    The first phone starts at sample 0 (leading silence is a "" pause); the last ends at the
    audio's end. Language-switch markers are dropped (their span joins the previous phone)."""
    audio, events = _get_library().synth(text, voice_name, pitch, range_, rate)
    if audio.size == 0 or not events:
        raise EngineError(f"espeak-ng: no audio or no phoneme events for {text!r}")
    for sample, audio_ms, name in events:
        # audio_position is floor(sample * 1000 / rate): a mismatch means the ABI changed
        if abs(sample * 1000 / ESPEAK_RATE_HZ - audio_ms) > 1.0 or not 0 <= sample <= audio.size:
            raise EngineError(f"espeak-ng: event {name!r} at sample {sample} vs {audio_ms} ms")
    starts = [(0, "")] + [(s, name) for s, _, name in events if not name.startswith(_MARKER_PREFIX)]
    segments = []
    for i, (start, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else audio.size
        if end > start:
            segments.append((start, end, name))
    return audio, segments


def synthesize_espeak(text: str, voice: Voice, correct: bool = True) -> Synthesis:
    """Speak `text` with an espeak-ng voice; 16 kHz float32 audio + arpabet39 phones.

    voice.name: espeak voice with optional variant ("en-us+f3"); voice.params: pitch, range, rate,
    formant (see EspeakParams). `correct=False` skips the closure correction (for measurements).
    Raises EngineError on unknown voices, empty output, or unmapped phones."""
    p = EspeakParams.from_voice(voice)
    audio, segments = raw_phones(text, voice.name, p.pitch, p.range, round(p.rate * p.formant))
    source_hz = ESPEAK_RATE_HZ * p.formant  # playing at k * 22050 Hz shifts formants by k
    phones: list[PhoneSegment] = []
    for start, end, name in segments:
        try:
            arpa = map_phone(name, voice.language)
        except KeyError:
            raise EngineError(f"espeak-ng: no arpabet mapping for phone {name!r} "
                              f"(voice {voice.name}, text {text!r})") from None
        bounds = np.linspace(start, end, len(arpa) + 1) / source_hz
        phones += [PhoneSegment(ph, float(bounds[j]), float(bounds[j + 1]))
                   for j, ph in enumerate(arpa)]
    phones = merge_adjacent_silence(phones)
    if p.formant == 1.0:
        out = resample(audio.astype(np.float32) / 32768.0, ESPEAK_RATE_HZ, SAMPLE_RATE_HZ)
    else:
        out = _resample_to_16k(audio.astype(np.float32) / 32768.0, source_hz)
    duration_s = out.size / SAMPLE_RATE_HZ
    phones = _fit_end(phones, duration_s)
    if correct:
        phones = correct_closures(out, phones)
    validate(phones, f"espeak-ng {voice.id}")
    return Synthesis(audio=out, phones=phones)


def _resample_to_16k(audio: np.ndarray, source_hz: float) -> np.ndarray:
    """Resample from a non-integer rate: polyphase with a rational approximation (error < 1e-4)."""
    from fractions import Fraction

    ratio = Fraction(SAMPLE_RATE_HZ / source_hz).limit_denominator(2000)
    from scipy.signal import resample_poly

    out = resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)
    return out


def _fit_end(phones: list[PhoneSegment], duration_s: float) -> list[PhoneSegment]:
    """Make the last phone end exactly at the audio's end (resampling rounds the length)."""
    last = phones[-1]
    if abs(last.end_s - duration_s) > 2e-3:
        raise EngineError(f"phones end at {last.end_s:.4f}s but audio at {duration_s:.4f}s")
    if duration_s <= last.start_s:  # a sub-sample last phone: drop it
        phones = phones[:-1]
        last = phones[-1]
    return phones[:-1] + [PhoneSegment(last.phone, last.start_s, duration_s)]


def high_band_level_db(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ
                       ) -> tuple[np.ndarray, float]:
    """High-band (> HIGHPASS_HZ) energy in dB, ENERGY_WINDOW_MS windows every ENERGY_HOP_MS.

    Returns (levels_db (frames,), hop_s); frame f is centred on f * hop_s."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, HIGHPASS_HZ, "highpass", fs=sample_rate_hz, output="sos")
    high = sosfiltfilt(sos, audio.astype(np.float64)) if audio.size > 27 else audio.astype(float)
    window = max(1, round(ENERGY_WINDOW_MS * sample_rate_hz / 1000))
    hop = max(1, round(ENERGY_HOP_MS * sample_rate_hz / 1000))
    csum = np.concatenate([[0.0], np.cumsum(high**2)])
    centres = np.arange(0, audio.size, hop)
    lo = np.clip(centres - window // 2, 0, audio.size)
    hi = np.clip(centres + window // 2, 0, audio.size)
    energy = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    return 10 * np.log10(energy + 1e-12), hop / sample_rate_hz


def correct_closures(audio: np.ndarray, phones: list[PhoneSegment],
                     sample_rate_hz: int = SAMPLE_RATE_HZ) -> list[PhoneSegment]:
    """Move the start of each stop and /m/ back over the closure counted in the previous phone.

    See the module docstring. audio: (samples,) float; phones contiguous. Returns new segments."""
    level, hop_s = high_band_level_db(audio, sample_rate_hz)
    floor_db = np.percentile(level, 95) - CLOSURE_FLOOR_DB
    starts = [seg.start_s for seg in phones]
    edge_frames = max(1, round(ENERGY_WINDOW_MS / 2 / 1000 / hop_s))
    measured_s: list[float] = []
    pending_pause: list[int] = []
    for k in range(1, len(phones)):
        if phones[k].phone not in CLOSURE_PHONES:
            continue
        prev = phones[k - 1]
        if prev.phone == SILENCE:
            pending_pause.append(k)
            continue
        if prev.phone == phones[k].phone:
            continue
        f_lo = int(np.ceil(prev.start_s / hop_s))
        f_hi = min(int(np.floor(phones[k].start_s / hop_s)), level.size - 1)  # last frame < start
        if f_hi - f_lo < 2:
            continue
        seg = level[f_lo:f_hi + 1]
        peak = int(np.argmax(seg))
        threshold = max(seg[peak] - CLOSURE_DROP_DB, floor_db)
        low = seg < threshold
        low[-edge_frames:] = True  # these windows reach into the burst at the event
        j = seg.size
        while j > peak + 1 and low[j - 1]:
            j -= 1
        if j >= seg.size - edge_frames:
            continue
        new_start = max((f_lo + j) * hop_s, phones[k].start_s - MAX_CLOSURE_MS / 1000,
                        prev.start_s + MIN_KEPT_MS / 1000)
        if new_start < phones[k].start_s - hop_s:
            starts[k] = new_start
            if phones[k].phone in STOPS:
                measured_s.append(phones[k].start_s - new_start)
    pause_closure_s = float(np.median(measured_s)) if measured_s else DEFAULT_CLOSURE_MS / 1000
    for k in pending_pause:
        prev = phones[k - 1]
        new_start = max(phones[k].start_s - pause_closure_s, prev.start_s + MIN_KEPT_MS / 1000)
        starts[k] = min(new_start, phones[k].start_s)
    out = []
    for k, seg in enumerate(phones):
        end = starts[k + 1] if k + 1 < len(phones) else seg.end_s
        if end > starts[k]:
            out.append(PhoneSegment(seg.phone, starts[k], end))
    return out


class EspeakEngine:
    """Engine protocol for espeak-ng voices (Voice.name = espeak voice, e.g. "en-us+f3")."""

    name = "espeak-ng"

    def available(self) -> bool:
        try:
            _get_library()
        except (OSError, EngineError):
            return False
        return True

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        return synthesize_espeak(text, voice)
