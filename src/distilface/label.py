"""`distilface label`: run a teacher over a manifest into versioned label shards.

Layout of a label folder:

    meta.json          version, teacher id + config, fps, channel names, manifest hash, shard size
    shard-00000.npz    ids (N,) str, offsets (N+1,) int64, values (frames, channels) float32

Utterances are sorted by id and cut into shards of `shard_size`; a shard is written atomically
(temp file + rename), so a shard file that exists is complete. A re-run after a kill skips every
existing shard and never reads a half-written one. A folder made from another manifest or
teacher is refused rather than silently mixed. Shard files are byte-reproducible (`write_npz`).

`--shard i/N` (work shards, `distributed.Shard`) labels shard files i, i + N, i + 2N, ... only:
N processes, on one machine or many, fill the same folder, which ends identical to a one-process
run's; shard files made in separate folders are simply copied together.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from distilface.audio import load_audio
from distilface.curves import Curves
from distilface.distributed import Shard
from distilface.fileio import read_json, write_json, write_npz
from distilface.manifest import Utterance, read_manifest, resolve
from distilface.phones import read_phones

LABEL_VERSION = 1
log = logging.getLogger(__name__)


@dataclass
class LabelJob:
    manifest: Path
    out_dir: Path
    teacher: str = "aligned"
    teacher_options: dict[str, Any] | None = None
    fps: float = 30.0
    shard_size: int = 256
    workers: int = 2
    shard: Shard = Shard()  # work shard: label files i, i + N, ... only


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"shard-{index:05d}.npz"


# Each worker process builds its teacher once.
_worker_teacher = None


def _init_worker(teacher: str, options: dict[str, Any]) -> None:
    global _worker_teacher
    from distilface.teacher import build_teacher

    _worker_teacher = build_teacher(teacher, **options)


def _label_shard(args: tuple[Path, Path, int, list[Utterance], float]) -> tuple[int, int]:
    manifest, out_dir, index, utterances, fps = args
    ids, chunks, offsets = [], [], [0]
    for u in utterances:
        audio = load_audio(resolve(manifest, u.audio))
        phones = read_phones(resolve(manifest, u.phones)) if u.phones else None
        curves = _worker_teacher.animate(audio, fps, phones=phones, text=u.text or None, utterance_id=u.id)
        ids.append(u.id)
        chunks.append(curves.values)
        offsets.append(offsets[-1] + curves.num_frames)
    write_npz(shard_path(out_dir, index), {"ids": np.array(ids), "offsets": np.array(offsets, np.int64),
                                           "values": np.concatenate(chunks).astype(np.float32)})
    return index, len(utterances)


def run_labels(job: LabelJob) -> Path:
    """Label every utterance of the manifest; returns the label folder. Resumable."""
    from distilface.teacher import build_teacher

    options = job.teacher_options or {}
    teacher = build_teacher(job.teacher, **options)
    utterances = sorted(read_manifest(job.manifest), key=lambda u: u.id)
    shards = [utterances[i:i + job.shard_size] for i in range(0, len(utterances), job.shard_size)]
    meta = {
        "version": LABEL_VERSION, "teacher_id": teacher.id, "teacher": teacher.config(),
        "fps": job.fps, "names": list(teacher.names), "value_range": list(teacher.value_range),
        "manifest": str(Path(job.manifest).resolve()), "manifest_sha256": _sha256(Path(job.manifest)),
        "shard_size": job.shard_size, "num_shards": len(shards), "num_utterances": len(utterances),
    }
    out = Path(job.out_dir)
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = read_json(meta_path)
        for key in ("version", "teacher_id", "fps", "manifest_sha256", "shard_size"):
            if old.get(key) != meta[key]:
                raise ValueError(f"{out}: existing labels differ in {key} ({old.get(key)!r} vs "
                                 f"{meta[key]!r}); label into a new folder")
    else:
        write_json(meta_path, meta)
    mine = [i for i in range(len(shards)) if job.shard.owns_index(i)]
    pending = [(Path(job.manifest), out, i, shards[i], job.fps) for i in mine if not shard_path(out, i).exists()]
    total = sum(len(shards[i]) for i in mine)
    bar = tqdm(total=total, initial=total - sum(len(p[3]) for p in pending), unit="utt",
               desc=f"label {teacher.id}" + (f" shard {job.shard}" if job.shard.count > 1 else ""))
    if job.workers <= 1:
        _init_worker(job.teacher, options)
        for args in pending:
            bar.update(_label_shard(args)[1])
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(job.workers, _init_worker, (job.teacher, options)) as pool:
            for _, n in pool.imap_unordered(_label_shard, pending):
                bar.update(n)
    bar.close()
    return out


class LabelStore:
    """Read access to a label folder: `store[utt_id] -> Curves`."""

    def __init__(self, label_dir: str | Path) -> None:
        self.dir = Path(label_dir)
        self.meta = read_json(self.dir / "meta.json")
        if self.meta.get("version") != LABEL_VERSION:
            raise ValueError(f"{self.dir}: label version {self.meta.get('version')!r}, expected {LABEL_VERSION}")
        self.fps = float(self.meta["fps"])
        self.names = tuple(self.meta["names"])
        self._where: dict[str, tuple[int, int]] = {}
        for index in range(self.meta["num_shards"]):
            path = shard_path(self.dir, index)
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing shard; re-run `distilface label` to finish")
            with np.load(path, allow_pickle=False) as z:
                for j, utt in enumerate(z["ids"]):
                    self._where[str(utt)] = (index, j)
        self._cache: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._where

    def ids(self) -> list[str]:
        return list(self._where)

    def __getitem__(self, utt_id: str) -> Curves:
        index, j = self._where[utt_id]
        if self._cache is None or self._cache[0] != index:
            with np.load(shard_path(self.dir, index), allow_pickle=False) as z:
                self._cache = (index, {k: z[k] for k in ("offsets", "values")})
        offsets, values = self._cache[1]["offsets"], self._cache[1]["values"]
        return Curves(self.fps, self.names, values[offsets[j]:offsets[j + 1]])

    def items(self) -> Iterator[tuple[str, Curves]]:
        for utt_id in self._where:
            yield utt_id, self[utt_id]
