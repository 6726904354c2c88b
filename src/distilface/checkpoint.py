"""Self-describing student checkpoints: the config travels with the weights.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)` (nothing is unpickled), and `load_student` rebuilds the model
without outside knowledge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distilface.fileio import atomic_path
from distilface.student import Student, StudentConfig, build_student

CHECKPOINT_KIND = "distilface-student"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model: Student, **extra: Any) -> None:
    payload = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION,
               "student_config": model.cfg.to_dict(), "state_dict": model.state_dict(), **extra}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path}: not a DistilFace student checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')}, expected {CHECKPOINT_VERSION}")
    return ckpt


def load_student(path: str | Path) -> tuple[Student, dict[str, Any]]:
    """-> (model in eval mode, the whole checkpoint dict); the architecture is the config's `arch`."""
    ckpt = read_checkpoint(path)
    try:
        model = build_student(StudentConfig(**ckpt["student_config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:  # a damaged or hand-edited checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{path}: weights do not match the checkpoint's config ({type(e).__name__}: "
                         f"{first[:200]})") from None
    return model.eval(), ckpt
