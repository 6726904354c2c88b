"""Put a trained student into the package: weights + config only, sha256, registry entry.

    .venv/bin/python scripts/ship_model.py --name NAME --checkpoint runs/RUN/best.pt \
        --card src/distilface/models/NAME.md [--default] [--live-default]

The shipped file keeps what rebuilds and describes the model (student config, weights, the
training step and validation scores, the training config) and drops the optimizer state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from distilface.checkpoint import load_student, save_checkpoint
from distilface.fileio import write_json
from distilface.models import MODELS_DIR, REGISTRY, registry
from distilface.student import count_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--card", required=True, help="model card (markdown) already written")
    p.add_argument("--default", action="store_true")
    p.add_argument("--live-default", action="store_true", help="the model `stream` runs when given none")
    a = p.parse_args()
    model, ckpt = load_student(a.checkpoint)
    target = MODELS_DIR / f"{a.name}.pt"
    save_checkpoint(target, model, step=ckpt.get("step"), best=ckpt.get("best"),
                    train_config=ckpt.get("train_config"))
    load_student(target)  # loads back with weights_only=True
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    card = Path(a.card)
    if not card.exists():
        raise SystemExit(f"{card}: write the model card first")
    reg = registry()
    reg["models"][a.name] = {"file": target.name, "sha256": digest, "parameters": count_parameters(model),
                             "bytes": target.stat().st_size, "card": card.name,
                             "future_ms": model.cfg.future_ms, "channels": model.cfg.channels}
    if a.default or not reg.get("default"):
        reg["default"] = a.name
    if a.live_default:
        reg["live_default"] = a.name
    write_json(REGISTRY, reg)
    print(json.dumps(reg["models"][a.name], indent=2))


if __name__ == "__main__":
    main()
