"""Speech engines: 16 kHz audio, valid arpabet39 timings, bilabials, closure correction, rate."""

from __future__ import annotations

import numpy as np
import pytest

from distilface.audio import SAMPLE_RATE_HZ
from distilface.corpus import espeak
from distilface.corpus.engine import Voice
from distilface.corpus.voices import ENGINES, espeak_voice, synthesize, voice_catalogue
from distilface.phones import PHONE_SET, VOWELS, validate

SENTENCE = "Bob may put a map on the bump."
BILABIALS_EXPECTED = ["b", "b", "m", "p", "m", "p", "b", "m", "p"]  # in order of appearance
PANGRAMS = {
    "en": "The quick brown fox jumps over the lazy dog; judge my vow, sixty zippers, thin shoes.",
    "de": "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich, durch Urgroßeltern.",
    "es": "El veloz murciélago hindú comía feliz cardillo y kiwi; la cigüeña tocaba el saxofón.",
    "fr": "Portez ce vieux whisky au juge blond qui fume; dès Noël où un zéphyr haï me vêt.",
}
ESPEAK_EN_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                     "en-gb-x-gbclan", "en-gb-x-gbcwmd")


def first_voice(engine: str) -> Voice:
    voices = [v for v in voice_catalogue(("en",)) if v.engine == engine]
    if not voices:
        pytest.skip(f"{engine} is not installed")
    return voices[0]


@pytest.fixture(scope="module")
def espeak_f3():
    if not ENGINES["espeak-ng"].available():
        pytest.skip("espeak-ng is not installed")
    voice = espeak_voice("en-us+f3", "en", pitch=62, range_=40)
    return synthesize(SENTENCE, voice), espeak.synthesize_espeak(SENTENCE, voice, correct=False)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_audio_and_phones(engine):
    syn = synthesize(SENTENCE, first_voice(engine))
    assert syn.audio.dtype == np.float32 and syn.audio.ndim == 1
    assert np.sqrt(np.mean(syn.audio**2)) > 0.01  # not silent
    validate(syn.phones)
    assert syn.phones[0].start_s == 0.0
    assert abs(syn.phones[-1].end_s - syn.audio.size / SAMPLE_RATE_HZ) < 1e-3
    assert [p.phone for p in syn.phones if p.phone in ("p", "b", "m")] == BILABIALS_EXPECTED


def rms_db(audio: np.ndarray, start_s: float, end_s: float) -> float:
    """High-band (> 1 kHz) level: a /b/ closure keeps a low-frequency voice bar."""
    from scipy.signal import butter, sosfiltfilt

    high = sosfiltfilt(butter(4, 1000, "highpass", fs=SAMPLE_RATE_HZ, output="sos"), audio)
    seg = high[int(start_s * SAMPLE_RATE_HZ):int(end_s * SAMPLE_RATE_HZ)]
    return 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12)


def test_espeak_closure_correction(espeak_f3):
    corrected, raw = espeak_f3
    raw_starts = {i: p.start_s for i, p in enumerate(raw.phones)}
    moved = 0
    for i, seg in enumerate(corrected.phones):
        assert seg.start_s <= raw_starts[i] + 1e-9  # only ever moves earlier
        nxt = corrected.phones[i + 1] if i + 1 < len(corrected.phones) else seg
        if seg.phone not in ("p", "b") or corrected.phones[i - 1].phone == "sil" \
                or nxt.phone not in VOWELS:
            continue
        closure_db = rms_db(corrected.audio, seg.start_s, seg.start_s + 0.02)
        # the stop's first 20 ms is a closure: far below the following vowel's onset
        assert closure_db < rms_db(corrected.audio, nxt.start_s, nxt.start_s + 0.03) - 20
        moved += seg.start_s < raw_starts[i] - 0.01
    assert moved >= 2  # the /p/ of "put" and "map" start at the release in raw espeak-ng


def test_espeak_closure_moves_put_map_bump(espeak_f3):
    corrected, raw = espeak_f3
    shifts_ms = [1000 * (r.start_s - c.start_s) for c, r in zip(corrected.phones, raw.phones)
                 if c.phone == "p"]
    assert all(20 <= s <= espeak.MAX_CLOSURE_MS for s in shifts_ms), shifts_ms


