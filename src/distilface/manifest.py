"""Corpus manifest: one JSON object per utterance, one utterance per line (`manifest.jsonl`).

Paths are stored relative to the manifest's folder so a corpus can be moved as a whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distilface.fileio import read_jsonl, write_jsonl

MANIFEST_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass
class Utterance:
    id: str
    audio: str  # path relative to the manifest folder
    phones: str | None  # *.phones.tsv relative path, None when no timing is known
    duration_s: float
    voice: str  # voice/speaker id: splits are made on it
    language: str
    source: str  # engine name ("espeak-ng", "festival", ...) or recipe ("asterisk-en")
    split: str
    text: str = ""
    augmentation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def write_manifest(path: str | Path, utterances: list[Utterance]) -> None:
    ids = [u.id for u in utterances]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate utterance ids")
    write_jsonl(path, ({"v": MANIFEST_VERSION, **asdict(u)} for u in utterances))


def read_manifest(path: str | Path) -> list[Utterance]:
    rows = read_jsonl(path)
    out = []
    for i, row in enumerate(rows, 1):
        version = row.pop("v", None)
        if version != MANIFEST_VERSION:
            raise ValueError(f"{path}:{i}: manifest version {version!r}, expected {MANIFEST_VERSION}")
        out.append(Utterance(**row))
    return out


def resolve(manifest_path: str | Path, relative: str) -> Path:
    return Path(manifest_path).resolve().parent / relative
