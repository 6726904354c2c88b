"""Several `distilface bench runtime` runs of the same models in one figure, and their raw results in
one file: how far the runs agree on a shared, noisy machine.

Per model, a bar stacked from the streaming call's cost split (fixed, 5 encoder steps, 1 head
pass: the fastest-repeat fit of each run, averaged over runs) and one dot per run for the median
ms per 30 fps frame that `StreamingAnimator` measured in onnxruntime (the call plus the
animator's own Python). Used for docs/figures/performance-2026-12-06.png:

    python scripts/bench_runs_figure.py runs/perf/perf-v3-idle.json runs/perf/perf-v4-idle.json \
        runs/perf/perf-v5-idle.json --out docs/figures/performance-2026-12-06.png \
        --json docs/performance-2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from distilface.fileio import write_json  # noqa: E402
from distilface.runtime.bench import save_figure  # noqa: E402


def per_model(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """model -> {"fixed", "steps", "head", "streaming"}: one value (ms) per run, in run order.
    Raises ValueError when the runs did not bench the same models."""
    names = [m["model"] for m in runs[0]["models"]]
    out: dict[str, dict[str, list[float]]] = {n: {"fixed": [], "steps": [], "head": [], "streaming": []} for n in names}
    for i, run in enumerate(runs):
        if [m["model"] for m in run["models"]] != names:
            raise ValueError(f"run {i + 1} benched {[m['model'] for m in run['models']]}, run 1 {names}")
        for m in run["models"]:
            sp, d = m["step_split"], out[m["model"]]
            d["fixed"].append(sp["fixed_ms"])
            d["steps"].append(5 * sp["per_step_ms"])
            d["head"].append(sp["per_head_ms"])
            d["streaming"].append(next(c["median_ms"] for c in m["cost"]
                                       if (c["runtime"], c["graph"]) == ("onnxruntime", "streaming")))
    return out


def draw(runs: list[dict], out: Path) -> Path:
    data = per_model(runs)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(len(data))
    bottom = np.zeros(len(data))
    for part, color, label in (("fixed", "#bbbbbb", "fixed"), ("steps", "#4c72b0", "5 encoder steps"),
                               ("head", "#dd8452", "1 head pass")):
        h = np.array([1000 * np.mean(d[part]) for d in data.values()])
        ax.bar(x, h, 0.55, bottom=bottom, color=color, label=f"{label} (split, mean of runs)")
        bottom += h
    for i, d in enumerate(data.values()):
        ys = 1000 * np.array(d["streaming"])
        ax.scatter(np.full(len(ys), i + 0.36), ys, color="k", s=14, zorder=3,
                   label="StreamingAnimator median, one dot per run" if i == 0 else None)
    ax.axhline(100, color="r", ls="--", lw=1, label="issue 5 target for C0/4 (100 us)")
    ax.set_xticks(x, list(data), fontsize=8)
    ax.set_ylabel("us per 30 fps frame, one thread")
    ax.set_title(f"onnxruntime streaming, {len(runs)} runs of `bench runtime`")
    top = max(bottom.max(), max(1000 * max(d["streaming"]) for d in data.values()))
    ax.set_ylim(0, 1.4 * top)  # room for the legend above the bars and dots
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help=".json files written by `distilface bench runtime`")
    ap.add_argument("--out", type=Path, required=True, help="figure (.png)")
    ap.add_argument("--json", type=Path, default=None, help="also write the runs together here")
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.runs]
    print(draw(runs, args.out))
    if args.json:
        write_json(args.json, {"runs": runs, "files": [p.name for p in args.runs]})
        print(args.json)


if __name__ == "__main__":
    main()
