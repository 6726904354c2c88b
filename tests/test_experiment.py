"""`distilface experiment paper-table --scale smoke` through the real CLI, on a subset of rows that
exercises every mechanism: hetero + fine-tuning (the second teacher), hybrid with down-scaling and
predictive supervision, smoothing, the results table beside the paper's, figures, publishing."""

import json
import subprocess
import sys

import pytest

from distilface.experiment import PAPER_TABLE2, PUBLISH_BEGIN, PUBLISH_END, ROWS

ROW_SUBSET = "teacher,C0 (hetero, fine-tuned),C0/4 hybrid,64 ms hybrid, smoothed"


def test_rows_cover_the_papers_table():
    assert [r.name for r in ROWS] == list(PAPER_TABLE2)
    assert len({r.slug for r in ROWS}) == len(ROWS)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    docs = root / "docs" / "results.md"
    docs.parent.mkdir()
    docs.write_text("# Results\n\nhand-written part\n")
    rows = "teacher,c0-hetero-fine-tuned,c0-4-hybrid,64-ms-hybrid-smoothed"
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "experiment", "paper-table", "--scale", "smoke",
                           "--rows", rows, "--out", str(root / "out"), "--docs", str(docs)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, docs


def test_rows_trained_with_the_right_recipe(smoke):
    root, _ = smoke
    rows = root / "out" / "rows"
    # the smoothed row reuses 64 ms hybrid, which needs the fine-tuned C0 as second teacher
    assert sorted(p.name for p in rows.iterdir()) == ["64-ms-hybrid", "c0-4-hybrid", "c0-hetero-fine-tuned"]
    ft = json.loads((rows / "c0-hetero-fine-tuned" / "finetune" / "config.json").read_text())
    assert ft["stage"] == "finetune" and ft["init"].endswith("c0-hetero-fine-tuned/best.pt")
    h4 = json.loads((rows / "c0-4-hybrid" / "config.json").read_text())
    assert h4["stage"] == "hybrid" and h4["student"]["channels"] == 8 and h4["loss"]["feat"] == 1e-3
    assert h4["teacher2"].endswith("c0-hetero-fine-tuned/finetune/best.pt")
    # the feature term delayed: off for 3/8 of the 3 smoke steps, ramped in over 1/4 (rounded)
    assert (h4["loss"]["feat_from_step"], h4["loss"]["feat_ramp_steps"]) == (1, 1)
    h64 = json.loads((rows / "64-ms-hybrid" / "config.json").read_text())
    assert h64["student"]["future_ms"] == 64.0 and h64["loss"]["vel"] == 9.0
    # training time: the runs' own wall time (over resumes), summed over the four runs
    summary = json.loads((root / "out" / "experiment.json").read_text())
    last = [json.loads(p.read_text().splitlines()[-1])["train_s"] for p in rows.rglob("history.jsonl")]
    assert len(last) == 4 and summary["train_seconds"] == pytest.approx(sum(last))


def test_table_figures_and_publish(smoke):
    root, docs = smoke
    report = json.loads((root / "out" / "eval" / "eval.json").read_text())
    models = {r["model"] for r in report["rows"]}
    assert models == {"teacher", "C0 (hetero, fine-tuned)", "C0/4 hybrid", "64 ms hybrid, smoothed"}
    smoothed = report["models"]["64 ms hybrid, smoothed"]
    assert smoothed["future_ms_config"] == pytest.approx(64 + 267 / 16)
    md = (root / "out" / "results.md").read_text()
    for name in ("C0/4 hybrid", "64 ms hybrid, smoothed"):
        line = next(l for l in md.splitlines() if l.startswith(f"| {name} |"))
        assert str(PAPER_TABLE2[name]["clean"]) in line  # the paper's number beside ours
    not_run = next(l for l in md.splitlines() if l.startswith("Not run in this table: "))
    assert "C0/2 hybrid" in not_run and "C0/4 hybrid" not in not_run and not_run.count(";") == len(ROWS) - 5
    assert (root / "out" / "pbm-vs-memory.png").stat().st_size > 5000
    text = docs.read_text()
    assert text.startswith("# Results\n\nhand-written part") and PUBLISH_BEGIN in text and PUBLISH_END in text
    assert (docs.parent / "figures" / "paper-table-pbm-vs-future.png").exists()


