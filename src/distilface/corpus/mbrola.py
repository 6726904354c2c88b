"""MBROLA diphone voices driven by espeak-ng (optional: non-free voices, Debian contrib/non-free).

`espeak-ng -v mb-us1 --pho` writes the phone string MBROLA will speak (`name duration_ms pitch
points`); `mbrola` renders exactly those durations, so the phone ends are the cumulative sums. The
rendered length differs from the sum by a few ms (diphone edges); the last phone absorbs it.
MBROLA diphones cut a stop at its closure onset, so no closure correction is needed here.

Voice params: `rate` (words/min, espeak -s) and `pitch` (0-99, espeak -p); espeak-ng's command
line has no pitch-range option.
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

MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/lib/mbrola"))
# espeak-ng voice -> MBROLA database name (its file is <dir>/<db>/<db>)
MBROLA_VOICES: dict[str, str] = {"mb-us1": "us1", "mb-us2": "us2", "mb-us3": "us3", "mb-en1": "en1"}
MAX_LENGTH_MISMATCH_S = 0.01
TIMEOUT_S = 300

# MBROLA SAMPA names used by the us1-3 and en1 databases -> arpabet39.
SAMPA_TO_ARPABET: dict[str, str] = {
    "_": SILENCE,
    "p": "p", "p_h": "p", "b": "b", "t": "t", "t_h": "t", "d": "d", "4": "d",  # 4: flap
    "k": "k", "k_h": "k", "g": "g", "tS": "ch", "dZ": "jh",
    "f": "f", "v": "v", "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh", "h": "hh",
    "m": "m", "n": "n", "N": "ng", "l": "l", "l=": "l", "5": "l", "r": "r", "j": "y", "w": "w",
    "i": "iy", "i:": "iy", "I": "ih", "I@": "ih", "E": "eh", "e": "eh", "e@": "eh", "{": "ae",
    "A": "aa", "A:": "aa", "Q": "aa", "O": "ao", "O2": "ao", "O:": "ao", "V": "ah", "@": "ah",
    "r=": "er", "3:": "er", "U": "uh", "U@": "uh", "u": "uw", "u:": "uw",
    "EI": "ey", "eI": "ey", "AI": "ay", "aI": "ay", "OI": "oy", "aU": "aw", "@U": "ow",
}


def database_path(db: str) -> Path | None:
    for root in MBROLA_DIRS:
        path = root / db / db
        if path.is_file():
            return path
    return None


def parse_pho(pho: str) -> list[tuple[str, float]]:
    """MBROLA .pho text -> [(phone, duration_s)] (comments start with ';')."""
    out = []
    for line in pho.splitlines():
        parts = line.split(";", 1)[0].split()
        if not parts:
            continue
        if len(parts) < 2:
            raise EngineError(f"mbrola: unparsable .pho line {line!r}")
        out.append((parts[0], float(parts[1]) / 1000.0))
    return out


class MbrolaEngine:
    """Engine protocol for MBROLA voices (Voice.name = espeak-ng mbrola voice, e.g. "mb-us1")."""

    name = "mbrola"

    def available(self) -> bool:
        return bool(self.voices())

    @staticmethod
    @lru_cache(maxsize=1)
    def voices() -> tuple[str, ...]:
        if shutil.which("mbrola") is None or shutil.which("espeak-ng") is None:
            return ()
        return tuple(v for v, db in MBROLA_VOICES.items() if database_path(db) is not None)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        if voice.name not in self.voices():
            raise EngineError(f"mbrola: voice {voice.name!r} is not installed")
        db = database_path(MBROLA_VOICES[voice.name])
        rate = int(voice.params.get("rate", 175))
        pitch = int(voice.params.get("pitch", 50))
        try:
            pho = subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(rate), "-p", str(pitch),
                                  "-q", "--pho", "--stdin"], input=text, capture_output=True,
                                 text=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            raise EngineError(f"mbrola: espeak-ng --pho: {e}") from None
        if pho.returncode != 0 or not pho.stdout.strip():
            raise EngineError(f"mbrola: espeak-ng --pho failed: {pho.stderr.strip()[:200]}")
        durations = parse_pho(pho.stdout)
        with tempfile.TemporaryDirectory(prefix="distilface-mbrola-") as tmp:
            pho_path, wav = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
            pho_path.write_text(pho.stdout, encoding="utf-8")
            try:
                proc = subprocess.run(["mbrola", "-e", str(db), str(pho_path), str(wav)],
                                      capture_output=True, text=True, timeout=TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as e:
                raise EngineError(f"mbrola: {e}") from None
            if proc.returncode != 0 or not wav.exists():
                raise EngineError(f"mbrola failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
            audio = load_audio(wav)
        duration_s = audio.size / SAMPLE_RATE_HZ
        total_s = sum(d for _, d in durations)
        if abs(total_s - duration_s) > MAX_LENGTH_MISMATCH_S:
            raise EngineError(f"mbrola: phones sum to {total_s:.3f}s, audio is {duration_s:.3f}s")
        phones: list[PhoneSegment] = []
        start = 0.0
        for i, (name, dur_s) in enumerate(durations):
            arpa = SAMPA_TO_ARPABET.get(name)
            if arpa is None:
                raise EngineError(f"mbrola: no arpabet mapping for phone {name!r}")
            end = duration_s if i == len(durations) - 1 else min(start + dur_s, duration_s)
            if end > start:
                phones.append(PhoneSegment(arpa, start, end))
                start = end
        phones = merge_adjacent_silence(phones)
        validate(phones, f"mbrola {voice.id}")
        return Synthesis(audio=audio, phones=phones)
