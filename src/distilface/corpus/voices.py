"""The voice catalogue: a fixed, deterministic list of audibly distinct voices over all engines.

Voice ids are stable strings (`engine/voice/settings`) used for train/val/test splits, so never
rename an existing entry; append new ones. Only voices whose engine is installed are returned.
"""

from __future__ import annotations

from distilface.corpus.engine import Engine, EngineError, Synthesis, Voice
from distilface.corpus.espeak import DEFAULT_RATE_WPM, EspeakEngine
from distilface.corpus.festival import FestivalEngine
from distilface.corpus.flite import FliteEngine
from distilface.corpus.kokoro import KokoroEngine, catalogue_voices as kokoro_voices
from distilface.corpus.mbrola import MbrolaEngine

ENGINES: dict[str, Engine] = {
    "espeak-ng": EspeakEngine(),
    "festival": FestivalEngine(),
    "flite": FliteEngine(),
    "mbrola": MbrolaEngine(),
    "kokoro": KokoroEngine(),  # optional extra: scripts/setup-extra.sh kokoro
}

# espeak-ng: (voice+variant, pitch 0-99, range 0-99, rate wpm, formant factor).
# Variants set the voice quality (f* female, m* male, klatt* Klatt synthesiser); pitch, range, rate
# and the formant factor spread the speakers further.
_ESPEAK_EN: tuple[tuple[str, int, int, int, float], ...] = (
    ("en-us", 50, 50, 175, 1.0),
    ("en-us+m1", 40, 45, 165, 1.0),
    ("en-us+m3", 35, 60, 185, 0.95),
    ("en-us+m4", 45, 30, 160, 1.0),
    ("en-us+m7", 30, 55, 175, 0.92),
    ("en-us+f1", 60, 55, 170, 1.0),
    ("en-us+f3", 62, 40, 175, 1.0),
    ("en-us+f4", 70, 65, 190, 1.05),
    ("en-us+f5", 55, 50, 160, 1.08),
    ("en-us+klatt", 45, 50, 175, 1.0),
    ("en-us+klatt2", 50, 40, 180, 1.0),
    ("en-us+klatt4", 65, 60, 170, 1.1),
    ("en-us-nyc+m2", 40, 50, 190, 1.0),
    ("en-us-nyc+f2", 66, 55, 175, 1.0),
    ("en+m2", 42, 55, 170, 1.0),
    ("en+m5", 38, 45, 180, 0.96),
    ("en+m6", 48, 35, 165, 1.0),
    ("en+f2", 64, 60, 175, 1.0),
    ("en+f5", 58, 45, 185, 1.04),
    ("en+klatt3", 40, 50, 175, 1.0),
    ("en-gb-x-rp+m3", 45, 55, 170, 1.0),
    ("en-gb-x-rp+f3", 60, 50, 165, 1.06),
    ("en-gb-scotland+m1", 40, 60, 175, 1.0),
    ("en-gb-scotland+klatt2", 50, 50, 170, 1.0),
    ("en-gb-scotland+f4", 68, 45, 180, 1.0),
    ("en-gb-x-gbclan+m4", 44, 50, 175, 0.97),
    ("en-gb-x-gbclan+f1", 62, 55, 170, 1.0),
    ("en-gb-x-gbcwmd+m6", 36, 40, 180, 1.0),
    ("en-gb-x-gbcwmd+f2", 60, 60, 175, 1.03),
    ("en-029+m2", 46, 65, 165, 1.0),
    ("en-029+f3", 64, 55, 175, 1.0),
    ("en-us+whisperf", 50, 50, 160, 1.0),
)
_ESPEAK_OTHER: dict[str, tuple[tuple[str, int, int, int, float], ...]] = {
    "de": (("de", 50, 50, 165, 1.0), ("de+f3", 62, 45, 170, 1.0), ("de+m4", 40, 55, 160, 0.96),
           ("de+klatt2", 52, 40, 175, 1.0)),
    "es": (("es", 50, 50, 175, 1.0), ("es+f2", 64, 55, 180, 1.0), ("es-419+m3", 40, 50, 170, 1.0),
           ("es-419+f4", 66, 60, 175, 1.05)),
    "fr": (("fr", 50, 50, 170, 1.0), ("fr+f3", 62, 50, 175, 1.0), ("fr+m2", 42, 45, 165, 0.97),
           ("fr-be+klatt", 48, 55, 170, 1.0)),
}
# festival: (voice, rate factor, mean f0 Hz or None); f0 only acts on diphone voices
_FESTIVAL_EN: tuple[tuple[str, float, float | None], ...] = (
    ("kal_diphone", 1.0, None),
    ("kal_diphone", 0.9, 85.0),
    ("kal_diphone", 1.1, 130.0),
    ("cmu_us_slt_arctic_hts", 1.0, None),
    ("cmu_us_slt_arctic_hts", 1.15, None),
)
# flite: (voice, rate factor, mean f0 Hz or None); f0 only acts on kal/kal16
_FLITE_EN: tuple[tuple[str, float, float | None], ...] = (
    ("kal16", 1.0, None),
    ("kal16", 0.9, 130.0),
    ("kal", 1.1, 90.0),
    ("awb", 1.0, None),
    ("rms", 1.0, None),
    ("slt", 1.0, None),
    ("slt", 1.15, None),
)
# mbrola: (espeak-ng mbrola voice, pitch 0-99, rate wpm)
_MBROLA_EN: tuple[tuple[str, int, int], ...] = (
    ("mb-us1", 50, 170), ("mb-us1", 70, 180), ("mb-us2", 50, 170), ("mb-us2", 35, 160),
    ("mb-us3", 50, 175), ("mb-us3", 40, 185), ("mb-en1", 50, 170), ("mb-en1", 65, 160),
)


