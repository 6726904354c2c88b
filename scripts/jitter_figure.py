"""PBM against jitter of students scored by `distilface eval`: one point per (model, test set).

Reads the eval.json of each folder given, keeps the rows of the named test set, and draws PBM (% of
the teacher's) against jitter / teacher's, with the target line. Used for docs/figures/jitter-64ms.png:

    python scripts/jitter_figure.py runs/eval-64ms runs/eval-64ms-temporal runs/eval-64ms-temporal2 \
        --set clean --target 1.2 --out docs/figures/jitter-64ms.png [--rename [FOLDER:]MODEL=LABEL ...]
(docs/results.md gives the exact command of the committed figure)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def points(eval_dirs: list[Path], test_set: str, labels: dict[str, str]) -> list[tuple[str, float, float]]:
    """(label, jitter ratio, PBM % of teacher) of every student row of `test_set`; a model's label is
    labels["FOLDER:MODEL"], else labels["MODEL"], else its name; an empty label drops the row."""
    out = []
    for d in eval_dirs:
        report = json.loads((d / "eval.json").read_text())
        for row in report["rows"]:
            if row["test_set"] == test_set and row["model"] != "teacher":
                name = row["model"]
                label = labels.get(f"{d.name}:{name}", labels.get(name, name))
                if label:
                    out.append((label, row["jitter_ratio"], 100 * row["pbm_of_teacher"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("eval_dirs", nargs="+", type=Path)
    p.add_argument("--set", default="clean")
    p.add_argument("--target", type=float, default=None, help="jitter ratio target (vertical line)")
    p.add_argument("--rename", action="append", default=[], metavar="[FOLDER:]MODEL=LABEL",
                   help="label a model's point (in one eval folder) differently; an empty LABEL drops it")
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    pts = points(a.eval_dirs, a.set, dict(r.split("=", 1) for r in a.rename))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, jitter, pbm in pts:
        smoothed = "smoothed" in name
        ax.plot(jitter, pbm, "s" if smoothed else "o", color="tab:orange" if smoothed else "tab:blue")
        ax.annotate(name, (jitter, pbm), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if a.target:
        ax.axvline(a.target, color="tab:red", ls="--", lw=1, label=f"target: {a.target:g}x the teacher's jitter")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("jitter / teacher's (mean lip acceleration)")
    ax.set_ylabel("PBM, % of the teacher's")
    ax.set_title(f"PBM vs jitter ({a.set} test set; squares: 60 fps ensemble smoothing, +16.7 ms)")
    ax.grid(alpha=0.3)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
