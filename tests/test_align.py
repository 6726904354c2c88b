"""Forced alignment (pocketsphinx) on espeak-ng speech, text normalisation, and the check matcher."""

import shutil
import subprocess

import numpy as np
import pytest

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.corpus.align import (FRAME_S, AlignmentError, align_phones, normalize_text,
                                     recognize_phones)
from distilface.corpus.check import boundary_errors, match_phones, summarize
from distilface.phones import SILENCE, PhoneSegment, validate

SENTENCE = "Please press the big button, Mom."
# CMUdict pronunciation, as the aligner must find it
EXPECTED = "p l iy z p r eh s dh ah b ih g b ah t ah n m aa m".split()

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def _espeak(tmp_path, text: str, name: str = "x.wav"):
    path = tmp_path / name
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)  # 22.05 kHz
    return load_audio(path)


@pytest.fixture(scope="module")
def espeak_audio(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing")
    return _espeak(tmp_path_factory.mktemp("align"), SENTENCE)


@needs_espeak
def test_align_espeak_sentence(espeak_audio):
    segments = align_phones(espeak_audio, SENTENCE)
    validate(segments)
    assert [s.phone for s in segments if s.phone != SILENCE] == EXPECTED
    duration_s = len(espeak_audio) / SAMPLE_RATE_HZ
    assert segments[0].start_s == 0.0
    assert segments[-1].end_s == pytest.approx(duration_s, abs=1e-9)
    inner = [s.end_s for s in segments[:-1]]
    assert np.all(np.diff(inner) > 0)
    # boundaries lie on the aligner's 10 ms frame grid; phones last >= 3 frames (3-state HMMs)
    assert np.allclose(np.round(np.array(inner) / FRAME_S) * FRAME_S, inner, atol=1e-9)
    assert all(s.duration_s >= 3 * FRAME_S - 1e-9 for s in segments[:-1] if s.phone != SILENCE)


@needs_espeak
def test_align_is_deterministic(espeak_audio):
    assert align_phones(espeak_audio, SENTENCE) == align_phones(espeak_audio, SENTENCE)


@needs_espeak
def test_unknown_word_is_named(espeak_audio):
    with pytest.raises(AlignmentError, match="zorblaxian"):
        align_phones(espeak_audio, "Please press the zorblaxian button")


@needs_espeak
def test_lexicon_adds_words(espeak_audio):
    segments = align_phones(espeak_audio, "Please press the big buttonz Mom",
                            lexicon={"buttonz": "b ah t ah n"})
    assert [s.phone for s in segments if s.phone != SILENCE] == EXPECTED


def test_bad_audio_raises():
    with pytest.raises(AlignmentError, match="too short"):
        align_phones(np.zeros(100, np.float32), "hello")
    with pytest.raises(AlignmentError, match="no words"):
        align_phones(np.zeros(SAMPLE_RATE_HZ, np.float32), "?!")


@needs_espeak
def test_recognize_phones_covers_audio(espeak_audio):
    segments = recognize_phones(espeak_audio)
    validate(segments)
    assert segments[-1].end_s == pytest.approx(len(espeak_audio) / SAMPLE_RATE_HZ)
    assert sum(s.phone != SILENCE for s in segments) >= 5


def test_normalize_text():
    known = {"a.m.", "o'clock", "don't"}.__contains__
    assert normalize_text("Call-Forward at 10:30 A.M., don't!", known) == \
        ["call", "forward", "at", "ten", "thirty", "a.m.", "don't"]
    assert normalize_text("1,250 and 3.5% & 21") == [
        "one", "thousand", "two", "hundred", "fifty", "and", "three", "point", "five", "percent",
        "and", "twenty", "one"]
    assert normalize_text("\u201cWaldo\u2019s\u201d  premier") == ["waldo's", "premier"]


# ----------------------------------------------------------------------------- check matcher

def _segs(spec):
    """[(phone, end_s), ...] -> contiguous segments from 0."""
    out, start = [], 0.0
    for phone, end in spec:
        out.append(PhoneSegment(phone, start, end))
        start = end
    return out


def test_match_phones_skips_mismatches():
    ref = ["sil", "p", "aa", "m", "ah", "sil"]
    hyp = ["p", "aa", "sil", "m", "iy", "sil"]
    assert match_phones(ref, hyp) == [(1, 0), (2, 1), (3, 3), (5, 5)]


def test_boundary_errors_hand_computed():
    ref = _segs([("sil", 0.10), ("p", 0.20), ("aa", 0.35), ("m", 0.50), ("ah", 0.60),
                 ("t", 0.70), ("sil", 0.90)])
    # aligner: sil|p +20 ms, p|aa +10 ms, aa|m -20 ms, m|iy (substituted: not compared),
    # t|sil -30 ms
    hyp = _segs([("sil", 0.12), ("p", 0.21), ("aa", 0.33), ("m", 0.50), ("iy", 0.60),
                 ("t", 0.67), ("sil", 0.90)])
    errors = boundary_errors(ref, hyp)
    assert errors["phone"] == pytest.approx([10.0, -20.0])
    assert errors["bilabial_onset"] == pytest.approx([-20.0])
    assert errors["silence"] == pytest.approx([20.0, -30.0])
    stats = summarize(errors["phone"])
    assert stats["n_boundaries"] == 2
    assert stats["median_ms"] == pytest.approx(15.0)
    assert stats["p95_ms"] == pytest.approx(19.5)  # 10 + 0.95 * (20 - 10), linear interpolation
    assert stats["mean_signed_ms"] == pytest.approx(-5.0)


def test_summarize_hand_computed():
    stats = summarize([1.0, -2.0, 3.0, -4.0, 100.0])
    assert stats["median_ms"] == 3.0
    assert stats["p95_ms"] == pytest.approx(80.8)  # 4 + 0.8 * (100 - 4)
    assert summarize([])["median_ms"] is None