def test_publish_a_second_section_keeps_the_first(smoke, tmp_path):
    """--docs-section: a table of rows trained later sits beside the earlier one; republishing it
    replaces only its own block and figures."""
    from distilface.experiment import _markers, _publish

    root, docs = smoke
    target = tmp_path / "results.md"
    target.write_text(docs.read_text() + "\nhand-written tail\n")
    first = target.read_text()
    _publish(root / "out", target, "c0-width")
    begin, end = _markers("c0-width")
    once = target.read_text()
    assert once.startswith(first.rstrip()) and once.count(begin) == 1 and once.count(end) == 1
    assert "](figures/c0-width-pbm-vs-memory.png)" in once.split(begin)[1]
    assert (tmp_path / "figures" / "c0-width-pbm-vs-future.png").stat().st_size > 5000
    assert not (tmp_path / "figures" / "paper-table-pbm-vs-future.png").exists()
    # a rerun replaces its block in place: the earlier table and the hand-written text stay
    target.write_text(once.replace("hand-written tail", "edited tail"))
    _publish(root / "out", target, "c0-width")
    twice = target.read_text()
    assert twice.count(begin) == 1 and "edited tail" in twice and twice.count(PUBLISH_BEGIN) == 1
    assert twice == once.replace("hand-written tail", "edited tail")


def test_docs_section_name_is_checked(tmp_path):
    from distilface.experiment import run_paper_table

    with pytest.raises(ValueError, match="docs section"):
        run_paper_table(tmp_path / "out", "smoke", docs=tmp_path / "r.md", docs_section="Bad name")
    assert not (tmp_path / "out").exists()


def test_given_second_teacher_and_parallel_jobs(smoke, tmp_path):
    """--teacher2: hybrid rows learn from the given student and the C0 row is not trained;
    --jobs 2 trains the rows in two processes; --steps overrides the scale's."""
    import shutil

    root, _ = smoke
    out = tmp_path / "out"
    shutil.copytree(root / "out" / "data", out / "data")  # the smoke corpus and labels, not rebuilt
    teacher2 = root / "out" / "rows" / "c0-hetero-fine-tuned" / "best.pt"
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "experiment", "paper-table", "--scale", "smoke",
                           "--rows", "c0-4-hetero,c0-4-hybrid", "--teacher2", str(teacher2), "--jobs", "2",
                           "--steps", "4", "--feat-delay", "0.5,0.25", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "rows").iterdir()) == ["c0-4-hetero", "c0-4-hybrid"]
    hybrid = json.loads((out / "rows" / "c0-4-hybrid" / "config.json").read_text())
    assert hybrid["teacher2"] == str(teacher2) and hybrid["optim"]["steps"] == 4
    assert (hybrid["loss"]["feat_from_step"], hybrid["loss"]["feat_ramp_steps"]) == (2, 1)
    for row in ("c0-4-hetero", "c0-4-hybrid"):
        history = (out / "rows" / row / "history.jsonl").read_text().splitlines()
        assert json.loads(history[-1])["step"] == 4
    md = (out / "results.md").read_text()
    assert f"`{teacher2}` (given with --teacher2, not the C0 row)" in md and "4 steps per row" in md
    assert "on cpu, 2 at once" in md
    assert "feature term off for 2 steps, then ramped to full over 1" in md


@pytest.mark.parametrize("value", ["0.5", "0.5,2", "a,b"])
def test_bad_feature_delay_is_refused_before_training(tmp_path, value):
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "experiment", "paper-table", "--feat-delay", value,
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and f"--feat-delay {value!r}: expected OFF,RAMP" in proc.stderr
    assert not (tmp_path / "out").exists()
