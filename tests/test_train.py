"""Training: losses against hand computation, the hybrid stage's windows, and the real CLI end to end
(hetero -> kill -> resume, hybrid with predictive + down-scaling supervision) on a tiny corpus."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from distilface.checkpoint import load_student, read_checkpoint
from distilface.dataset import ChunkSampler, PackedSplit
from distilface.student import StudentConfig
from distilface.train import LossWeights, distill_losses, feat_scale, feature_losses, load_config, lr_at, teacher2_shift

from test_cli import CLI, run  # the real CLI in a subprocess, failing with its stderr


# -- losses by hand -----------------------------------------------------------------------------
def kill_at_step(proc: subprocess.Popen, run_dir, step: int, pids=lambda: []) -> int:
    """SIGKILL `proc` (and `pids()`, e.g. its ranks) once run_dir/last.pt holds `step` or later
    -> the step of the last checkpoint left; skips the test if the run ended first."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "last.pt").exists() and read_checkpoint(run_dir / "last.pt")["step"] >= step:
            for pid in [*pids(), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.02)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before it could be killed")
    return read_checkpoint(run_dir / "last.pt")["step"]


def test_distill_losses_by_hand():
    # one chunk, 4 frames, 1 channel: pred 0,1,3,6 (v 1,2,3; a 1,1) vs target 0,0,0,0
    pred = torch.tensor([0.0, 1.0, 3.0, 6.0]).view(1, 4, 1)
    target = torch.zeros(1, 4, 1)
    t = distill_losses(pred, target, gap_mm=torch.tensor([2.0]))
    assert float(t["rec"]) == pytest.approx((0 + 1 + 9 + 36) / 4)
    assert float(t["vel"]) == pytest.approx((1 + 4 + 9) / 3)
    assert float(t["acc"]) == pytest.approx((1 + 1) / 2)
    assert float(t["lip_gap"]) == pytest.approx((0 + 4 + 36 + 144) / 4)  # (2 mm x error)^2


def test_feature_losses_by_hand():
    # 2 layers, one chunk of 3 frames; teacher all zero
    s1 = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, 0.0]])  # squared norms 1, 5, 0; deltas (0,2), (-1,-2)
    s2 = torch.tensor([[3.0], [3.0], [3.0]])  # 9 each; deltas 0
    t = feature_losses([s1, s2], [torch.zeros_like(s1), torch.zeros_like(s2)], frames=3)
    assert float(t["feat"]) == pytest.approx((1 + 5 + 0) / 3 + 9)
    assert float(t["feat_vel"]) == pytest.approx((4 + 5) / 2 + 0)


def test_lr_schedule_and_config_overrides(tmp_path):
    cfg = load_config(None, ["optim.steps=100", "optim.warmup_steps=10", "optim.lr=0.01",
                             "student.channels=16", 'stage="hybrid"'])
    assert cfg.stage == "hybrid" and cfg.student.channels == 16
    assert lr_at(0, cfg.optim) == pytest.approx(0.001)  # warm-up: lr * 1/10
    assert lr_at(10, cfg.optim) == pytest.approx(0.01)  # cosine starts at the peak
    assert lr_at(100, cfg.optim) == pytest.approx(cfg.optim.min_lr)
    with pytest.raises(ValueError, match="optim.steps"):
        load_config(None, ['optim.steps="many"'])


