"""scripts/alignment_jitter.py (docs/runtime.md, "On a frame grid"): the start variants are what
its doc says, and its jitter is eval's metric on those frames."""

import numpy as np
import pytest
import torch

from distilface.curves import Curves
from distilface.metrics import jitter
from distilface.rig.mesh import load_rig
from distilface.student import Student, StudentConfig, frame_starts

from scriptload import load_script


@pytest.fixture(scope="module")
def mod():
    m = load_script("alignment_jitter")
    return m


def test_variant_starts(mod):
    cfg = StudentConfig(channels=16, context_groups=4)
    v = mod.variant_starts(40, 30.0, cfg, np.random.default_rng(0))
    assert set(v) == set(mod.VARIANTS)
    exact = frame_starts(40, 30.0, cfg).long()
    assert torch.equal(v["exact"], exact)
    at = v["grid80"] + cfg.past_samples  # frame times on the grid, each within 40 samples of k / fps
    assert torch.all(at % 80 == 0) and torch.all((at - (exact + cfg.past_samples)).abs() <= 40)
    assert torch.all((v["grid80+40"] + cfg.past_samples) % 80 == 40)
    assert torch.all((v["grid320"] + cfg.past_samples) % 320 == 0)
    for name, base in (("grid80+random", v["grid80"]), ("exact+random", exact)):
        off = v[name] - base
        assert off.min() >= 0 and off.max() < 80 and len(set(off.tolist())) > 10  # varies per frame
    assert len(set(((exact + cfg.past_samples) % 80).tolist())) > 1  # exact times: offsets vary


def test_jitter_is_evals_metric_on_those_frames(mod):
    torch.manual_seed(0)
    student = Student(StudentConfig(channels=16, context_groups=4)).eval()
    rng = np.random.default_rng(1)
    audios = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (9000, 14000)]
    got = mod.alignment_jitter(student, audios, fps=30.0, seed=3)
    rig, total, count = load_rig(), 0.0, 0
    for a in audios:
        n = int(np.ceil(len(a) / 16000 * 30))
        with torch.inference_mode():
            y = student.forward_frames(torch.from_numpy(a), frame_starts(n, 30.0, student.cfg)).numpy()
        total += jitter(rig.lower_lip_mm(Curves(30.0, student.cfg.names, y))) * (n - 2)
        count += n - 2
    assert got["exact"] == pytest.approx(total / count, rel=1e-9)
    assert all(np.isfinite(v) and v > 0 for v in got.values())
    assert got["grid80"] != got["exact"]
