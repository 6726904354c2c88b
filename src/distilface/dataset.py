"""Training data for students: packed audio + teacher labels, sampled as chunks of frames.

A chunk is `frames` consecutive label frames of one utterance, one encoder step (20 ms) apart,
with the audio that all their windows cover: the student encodes it once and every frame reuses
the features (see `Student.forward_chunks`). Labels must therefore be made at 50 fps
(`distilface label --fps 50`); evaluation uses any frame rate.

The audio of a split is packed once into `<labels>/pack-<split>.npy` (int16, concatenated) with
an index; the pack is written atomically and keyed by the manifest hash, so it is rebuilt when
the corpus changes and never read half-written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.fileio import atomic_path, read_json, write_json
from distilface.label import LabelStore
from distilface.manifest import Utterance, read_manifest, resolve
from distilface.student import StudentConfig, encoder_stride

TRAIN_FPS = SAMPLE_RATE_HZ / encoder_stride()  # 50 fps: one label per encoder step
PACK_VERSION = 1


@dataclass
class PackedSplit:
    audio: np.ndarray  # (total_samples,) int16, all utterances concatenated
    offsets: np.ndarray  # (N + 1,) sample offsets
    labels: list[np.ndarray]  # N x (frames, channels) float32 at TRAIN_FPS
    ids: list[str]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def utterance_audio(self, i: int) -> np.ndarray:
        return self.audio[self.offsets[i]:self.offsets[i + 1]].astype(np.float32) / 32768.0


def select(manifest: str | Path, split: str, sources: tuple[str, ...] | None = None) -> list[Utterance]:
    return [u for u in read_manifest(manifest)
            if u.split == split and (sources is None or u.source in sources)]


def pack_split(manifest: str | Path, labels_dir: str | Path, split: str,
               sources: tuple[str, ...] | None = None) -> PackedSplit:
    """Load (building on first use) the packed audio and labels of one split."""
    store = LabelStore(labels_dir)
    if abs(store.fps - TRAIN_FPS) > 1e-9:
        raise ValueError(f"{labels_dir}: labels at {store.fps} fps; training needs {TRAIN_FPS:g} fps "
                         f"(distilface label --fps {TRAIN_FPS:g})")
    utts = [u for u in select(manifest, split, sources) if u.id in store]
    if not utts:
        raise ValueError(f"{manifest}: no labelled utterances in split {split!r}")
    key = hashlib.sha256(json.dumps([store.meta["manifest_sha256"], split, sources, PACK_VERSION]).encode()).hexdigest()[:12]
    pack = Path(labels_dir) / f"pack-{split}-{key}.npy"
    index = pack.with_suffix(".json")
    if not (pack.exists() and index.exists()):
        chunks, offsets = [], [0]
        for u in tqdm(utts, desc=f"pack {split}", unit="utt"):
            a = np.clip(load_audio(resolve(manifest, u.audio)) * 32768.0, -32768, 32767).astype(np.int16)
            chunks.append(a)
            offsets.append(offsets[-1] + len(a))
        with atomic_path(pack) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(chunks))
        write_json(index, {"version": PACK_VERSION, "ids": [u.id for u in utts], "offsets": offsets})
    meta = read_json(index)
    audio = np.load(pack, mmap_mode="r")
    labels = [store[i].values for i in meta["ids"]]
    return PackedSplit(audio, np.asarray(meta["offsets"]), labels, meta["ids"], store.names)


class ChunkSampler:
    """Random chunks of `frames` label frames; batch b of a run depends only on (seed, b)."""

    def __init__(self, data: PackedSplit, cfg: StudentConfig, frames: int, seed: int,
                 extra_samples: int = 0) -> None:
        """extra_samples: audio read past the chunk's end (a second teacher with more future)."""
        self.data, self.cfg, self.frames, self.seed = data, cfg, frames, seed
        self.stride = encoder_stride()
        self.chunk_samples = cfg.window_samples + (frames - 1) * self.stride + extra_samples
        lengths = np.array([len(x) for x in data.labels], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # utterances drawn by length

    def batch(self, index: int, size: int, part: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
        """-> audio (rows, chunk_samples), targets (rows, frames, channels); rows = size / parts.

        part (k, parts): slice k of `parts` equal slices of the batch (data-parallel ranks). The
        draws are the whole batch's, so the slices of all ranks together are the one-process batch."""
        k, parts = part
        if size % parts:
            raise ValueError(f"a batch of {size} chunks does not split into {parts} equal parts")
        rng = np.random.default_rng([self.seed, index])
        utts = rng.choice(len(self.data), size=size, p=self.weights)
        first = [int(rng.integers(0, max(len(self.data.labels[u]) - self.frames, 0) + 1)) for u in utts]
        rows = range(k * size // parts, (k + 1) * size // parts)
        audio = np.zeros((len(rows), self.chunk_samples), np.float32)
        targets = np.zeros((len(rows), self.frames, len(self.data.names)), np.float32)
        for b, row in enumerate(rows):
            u, k0 = utts[row], first[row]
            lab = self.data.labels[u]
            n = len(lab)
            k1 = min(k0 + self.frames, n)
            targets[b, : k1 - k0] = lab[k0:k1]
            if k1 - k0 < self.frames:  # short utterance: hold the last label (silence)
                targets[b, k1 - k0:] = lab[k1 - 1]
            start = k0 * self.stride - self.cfg.past_samples  # window of frame k0
            self._copy_audio(u, start, audio[b])
        return torch.from_numpy(audio), torch.from_numpy(targets)

    def _copy_audio(self, u: int, start: int, out: np.ndarray) -> None:
        lo, hi = self.data.offsets[u], self.data.offsets[u + 1]
        src_lo, src_hi = max(start, 0), min(start + len(out), hi - lo)
        if src_hi > src_lo:
            out[src_lo - start: src_hi - start] = self.data.audio[lo + src_lo: lo + src_hi] / 32768.0