def test_espeak_rate_scales_timings():
    if not ENGINES["espeak-ng"].available():
        pytest.skip("espeak-ng is not installed")
    slow = synthesize(SENTENCE, espeak_voice("en-us", "en", rate=130))
    fast = synthesize(SENTENCE, espeak_voice("en-us", "en", rate=260))
    assert [p.phone for p in slow.phones] == [p.phone for p in fast.phones]
    speech = [(s.end_s - s.start_s, f.end_s - f.start_s)
              for s, f in zip(slow.phones, fast.phones) if s.phone != "sil"]
    ratio = sum(s for s, _ in speech) / sum(f for _, f in speech)
    assert 1.4 < ratio < 2.6
    assert abs(slow.phones[-1].end_s - slow.audio.size / SAMPLE_RATE_HZ) < 1e-3


def test_espeak_formant_factor_rescales_timings_exactly():
    if not ENGINES["espeak-ng"].available():
        pytest.skip("espeak-ng is not installed")
    syn = synthesize(SENTENCE, espeak_voice("en-us+m3", "en", rate=175, formant=1.1))
    validate(syn.phones)
    assert abs(syn.phones[-1].end_s - syn.audio.size / SAMPLE_RATE_HZ) < 1e-3


@pytest.mark.parametrize("engine,voice_name,slow_params,fast_params", [
    ("flite", "slt", {"rate": 0.8}, {"rate": 1.25}),
    ("festival", "kal_diphone", {"rate": 0.8}, {"rate": 1.25}),
])
def test_subprocess_engine_rate(engine, voice_name, slow_params, fast_params):
    eng = ENGINES[engine]
    if not eng.available() or voice_name not in eng.voices():
        pytest.skip(f"{engine} {voice_name} is not installed")
    slow = eng.synthesize(SENTENCE, Voice("t/slow", engine, voice_name, "en", slow_params))
    fast = eng.synthesize(SENTENCE, Voice("t/fast", engine, voice_name, "en", fast_params))
    speech_s = [sum(p.duration_s for p in s.phones if p.phone != "sil") for s in (slow, fast)]
    assert 1.2 < speech_s[0] / speech_s[1] < 2.0


@pytest.mark.parametrize("language", sorted(PANGRAMS))
def test_espeak_mapping_covers_pangrams(language):
    if not ENGINES["espeak-ng"].available():
        pytest.skip("espeak-ng is not installed")
    accents = ESPEAK_EN_ACCENTS if language == "en" else {
        "de": ("de",), "es": ("es", "es-419"), "fr": ("fr", "fr-be")}[language]
    for accent in accents:
        _, segments = espeak.raw_phones(PANGRAMS[language], accent)
        for _, _, name in segments:
            assert set(espeak.map_phone(name, language)) <= PHONE_SET, (accent, name)


def test_catalogue_is_large_stable_and_unique():
    voices = voice_catalogue(("en",))
    assert [v.id for v in voices] == [v.id for v in voice_catalogue(("en",))]
    assert len({v.id for v in voices}) == len(voices)
    if ENGINES["espeak-ng"].available() and ENGINES["flite"].available() \
            and ENGINES["festival"].available():
        assert len(voices) >= 40
    assert "espeak-ng/en-us+f3/p62r40" in {v.id for v in voices} or not voices
    for lang in ("de", "es", "fr"):
        others = voice_catalogue((lang,))
        assert all(v.language == lang for v in others)
        if ENGINES["espeak-ng"].available():
            assert len(others) >= 3


def test_espeak_output_does_not_depend_on_what_was_said_before():
    # espeak-ng 1.51 keeps state between calls: before the forked calls, this sentence came out
    # 54 ms longer after a question (found by the interruption test: a resumed corpus differed).
    if not ENGINES["espeak-ng"].available():
        pytest.skip("espeak-ng is not installed")
    voice = espeak_voice("en-us+m1", "en", pitch=40, range_=45, rate=165)
    text = ("The Great Movie Posters: A mis-spawned murderous abomination from the nether reaches of an "
            "unimaginable hell.")
    first = synthesize(text, voice)
    synthesize("Who wants to remember that escape-x-alt-control-left shift-b puts you into "
               "super-edit-debug-compile mode?", voice)
    again = synthesize(text, voice)
    np.testing.assert_array_equal(first.audio, again.audio)
    assert first.phones == again.phones
