"""scripts/cold_cache.py: every frame-completing push is timed, in each of the three modes, and
the frames it counts are the ones the animator completes."""

import numpy as np
import torch

from distilface.curves import num_frames
from distilface.runtime.native import NativeModel
from distilface.student import StudentConfig, build_student

from scriptload import load_script


def test_cold_cache_times_every_frame_in_each_mode():
    mod = load_script("cold_cache")
    torch.manual_seed(0)
    net = NativeModel.from_student(build_student(StudentConfig(channels=16, context_groups=8)).eval())
    audio = (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    future = net.geometry.window_samples - net.geometry.past_samples

    def done(pushes):  # frames complete once their future has arrived
        return num_frames((pushes * 16000 / 30 - future) / 16000, 30.0)

    for mode in mod.MODES:  # pushes before 30 are warm-up; one frame per push after that
        t = mod.push_times_us(net, audio, mode, 60)
        assert len(t) == done(60) - done(30) == 30 and min(t) > 0
