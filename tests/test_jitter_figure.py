"""scripts/jitter_figure.py (docs/figures/jitter-64ms.png): which eval rows become points, with
which values and labels, and that the real script draws the figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scriptload import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "jitter_figure.py"


def _eval_dir(path: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    path.mkdir()
    report = {"rows": [{"model": m, "test_set": s, "jitter_ratio": j, "pbm_of_teacher": p} for m, s, j, p in rows]}
    (path / "eval.json").write_text(json.dumps(report))
    return path


@pytest.fixture
def evals(tmp_path):
    a = _eval_dir(tmp_path / "eval-a", [("teacher", "clean", 1.0, 1.0), ("S", "clean", 1.5, 0.75),
                                        ("S", "real", 1.2, 0.4), ("S smoothed", "clean", 1.1, 0.7)])
    b = _eval_dir(tmp_path / "eval-b", [("S", "clean", 1.25, 0.8)])
    return a, b


def test_points_keep_the_set_rename_and_drop(evals):
    mod = load_script("jitter_figure")
    a, b = evals
    # the teacher and the real-set row are left out; PBM becomes percent
    assert mod.points([a, b], "clean", {}) == [("S", 1.5, 75.0), ("S smoothed", 1.1, 70.0), ("S", 1.25, 80.0)]
    # FOLDER:MODEL wins over MODEL; an empty label drops the point
    labels = {"eval-b:S": "S in b", "S": "S in a", "S smoothed": ""}
    assert mod.points([a, b], "clean", labels) == [("S in a", 1.5, 75.0), ("S in b", 1.25, 80.0)]
    assert mod.points([a], "real", {}) == [("S", 1.2, 40.0)]


def test_script_draws_the_figure(evals, tmp_path):
    out = tmp_path / "fig" / "jitter.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, evals), "--set", "clean", "--target", "1.2",
                           "--rename", "eval-b:S=", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000
