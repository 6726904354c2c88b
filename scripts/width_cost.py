"""What a narrower student of the same architecture would cost per streaming frame, before training
one: the cost of a call does not depend on the weights, so an untrained student of each width
is exported and its streaming call split (`distilface.runtime.bench.fit_step_cost`), in
onnxruntime or in the C step (`--runtime native`, distilface.runtime.native).
Used for "Width alone" in docs/performance.md:

    python scripts/width_cost.py c0-4-256ms-ft --channels 72,36,18
    python scripts/width_cost.py c0-4-256ms-ft --channels 72,36,18 --frame-grid 80   # one dense sequence
    python scripts/width_cost.py c0-4-256ms-ft --channels 72,36,18 --frame-grid 80 --runtime native
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from distilface.checkpoint import load_student
from distilface.models import resolve_model
from distilface.runtime.bench import fit_step_cost, ort_step_timer, steps_per_frame
from distilface.runtime.export import export_model
from distilface.runtime.native import NativeModel
from distilface.runtime.ort import OrtModel
from distilface.student import build_student, narrower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped model name or a checkpoint: its architecture is kept")
    ap.add_argument("--channels", default="72,36,18", help="comma-separated widths")
    ap.add_argument("--calls", type=int, default=150, help="timed calls per grid point")
    ap.add_argument("--frame-grid", type=int, default=1, metavar="N",
                    help="frame times on a grid of N samples (StudentConfig.frame_grid_samples; 1: exact)")
    ap.add_argument("--runtime", choices=("onnxruntime", "native"), default="onnxruntime",
                    help="onnxruntime streaming graph, or the C step")
    args = ap.parse_args()
    student, _ = load_student(resolve_model(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        for ch in (int(c) for c in args.channels.split(",")):
            torch.manual_seed(0)
            cfg = dataclasses.replace(narrower(student.cfg, ch), frame_grid_samples=args.frame_grid)
            s = build_student(cfg).eval()
            if args.runtime == "native":
                m = NativeModel.from_student(s)
            else:
                path = Path(tmp) / f"w{ch}.onnx"
                export_model(s, path, streaming=True)
                m = OrtModel(path, threads=1)
            sp = fit_step_cost(ort_step_timer(m, calls=args.calls), frame_steps=steps_per_frame(m.geometry))
            us = {k[:-3] + "_us": round(1000 * v, 1) for k, v in sp.items() if k.endswith("_ms")}
            print(f"{args.runtime}: channels {ch} (context groups {cfg.context_groups}, grid {args.frame_grid}, "
                  f"{sum(p.numel() for p in s.parameters()):,} parameters): {us}")


if __name__ == "__main__":
    main()
