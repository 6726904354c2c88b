"""scripts/bench_runs_figure.py (docs/figures/performance-2026-12-06.png): which numbers of each
`bench runtime` run it draws, that mismatched runs are refused, and that the real script writes
the figure and the combined raw file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scriptload import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_runs_figure.py"


def _module():
    mod = load_script("bench_runs_figure")
    return mod


def _run(models: dict[str, tuple[float, float, float, float]]) -> dict:
    """A bench result with, per model, (fixed, per step, per head, streaming median) in ms."""
    out = []
    for name, (fixed, step, head, median) in models.items():
        cost = [{"runtime": "onnxruntime", "graph": "windowed", "median_ms": 9.0},
                {"runtime": "onnxruntime", "graph": "streaming", "median_ms": median}]
        out.append({"model": name, "cost": cost,
                    "step_split": {"fixed_ms": fixed, "per_step_ms": step, "per_head_ms": head}})
    return {"models": out}


def test_per_model_takes_the_split_and_the_streaming_median_of_each_run():
    runs = [_run({"a": (0.06, 0.03, 0.1, 0.4), "b": (0.1, 0.1, 0.3, 1.0)}),
            _run({"a": (0.07, 0.04, 0.12, 0.5), "b": (0.0, 0.12, 0.3, 0.9)})]
    d = _module().per_model(runs)
    assert list(d) == ["a", "b"]
    assert d["a"]["fixed"] == [0.06, 0.07] and d["a"]["head"] == [0.1, 0.12]
    assert d["a"]["steps"] == pytest.approx([0.15, 0.2])  # five encoder steps per 30 fps frame
    assert d["a"]["streaming"] == [0.4, 0.5] and d["b"]["streaming"] == [1.0, 0.9]  # not the windowed 9.0


def test_runs_of_different_models_are_refused():
    with pytest.raises(ValueError, match="run 2"):
        _module().per_model([_run({"a": (0, 0, 0, 1)}), _run({"b": (0, 0, 0, 1)})])


def test_script_writes_the_figure_and_the_runs_together(tmp_path):
    files = []
    for i, median in enumerate((0.4, 0.6)):
        f = tmp_path / f"run{i}.json"
        f.write_text(json.dumps(_run({"c0-4": (0.06, 0.037, 0.11, median)})))
        files.append(str(f))
    png, raw = tmp_path / "fig" / "perf.png", tmp_path / "all.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *files, "--out", str(png), "--json", str(raw)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    both = json.loads(raw.read_text())
    assert both["files"] == ["run0.json", "run1.json"]
    assert [r["models"][0]["cost"][1]["median_ms"] for r in both["runs"]] == [0.4, 0.6]
