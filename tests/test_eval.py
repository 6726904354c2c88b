"""`distilface.evaluate` end to end on a tiny synthetic corpus and a tiny random student."""

import json
import math

import pytest
import torch

from distilface.checkpoint import save_checkpoint
from distilface.corpus.synth import SynthConfig, synth_corpus
from distilface.evaluate import evaluate
from distilface.student import Student, StudentConfig

SETS = ("clean", "noisy10")
MODELS = ("teacher", "tiny")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    manifest = synth_corpus(SynthConfig(hours=0.003, max_voices=3, engines=("espeak-ng",), augment_fraction=0.0),
                            root / "corpus", workers=1)
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pt", Student(StudentConfig(channels=72)))
    out = root / "out"
    rep = evaluate({"teacher": None, "tiny": str(root / "tiny.pt")}, out, test_sets=(*SETS, "real"),
                   max_utterances=5, corpus=manifest, real=root / "missing.jsonl", timing_runs=50,
                   progress=False)
    return rep, out


def _row(rep, model, test_set):
    (row,) = [r for r in rep["rows"] if r["model"] == model and r["test_set"] == test_set]
    return row


def test_teacher_row_is_the_reference(report):
    rep, _ = report
    for s in SETS:
        row = _row(rep, "teacher", s)
        assert row["mse"] == 0.0
        assert row["pbm_accuracy"] == 1.0 and row["pbm_total"] > 0
        assert row["pbm_of_teacher"] == 1.0 and row["jitter_ratio"] == 1.0
    # degraded sets keep the timings: the teacher's curves are its clean labels
    clean, noisy = _row(rep, "teacher", "clean"), _row(rep, "teacher", "noisy10")
    for key in ("pbm_accuracy", "open_vowel_accuracy", "jitter_mm_per_frame2", "frames"):
        assert clean[key] == noisy[key]


def test_student_row_is_finite_and_relative_to_teacher(report):
    rep, _ = report
    for s in SETS:
        row, teacher = _row(rep, "tiny", s), _row(rep, "teacher", s)
        for key in ("mse", "pbm_accuracy", "open_vowel_accuracy", "jitter_mm_per_frame2", "jitter_ratio",
                    "cpu_ms_per_frame_window", "cpu_ms_per_frame_offline", "future_ms", "memory_bytes"):
            assert row[key] is not None and math.isfinite(row[key]), key
        assert row["mse"] > 0 and row["parameters"] > 0 and row["utterances"] == teacher["utterances"] > 0
        assert row["pbm_of_teacher"] == pytest.approx(row["pbm_accuracy"] / teacher["pbm_accuracy"])
        assert row["jitter_ratio"] == pytest.approx(row["jitter_mm_per_frame2"] / teacher["jitter_mm_per_frame2"])
        assert 0 < row["future_ms"] <= 256.0  # measured; valid convolutions leave the last samples unused


def test_files_and_skipped_set(report):
    rep, out = report
    assert json.loads((out / "eval.json").read_text())["rows"] == rep["rows"]
    table = [line for line in (out / "eval.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert sorted((c[1].strip(), c[2].strip()) for c in (line.split("|") for line in table)) == \
        sorted((m, s) for m in MODELS for s in SETS)
    for m in MODELS:
        for s in SETS:
            assert (out / "plots" / f"{m}-{s}.png").stat().st_size > 0
    assert rep["test_sets"]["real"]["status"] == "skipped"
    assert "not found" in rep["test_sets"]["real"]["reason"]


def test_memory_is_info_figure_or_nothing(report, monkeypatch):
    """The MB column is `distilface info`'s params + all intermediates; when info fails it is
    None, never another quantity (a scoring run once printed a lower bound under that name)."""
    import distilface.evaluate as ev
    from distilface.info import MB, model_info

    rep, _ = report
    student = Student(StudentConfig(channels=72)).eval()
    assert _row(rep, "tiny", "clean")["memory_bytes"] == pytest.approx(model_info(student)["memory_mb"] * MB)

    def broken(_model):
        raise RuntimeError("boom")

    monkeypatch.setattr(ev, "model_info", broken)
    d = ev.describe_student(student, fps=30.0, timing_runs=1)
    assert d["memory_bytes"] is None and d["macs_per_frame"] is None
    assert d["parameters"] > 0 and d["future_ms"] > 0
