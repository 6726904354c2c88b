"""Ensemble smoothing: three predictions 16.69 ms apart, by hand; its cost. Streaming with smoothing: test_streaming."""

import numpy as np
import pytest
import torch

from distilface.animate import animate_audio
from distilface.info import model_info
from distilface.smoothing import SMOOTH_OFFSET_SAMPLES, EnsembleSmoothed, parse_weights
from distilface.student import Student, StudentConfig, frame_starts


def tiny(future_ms=64.0):
    torch.manual_seed(0)
    return Student(StudentConfig(channels=16, context_groups=4, future_ms=future_ms)).eval()


def test_offset_and_weights():
    assert SMOOTH_OFFSET_SAMPLES == 267  # 1/60 s at 16 kHz, rounded to a sample
    assert parse_weights("1,2,1") == (0.25, 0.5, 0.25)
    assert parse_weights("default") == (0.25, 0.5, 0.25)
    assert parse_weights(None) is None
    for bad in ("1,2", "a,b,c", "-1,1,1", "0,0,0"):
        with pytest.raises(ValueError, match="smoothing weights"):
            parse_weights(bad)


def test_frames_are_the_weighted_average_of_three_windows():
    student = tiny()
    smooth = EnsembleSmoothed(student, (0.2, 0.5, 0.3))
    cfg = student.cfg
    assert smooth.cfg.window_samples == cfg.window_samples + 2 * 267
    assert smooth.cfg.future_samples == cfg.future_samples + 267
    gen = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(16000, generator=gen)
    n = 30  # 1 s at 30 fps
    with torch.inference_mode():
        got = animate_audio(smooth, audio.numpy(), fps=30.0).values
        padded = torch.nn.functional.pad(audio, (20000, 20000))
        for k in (0, 7, 29):
            t = round(k * 16000 / 30)  # frame time in samples
            wins = [padded[20000 + t - cfg.past_samples + d: 20000 + t - cfg.past_samples + d + cfg.window_samples]
                    for d in (-267, 0, 267)]
            preds = [student(w[None])[0].numpy() for w in wins]
            want = 0.2 * preds[0] + 0.5 * preds[1] + 0.3 * preds[2]
            np.testing.assert_allclose(got[k], want, atol=1e-5)
    assert len(got) == n


def test_info_reports_the_extra_latency_and_cost():
    student = tiny(future_ms=64.0)
    plain, smooth = model_info(student), model_info(EnsembleSmoothed(student))
    assert smooth["future_ms_config"] == pytest.approx(64.0 + 267 / 16)
    # measured from input gradients: the last prediction's window ends 267 samples later
    assert smooth["future_samples_measured"] == plain["future_samples_measured"] + 267
    assert smooth["macs_per_frame_windowed"] == 3 * plain["macs_per_frame_windowed"]
    assert smooth["parameters"] == plain["parameters"]