def espeak_voice(name: str, language: str, pitch: int = 50, range_: int = 50,
                 rate: int = DEFAULT_RATE_WPM, formant: float = 1.0) -> Voice:
    """An espeak-ng Voice with a stable id, e.g. "espeak-ng/en-us+f3/p62r40" (+"s180", "f105")."""
    vid = f"espeak-ng/{name}/p{pitch}r{range_}"
    if rate != DEFAULT_RATE_WPM:
        vid += f"s{rate}"
    if formant != 1.0:
        vid += f"f{round(formant * 100)}"
    return Voice(vid, "espeak-ng", name, language,
                 {"pitch": pitch, "range": range_, "rate": rate, "formant": formant})


def _settings_id(rate: float, f0_hz: float | None) -> str:
    out = f"x{round(rate * 100)}"
    return out + (f"f0{round(f0_hz)}" if f0_hz is not None else "")


def _prosody(rate: float, f0_hz: float | None) -> dict:
    return {"rate": rate} | ({"f0_hz": f0_hz} if f0_hz is not None else {})


def all_voices() -> list[Voice]:
    """Every catalogue voice, installed or not, in a fixed order."""
    voices = [espeak_voice(*v[:1], "en", *v[1:]) for v in _ESPEAK_EN]
    for lang, entries in _ESPEAK_OTHER.items():
        voices += [espeak_voice(v[0], lang, *v[1:]) for v in entries]
    voices += [Voice(f"festival/{n}/{_settings_id(r, f0)}", "festival", n, "en", _prosody(r, f0))
               for n, r, f0 in _FESTIVAL_EN]
    voices += [Voice(f"flite/{n}/{_settings_id(r, f0)}", "flite", n, "en", _prosody(r, f0))
               for n, r, f0 in _FLITE_EN]
    voices += [Voice(f"mbrola/{n}/p{p}s{s}", "mbrola", n, "en", {"pitch": p, "rate": s})
               for n, p, s in _MBROLA_EN]
    voices += kokoro_voices()
    return voices


def voice_catalogue(languages: tuple[str, ...] = ("en",)) -> list[Voice]:
    """Installed catalogue voices for `languages` (ISO 639-1), in a fixed order."""
    out = []
    for voice in all_voices():
        if voice.language not in languages:
            continue
        engine = ENGINES[voice.engine]
        if not engine.available():
            continue
        installed = getattr(engine, "voices", None)
        if installed is not None and voice.name not in installed():
            continue
        out.append(voice)
    return out


def synthesize(text: str, voice: Voice) -> Synthesis:
    """Speak `text` with `voice` on its engine; raises EngineError (unknown engine, failure)."""
    engine = ENGINES.get(voice.engine)
    if engine is None:
        raise EngineError(f"unknown engine {voice.engine!r} for voice {voice.id}")
    return engine.synthesize(text, voice)