def test_feature_term_delay_and_ramp():
    assert [feat_scale(s, LossWeights()) for s in (0, 5)] == [1.0, 1.0]  # the paper: on from the start
    w = LossWeights(feat_from_step=3, feat_ramp_steps=4)
    assert [feat_scale(s, w) for s in range(9)] == [0, 0, 0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [feat_scale(s, LossWeights(feat_from_step=2)) for s in range(4)] == [0, 0, 1.0, 1.0]


def test_teacher2_shift_and_checks():
    s64 = StudentConfig(channels=8, future_ms=64.0)
    t256 = StudentConfig(channels=16, future_ms=256.0)
    assert teacher2_shift(s64, t256) == (256 - 64) * 16
    assert teacher2_shift(t256, t256) == 0
    with pytest.raises(ValueError, match="less than"):
        teacher2_shift(t256, s64)
    with pytest.raises(ValueError, match="fc_dims"):
        teacher2_shift(s64, StudentConfig(channels=16, fc_dims=(32, 16)))


def test_sampler_reads_teacher2_window_for_the_same_frame_time():
    rng = np.random.default_rng(0)
    lens = [30000, 20000]
    audio = rng.integers(-30000, 30000, sum(lens)).astype(np.int16)
    labels = [rng.random((n // 320, 3)).astype(np.float32) for n in lens]
    data = PackedSplit(audio, np.array([0, lens[0], sum(lens)]), labels, ["a", "b"], ("x", "y", "z"))
    s, t = StudentConfig(channels=8, future_ms=64.0), StudentConfig(channels=8, future_ms=256.0)
    shift = teacher2_shift(s, t)
    a_both, y_both = ChunkSampler(data, s, 10, seed=3, extra_samples=shift).batch(5, 4)
    a_s, y_s = ChunkSampler(data, s, 10, seed=3).batch(5, 4)
    a_t, y_t = ChunkSampler(data, t, 10, seed=3).batch(5, 4)
    assert torch.equal(a_both[:, : a_s.shape[1]], a_s)  # the student's chunk
    assert torch.equal(a_both[:, shift:], a_t)  # teacher2's own windows, same frames
    assert torch.equal(y_both, y_s) and torch.equal(y_s, y_t)


# -- the real CLI on a tiny corpus ------------------------------------------------------------------
TINY = ["student.channels=16", "student.context_groups=4", "optim.batch_chunks=2", "optim.chunk_frames=8",
        "optim.warmup_steps=2", "val_every=4", "val_utterances=3", "checkpoint_every=1", "threads=1",
        'val_split="test"']  # 6 voices over 3 engines leave no val voice


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    run("corpus", "synth", "--out", root / "corpus", "--hours", "0.012", "--max-voices", "6", "--workers", "2")
    run("label", root / "corpus" / "manifest.jsonl", "--out", root / "labels", "--fps", "50")
    return root


def _train_args(root, out, steps, *extra):
    sets = [*TINY, f"optim.steps={steps}", f'manifest="{root / "corpus" / "manifest.jsonl"}"',
            f'labels="{root / "labels"}"', *extra]
    return ["train", "--out", out, *[x for s in sets for x in ("--set", s)]]


def test_train_kill_and_resume_equals_uninterrupted(corpus):
    straight = corpus / "straight"
    run(*_train_args(corpus, straight, 12))
    hist = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == list(range(1, 13))
    assert all(np.isfinite(h["loss"]) for h in hist) and "val_pbm" in hist[3] and "val_pbm" in hist[-1]
    assert (straight / "training_curves.png").stat().st_size > 1000
    best, ckpt = load_student(straight / "best.pt")
    assert best.cfg.channels == 16 and ckpt["step"] in (4, 8, 12)

    killed = corpus / "killed"
    proc = subprocess.Popen([*CLI, *map(str, _train_args(corpus, killed, 12))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stopped_at = kill_at_step(proc, killed, 5)
    assert 5 <= stopped_at < 12
    refused = run(*_train_args(corpus, killed, 12, "optim.lr=0.01"), check=False)
    assert refused.returncode != 0 and "differs in optim" in refused.stderr
    # the thread count may change on resume (a run started beside other work goes on with all cores)
    resumed = run(*_train_args(corpus, killed, 12, "threads=2"))
    assert "resumed" in resumed.stderr
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(killed / "last.pt")
    assert b["step"] == 12
    # wall time carries over the resume: it never goes back, and the rows before the kill are kept
    rows = [json.loads(line) for line in (killed / "history.jsonl").read_text().splitlines()]
    seconds = [h["train_s"] for h in rows]
    assert len(seconds) == 12 and all(0 < x <= y for x, y in zip(seconds, seconds[1:]))
    assert [h["threads"] for h in rows] == [1] * stopped_at + [2] * (12 - stopped_at)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-4, atol=1e-5)


def test_hybrid_predictive_and_downscaling(corpus):
    teacher2 = corpus / "straight" / "best.pt"
    if not teacher2.exists():
        run(*_train_args(corpus, corpus / "straight", 12))
    before = read_checkpoint(teacher2)["state_dict"]
    out = corpus / "hybrid"
    run(*_train_args(corpus, out, 4, "student.channels=8", "student.future_ms=64.0", "loss.feat=1.0",
                     "loss.feat_vel=0.5", "loss.acc=1.0"), "--stage", "hybrid", "--teacher2", teacher2)
    hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 4 and all(h["feat"] > 0 and h["feat_vel"] > 0 for h in hist)
    h = hist[0]  # the logged loss is the weighted sum of the named terms
    assert h["loss"] == pytest.approx(h["rec"] + h["vel"] + h["feat"] + 0.5 * h["feat_vel"] + h["acc"], rel=1e-5)
    model, ckpt = load_student(out / "best.pt")
    assert model.cfg.channels == 8 and model.cfg.future_ms == 64.0
    assert ckpt["train_config"]["teacher2"] == str(teacher2)
    after = read_checkpoint(teacher2)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # teacher2 stays frozen
    # the feature term delayed by 2 steps, then ramped over 2: steps 1-2 train on the labels alone
    # (teacher2 not run), step 3 at half weight, step 4 at full
    late = corpus / "hybrid-late"
    run(*_train_args(corpus, late, 4, "loss.feat=1.0", "loss.feat_from_step=2", "loss.feat_ramp_steps=2"),
        "--stage", "hybrid", "--teacher2", teacher2)
    hist = [json.loads(line) for line in (late / "history.jsonl").read_text().splitlines()]
    assert ["feat" in h for h in hist] == [False, False, True, True]
    for h, scale in zip(hist, (0.0, 0.0, 0.5, 1.0)):
        assert h["loss"] == pytest.approx(h["rec"] + h["vel"] + scale * h.get("feat", 0.0), rel=1e-5)
    bad = run(*_train_args(corpus, corpus / "bad", 2), "--stage", "hybrid", check=False)
    assert bad.returncode != 0 and "teacher2" in bad.stderr.strip().splitlines()[-1]
    # a shipped model by its name: the config keeps the name (a run folder that survives a moved
    # checkout); an unknown name is refused before training
    named = corpus / "hybrid-named"
    run(*_train_args(corpus, named, 1, "student.channels=8", "loss.feat=1e-3"), "--stage", "hybrid",
        "--teacher2", "c0-4-256ms")
    assert json.loads((named / "config.json").read_text())["teacher2"] == "c0-4-256ms"
    assert len((named / "history.jsonl").read_text().splitlines()) == 1
    missing = run(*_train_args(corpus, corpus / "missing", 1), "--stage", "hybrid", "--teacher2", "no-such-model",
                  check=False)
    assert missing.returncode != 0 and "no-such-model: no such checkpoint or shipped model" in missing.stderr
