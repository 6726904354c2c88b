"""flite through its command line: `flite -voice X -psdur -t TEXT -o out.wav`.

`-psdur` prints the utterance's segments as `phone:end_time` (seconds, 3 decimals) separated by
spaces on stdout, after synthesis, so the times are those of the written audio (to 1 ms). Phones are
CMU US (arpabet with `ax`, `pau`): `FLITE_TO_ARPABET` maps them. The final pause may run a few ms
past the audio (diphone voices: up to ~100 ms); it is clipped to the audio's end.

Voice params: `rate` (speed factor, 1 = normal; becomes `duration_stretch = 1/rate`) and `f0_hz`
(`int_f0_target_mean`; clustergen voices ignore it, see `PITCH_VOICES`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.corpus.engine import EngineError, Synthesis, Voice
from distilface.phones import SILENCE, PhoneSegment, merge_adjacent_silence, validate

FLITE_VOICES: tuple[str, ...] = ("kal16", "kal", "awb", "rms", "slt")
PITCH_VOICES: frozenset[str] = frozenset({"kal16", "kal"})  # diphone voices follow int_f0_target_mean
TIME_RESOLUTION_S = 1e-3  # -psdur prints 3 decimals
MAX_TAIL_MISMATCH_S = 0.15  # final pause longer than the audio by at most this much
TIMEOUT_S = 120

# CMU US phones that are not arpabet39 (everything else is identical).
FLITE_TO_ARPABET: dict[str, str] = {"pau": SILENCE, "h#": SILENCE, "ax": "ah", "axr": "er",
                                    "dx": "d", "el": "l", "em": "m", "en": "n", "nx": "n"}


def map_cmu_phone(phone: str) -> str:
    """CMU US / radio phone (flite, festival) -> arpabet39 (KeyError when unknown)."""
    from distilface.phones import PHONE_SET

    mapped = FLITE_TO_ARPABET.get(phone, phone)
    if mapped not in PHONE_SET:
        raise KeyError(phone)
    return mapped


def segments_from_ends(ends: list[tuple[str, float]], duration_s: float, where: str
                       ) -> list[PhoneSegment]:
    """(cmu_phone, end_s) list -> contiguous arpabet39 segments covering [0, duration_s].

    Segments past the audio's end are clipped; a non-pause phone ending more than
    MAX_TAIL_MISMATCH_S after the audio raises EngineError."""
    phones: list[PhoneSegment] = []
    start = 0.0
    for phone, end_s in ends:
        try:
            arpa = map_cmu_phone(phone)
        except KeyError:
            raise EngineError(f"{where}: no arpabet mapping for phone {phone!r}") from None
        if end_s > duration_s + MAX_TAIL_MISMATCH_S or (
                arpa != SILENCE and end_s > duration_s + TIME_RESOLUTION_S * 2):
            raise EngineError(f"{where}: phone {phone!r} ends at {end_s:.3f}s, "
                              f"audio at {duration_s:.3f}s")
        end_s = min(end_s, duration_s)
        if end_s > start:
            phones.append(PhoneSegment(arpa, start, end_s))
            start = end_s
    if not phones:
        raise EngineError(f"{where}: no phones")
    last = phones[-1]
    if duration_s - last.end_s > MAX_TAIL_MISMATCH_S:
        raise EngineError(f"{where}: phones end at {last.end_s:.3f}s, audio at {duration_s:.3f}s")
    if last.end_s < duration_s:  # the audio runs on: the rest is trailing silence
        if last.phone == SILENCE:
            phones[-1] = PhoneSegment(SILENCE, last.start_s, duration_s)
        else:
            phones.append(PhoneSegment(SILENCE, last.end_s, duration_s))
    phones = merge_adjacent_silence(phones)
    validate(phones, where)
    return phones


class FliteEngine:
    """Engine protocol for flite voices (Voice.name in FLITE_VOICES)."""

    name = "flite"

    def available(self) -> bool:
        return bool(self.voices())

    @staticmethod
    @lru_cache(maxsize=1)
    def voices() -> tuple[str, ...]:
        exe = shutil.which("flite")
        if exe is None:
            return ()
        try:
            out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ()
        listed = set(out.split(":", 1)[-1].split())
        return tuple(v for v in FLITE_VOICES if v in listed)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        if voice.name not in self.voices():
            raise EngineError(f"flite: voice {voice.name!r} is not installed")
        rate = float(voice.params.get("rate", 1.0))
        cmd = ["flite", "-voice", voice.name, "-psdur",
               "--setf", f"duration_stretch={1.0 / rate:.4f}"]
        if "f0_hz" in voice.params:
            cmd += ["--setf", f"int_f0_target_mean={float(voice.params['f0_hz']):.1f}"]
        with tempfile.TemporaryDirectory(prefix="distilface-flite-") as tmp:
            wav = Path(tmp) / "out.wav"
            try:
                proc = subprocess.run(cmd + ["-t", text, "-o", str(wav)], capture_output=True,
                                      text=True, timeout=TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as e:
                raise EngineError(f"flite: {e}") from None
            if proc.returncode != 0 or not wav.exists():
                raise EngineError(f"flite failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
            audio = load_audio(wav)  # resampled to 16 kHz (kal is 8 kHz)
        ends = []
        for token in proc.stdout.split():
            phone, sep, end = token.rpartition(":")
            if not sep:
                continue
            try:
                ends.append((phone, float(end)))
            except ValueError:
                raise EngineError(f"flite: unparsable -psdur token {token!r}") from None
        phones = segments_from_ends(ends, audio.size / SAMPLE_RATE_HZ, f"flite {voice.id}")
        return Synthesis(audio=audio, phones=phones)
