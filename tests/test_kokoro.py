"""Kokoro engine: token mapping, duration -> phone spans, and (with the extra) real synthesis."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from distilface.audio import SAMPLE_RATE_HZ
from distilface.corpus import kokoro as K
from distilface.phones import SILENCE, validate

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed")
needs_kokoro = pytest.mark.skipif(not K.installed(), reason="the kokoro extra is not installed "
                                  "(scripts/setup-extra.sh kokoro)")
U = K.UNIT_SAMPLES
LAG = K.LAG_SAMPLES


def group(tokens: str, arpabet: tuple[str, ...], ipa: str = "x") -> K.TokenGroup:
    return K.TokenGroup(tuple(tokens), arpabet, ipa)


SPACE = K.TokenGroup((" ",), ())
PERIOD = K.TokenGroup((".",), (SILENCE,))


@pytest.mark.parametrize("ipa,tokens", [
    ("ˈaɪ", "ˈI"), ("oʊ", "O"), ("ˌeɪ", "ˌA"), ("ɚ", "əɹ"), ("ˈɜː", "ˈɜɹ"), ("iː", "i"),
    ("dʒ", "ʤ"), ("n̩", "ᵊn"), ("ɑːɹ", "ɑɹ"), ("ɡ", "ɡ"), ("ʔ", "t"), ("ɾ", "ɾ"),
])
def test_phone_tokens(ipa, tokens):
    assert K.phone_tokens(ipa) == tuple(tokens)


def test_group_spans_lag_stress_space_and_split():
    # "ˈæ n̩ . " : pad | ˈ æ | ᵊ n | space | b | . | pad, durations in units
    groups = [group("ˈæ", ("ae",)), group("ᵊn", ("ah", "n")), SPACE, group("b", ("b",)), PERIOD]
    units = np.array([10, 2, 3, 1, 2, 2, 4, 6, 1])  # pad ˈ æ ᵊ n ␣ b . pad
    spans = K.group_spans(groups, units)
    edges = np.cumsum(units) * U
    assert spans == [
        (SILENCE, 0, edges[0] - LAG),
        ("ae", edges[0] - LAG, edges[2] - LAG),  # the stress mark's units belong to the vowel
        ("ah", edges[2] - LAG, edges[3] - LAG),  # ᵊn -> ah n, split at the token edge
        ("n", edges[3] - LAG, edges[4] + U - LAG),  # half of the 2-unit space
        ("b", edges[4] + U - LAG, edges[6] - LAG),  # the other half
        (SILENCE, edges[6] - LAG, edges[7] - LAG),
        (SILENCE, edges[7] - LAG, edges[8]),  # the last phone ends at the audio's end
    ]
    assert all(s % K.FRAME_SAMPLES == 0 and e % K.FRAME_SAMPLES == 0 for _, s, e in spans)


def test_group_spans_short_leading_pad_keeps_phones():
    spans = K.group_spans([group("a", ("aa",)), PERIOD], np.array([2, 3, 1, 1]))
    assert [s[0] for s in spans] == [SILENCE, "aa", SILENCE, SILENCE]
    assert spans[0] == (SILENCE, 0, U)  # lag capped: the leading pause keeps one unit
    assert all(e > s for _, s, e in spans)


def test_trim_pauses_moves_silent_tail_to_the_pause():
    frame = K.FRAME_SAMPLES
    audio = np.zeros(20 * frame, np.float32)
    audio[2 * frame:7 * frame] = 0.3 * np.sin(np.arange(5 * frame) * 0.2)  # speech in frames 2..6
    spans = [(SILENCE, 0, 2 * frame), ("t", 2 * frame, 12 * frame),
             (SILENCE, 12 * frame, 20 * frame)]
    assert K.trim_pauses(spans, audio) == [(SILENCE, 0, 2 * frame), ("t", 2 * frame, 7 * frame),
                                           (SILENCE, 7 * frame, 20 * frame)]


def test_chunk_groups_cuts_after_punctuation():
    word = [group("ab", ("aa", "b"))]
    groups = word + [SPACE] + word + [PERIOD, SPACE] + word + [SPACE] + word
    chunks = K.chunk_groups(groups, max_tokens=8)
    assert chunks == [word + [SPACE] + word + [PERIOD], word + [SPACE] + word]
    with pytest.raises(K.EngineError):
        K.chunk_groups([group("abcdefghij", ("aa",))], max_tokens=8)


def test_voice_ids_are_stable_and_unique():
    assert K.kokoro_voice({"jf_alpha": 1.0}).id == "kokoro/jf_alpha/s100"
    blend = K.kokoro_voice({"jf_alpha": 0.5, "jm_kumo": 0.5}, 1.1)
    assert blend.id == "kokoro/jf_alpha+jm_kumo/s110"
    assert K.kokoro_voice({"jf_alpha": 3, "jm_kumo": 1}).id == "kokoro/jf_alpha+jm_kumo/s100w75-25"
    ids = [v.id for v in K.catalogue_voices()]
    assert len(ids) == len(set(ids)) and ids[0] == "kokoro/jf_alpha/s100"
    assert all(set(v.params["styles"]) <= set(K.STYLES) for v in K.catalogue_voices())


@needs_espeak
def test_text_groups_words_stress_punctuation():
    groups = K.text_groups("Hello, world.")
    assert "".join("".join(g.tokens) for g in groups) == "həlˈO, wˈɜɹld."
    assert [g.arpabet for g in groups if g.arpabet] == [
        ("hh",), ("ah",), ("l",), ("ow",), (SILENCE,), ("w",), ("er",), ("l",), ("d",), (SILENCE,)]


@pytest.fixture(scope="module")
def model():
    if not K.installed():
        pytest.skip("the kokoro extra is not installed (scripts/setup-extra.sh kokoro)")
    return K.get_model()


@needs_kokoro
def test_vocabulary_covers_the_mapping(model):
    symbols = {c for v in K.KOKORO_TOKENS.values() for c in v} | set(K._CLAUSE_PUNCT) | {" ", "ˈ"}
    assert symbols <= set(model.vocab)
    pangram = ("The quick brown fox jumps over the lazy dog; judge my vow, sixty zippers, "
               "thin shoes.")
    assert {t for g in K.text_groups(pangram) for t in g.tokens} <= set(model.vocab)


@needs_kokoro
def test_durations_sum_to_the_audio(model):
    ids = [model.vocab[c] for c in "həlˈO."]
    audio, units = K.run_model(ids, K.style_vector({"jf_alpha": 1.0}, len(ids), model), 1.0, model)
    assert units.shape == (len(ids) + 2,) and units.min() >= 1
    assert audio.size == units.sum() * U


@needs_kokoro
def test_synthesis_timings_exact_and_deterministic(model):
    voice = K.kokoro_voice({"jf_alpha": 0.5, "jm_kumo": 0.5})
    syn = K.synthesize_kokoro("Bob may put a map on the bump.", voice)
    validate(syn.phones)
    assert syn.audio.dtype == np.float32 and np.sqrt(np.mean(syn.audio**2)) > 0.01
    assert syn.phones[-1].end_s == syn.audio.size / SAMPLE_RATE_HZ
    grid = K.FRAME_SAMPLES * SAMPLE_RATE_HZ // K.KOKORO_RATE_HZ  # 200 samples at 16 kHz
    starts = np.array([seg.start_s for seg in syn.phones]) * SAMPLE_RATE_HZ / grid
    assert np.allclose(starts, np.round(starts), atol=1e-6)
    bilabials = [p.phone for p in syn.phones if p.phone in ("p", "b", "m")]
    assert bilabials == ["b", "b", "m", "p", "m", "p", "b", "m", "p"]
    again = K.synthesize_kokoro("Bob may put a map on the bump.", voice)
    assert np.array_equal(syn.audio, again.audio) and syn.phones == again.phones


@needs_kokoro
def test_speed_variant_is_faster(model):
    text = "Speed changes the durations."
    slow = K.synthesize_kokoro(text, K.kokoro_voice({"jm_kumo": 1.0}, 0.9))
    fast = K.synthesize_kokoro(text, K.kokoro_voice({"jm_kumo": 1.0}, 1.15))
    assert fast.audio.size < slow.audio.size
    with pytest.raises(K.EngineError):
        K.synthesize_kokoro(text, K.kokoro_voice({"no_such_style": 1.0}))
