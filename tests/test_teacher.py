"""Coarticulation invariants of the aligned teacher."""

import numpy as np
import pytest

from distilface.curves import num_frames
from distilface.phones import PhoneSegment as P
from distilface.rig.arkit import ARKIT_52
from distilface.teacher import Teacher, build_teacher

PHONES = [P("sil", 0.0, 0.3), P("m", 0.3, 0.4), P("aa", 0.4, 0.6), P("p", 0.6, 0.68),
          P("ah", 0.68, 0.85), P("b", 0.85, 0.9), P("iy", 0.9, 1.05), P("s", 1.05, 1.15),
          P("uw", 1.15, 1.35), P("sil", 1.35, 2.5)]
DURATION_S = 2.5


def ch(values, name):
    return values[:, ARKIT_52.index(name)]


@pytest.fixture(scope="module")
def teacher():
    return build_teacher("aligned")


def curves_at(teacher, fps):
    audio = np.zeros(int(DURATION_S * 16000), np.float32)
    return teacher.animate(audio, fps, phones=PHONES)


def test_protocol_and_shape(teacher):
    assert isinstance(teacher, Teacher)
    c = curves_at(teacher, 30)
    assert c.values.shape == (num_frames(DURATION_S, 30), 52) == (75, 52)
    assert c.names == ARKIT_52
    assert c.values.min() >= 0 and c.values.max() <= 1


def test_lips_close_through_bilabials_and_open_into_vowels(teacher):
    v = curves_at(teacher, 100).values  # frame k at k * 10 ms
    for seg in (PHONES[1], PHONES[3], PHONES[5]):
        mid = int(round(100 * (seg.start_s + seg.end_s) / 2))
        # mouthClose cancels jawOpen (ARKit convention): lips sealed; lips pressed.
        assert ch(v, "jawOpen")[mid] - ch(v, "mouthClose")[mid] < 0.02, seg
        assert ch(v, "mouthPressLeft")[mid] > 0.2, seg
    # 50 ms into the following open vowel the jaw is well open and the lips are no longer sealed.
    for vowel in (PHONES[2], PHONES[4]):
        k = int(round(100 * (vowel.start_s + 0.05)))
        assert ch(v, "jawOpen")[k] - ch(v, "mouthClose")[k] > 0.15, vowel


def test_rest_in_silence_and_anticipation(teacher):
    v = curves_at(teacher, 100).values
    # 250 ms before speech only a trace of the anticipated jaw opening is left.
    assert np.abs(v[:5]).max() < 0.03
    assert np.abs(v[200:]).max() < 0.01  # long trailing pause: back to rest
    # Rounding for /uw/ starts before it, during /s/.
    k = int(round(100 * (PHONES[8].start_s - 0.05)))
    assert ch(v, "mouthPucker")[k] > 0.1


def test_frame_rate_only_changes_sampling(teacher):
    c30, c60 = curves_at(teacher, 30), curves_at(teacher, 60)
    np.testing.assert_allclose(c60.values[::2][: c30.num_frames], c30.values, atol=1e-6)


def test_blinks_are_optional_and_seeded(teacher):
    assert np.abs(ch(curves_at(teacher, 30).values, "eyeBlinkLeft")).max() == 0
    blinky = build_teacher("aligned", blinks=True, blink_rate_hz=3.0)
    audio = np.zeros(int(DURATION_S * 16000), np.float32)
    a = blinky.animate(audio, 30, phones=PHONES, utterance_id="u1")
    b = blinky.animate(audio, 30, phones=PHONES, utterance_id="u1")
    np.testing.assert_array_equal(a.values, b.values)
    assert ch(a.values, "eyeBlinkLeft").max() > 0.5
    assert blinky.id != teacher.id


def test_lip_gap_on_rig_closes_at_bilabials(teacher):
    from distilface.metrics import CLOSED_GAP_MM, OPEN_GAP_MM
    from distilface.rig.mesh import load_rig

    c = curves_at(teacher, 100)
    gap = load_rig().lip_gap_mm(c)
    for seg in (PHONES[1], PHONES[3], PHONES[5]):
        mid = int(round(100 * (seg.start_s + seg.end_s) / 2))
        assert gap[mid] < CLOSED_GAP_MM, seg
    assert gap[int(100 * 0.5)] > OPEN_GAP_MM  # middle of /aa/
