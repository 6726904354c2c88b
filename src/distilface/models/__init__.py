"""Models shipped inside the package: `<name>.pt` checkpoints with a sha256 and a model card.

`MODELS.json` lists them: name -> file, sha256, parameters, card; `default`, the model of
offline work, and `live_default`, the model `stream` runs when given none: live audio needs a short
future context (a live avatar's mouth should follow its sound by well under ~140 ms, and the
default waits 249 ms for its future). `resolve_model` turns a name (or nothing, for a default)
into a verified path; any other argument is taken as a checkpoint path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODELS_DIR = Path(__file__).parent
REGISTRY = MODELS_DIR / "MODELS.json"


def registry() -> dict:
    if not REGISTRY.exists():
        return {"default": None, "models": {}}
    return json.loads(REGISTRY.read_text())


def default_name(live: bool = False) -> str | None:
    """The shipped default's name (`live`: the live default, else the default), None if none ships."""
    reg = registry()
    return (live and reg.get("live_default")) or reg.get("default")


def resolve_model(name_or_path: str | None, live: bool = False) -> Path:
    """Shipped model name (or None for the default, the live default with `live`) -> checked
    path; other values are paths."""
    reg = registry()
    name = name_or_path or default_name(live)
    if name is None:
        raise FileNotFoundError("no shipped default model in this version; pass --model CHECKPOINT")
    if name not in reg["models"]:
        path = Path(name)
        if not path.exists():
            known = ", ".join(reg["models"]) or "none"
            raise FileNotFoundError(f"{name}: no such checkpoint or shipped model (shipped: {known})")
        return path
    entry = reg["models"][name]
    path = MODELS_DIR / entry["file"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{path}: sha256 {digest[:12]}... does not match the registry; reinstall the package")
    return path
