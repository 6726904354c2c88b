"""Metrics against hand-computed values."""

import numpy as np
import pytest

from distilface import metrics
from distilface.curves import Curves
from distilface.phones import PhoneSegment as P


def test_pbm_hits_hand_computed():
    fps = 10.0  # frame k at k * 0.1 s
    gap = np.array([5, 5, 0.5, 5, 5, 5, 5, 5, 0.9, 5], dtype=float)
    phones = [P("sil", 0.0, 0.1), P("m", 0.1, 0.3), P("aa", 0.3, 0.5),
              P("p", 0.5, 0.6), P("ah", 0.6, 0.75), P("b", 0.75, 0.8), P("sil", 0.8, 1.0)]
    # m: frames within [0.05, 0.35] -> 1..3, frame 2 gap 0.5 -> hit.
    # p: [0.45, 0.65] -> frames 5, 6 -> min 5 -> miss.
    # b: [0.70, 0.85] -> frames 7, 8 -> frame 8 gap 0.9 < 1.0 -> hit.
    assert metrics.pbm_hits(gap, fps, phones, closed_gap_mm=1.0, tolerance_s=0.05) == (2, 3)
    # Without tolerance: m keeps frames 1..3, p frame 6 (gap 5, miss), b [0.75, 0.8] only frame 8 (0.9 mm, hit).
    assert metrics.pbm_hits(gap, fps, phones, closed_gap_mm=1.0, tolerance_s=0.0) == (2, 3)
    # A stricter threshold turns the 0.9 mm frame into a miss.
    assert metrics.pbm_hits(gap, fps, phones, closed_gap_mm=0.8, tolerance_s=0.05) == (1, 3)


def test_open_vowel_hits_hand_computed():
    fps = 10.0
    gap = np.array([0, 0, 3, 3, 1, 0, 0, 2.5, 0, 0], dtype=float)
    phones = [P("sil", 0.0, 0.15), P("aa", 0.15, 0.55), P("m", 0.55, 0.65), P("ae", 0.65, 0.72),
              P("iy", 0.72, 0.9), P("sil", 0.9, 1.0)]
    # aa scored on [0.17, 0.53] -> frames 2, 3, 4, 5: gaps 3, 3, 1, 0 -> 2 open of 4.
    # ae [0.67, 0.70] holds no frame -> middle frame round(0.685*10)=7: gap 2.5 -> open.
    # iy is not an open vowel.
    assert metrics.open_vowel_hits(gap, fps, phones, open_gap_mm=2.0, edge_s=0.02) == (3, 5)


def test_jitter_hand_computed():
    x = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0], [3, 4, 0]], dtype=float)
    # v = (1,0,0), (2,0,0), (0,4,0); a = (1,0,0), (-2,4,0); |a| = 1, sqrt(20)
    assert metrics.jitter(x) == pytest.approx((1 + np.sqrt(20)) / 2)
    assert metrics.jitter(np.arange(10.0)) == 0.0  # constant velocity: no jitter


def test_curve_mse_shared_channels_and_frames():
    a = Curves(30, ("a", "b", "c"), np.array([[0, 1, 2], [1, 1, 1], [5, 5, 5]]))
    b = Curves(30, ("c", "a"), np.array([[2, 1], [3, 1]]))
    # shared a, c over 2 frames: diffs a: 0-1, 1-1 ; c: 2-2, 1-3 -> (1 + 0 + 0 + 4) / 4
    assert metrics.curve_mse(a, b) == pytest.approx(5 / 4)
    with pytest.raises(ValueError):
        metrics.curve_mse(a, Curves(60, ("a",), np.zeros((2, 1))))
