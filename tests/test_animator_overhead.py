"""scripts/animator_overhead.py: every frame-completing push is timed with the onnxruntime calls
inside it, on a real exported graph, and the frames it counts are the animator's."""

import numpy as np
import torch

from distilface.audio import SAMPLE_RATE_HZ
from distilface.curves import num_frames
from distilface.runtime.export import export_model
from distilface.runtime.ort import OrtModel
from distilface.student import StudentConfig, build_student

from scriptload import load_script


def test_overhead_counts_every_frame_push_and_its_calls(tmp_path):
    mod = load_script("animator_overhead")
    path = tmp_path / "s.onnx"
    torch.manual_seed(0)
    export_model(build_student(StudentConfig(channels=16, context_groups=8)).eval(), path, streaming=True)
    model = OrtModel(path)
    audio = (0.1 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE_HZ)).astype(np.float32)
    r = mod.overhead_us(model, audio, fps=30.0)
    # 2 s at 30 fps; pushes of one frame of audio complete frames once the window's future has
    # arrived, and the stream is never ended: some frames stay pending, none is counted twice
    assert 0 < r["frames"] <= num_frames(2.0, 30.0)
    assert r["push_us"] >= r["phase_step_us"] > 0  # the calls are timed inside their push
    assert r["animator_us"] >= 0


def test_overhead_times_the_native_step_the_same_way():
    from distilface.runtime.native import NativeModel

    mod = load_script("animator_overhead")
    torch.manual_seed(0)
    model = NativeModel.from_student(build_student(StudentConfig(channels=16, context_groups=8)).eval())
    audio = (0.1 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE_HZ)).astype(np.float32)
    r = mod.overhead_us(model, audio, fps=30.0)  # the Python animator around the C step
    assert 0 < r["frames"] <= num_frames(2.0, 30.0) and r["push_us"] >= r["phase_step_us"] > 0
    model.stream_in_c = True
    c = mod.push_us(model, audio, fps=30.0)  # the C animator: the same frame-completing pushes
    assert c["frames"] == r["frames"] and c["push_us"] > 0
    # 48 kHz pushes: resampled in C, or by the Python resampler first (which waits a little longer
    # for its margin, so a frame or two can complete one push apart)
    a = mod.push_us(model, audio, fps=30.0, rate_hz=48000)
    b = mod.push_us(model, audio, fps=30.0, rate_hz=48000, python_resampler=True)
    assert abs(a["frames"] - b["frames"]) <= 2 and min(a["frames"], b["frames"]) > 0 and a["push_us"] > 0 < b["push_us"]
