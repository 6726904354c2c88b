"""Running the pipeline on more than one process: work shards and data-parallel training.

Work shards (`corpus synth --shard i/N`, `label --shard i/N`): N independent processes, e.g. the
tasks of a batch-scheduler array job, each do a fixed, disjoint part of the work into the same
folder. Which part is a pure function of (i, N) and the work item, so any shard can be re-run
after a kill and the folder ends byte-identical to a one-process run (docs/scaling.md).

Data-parallel training (`torchrun --nproc_per_node N -m distilface.cli train ...`): every process
is one rank. All ranks draw the same global batch of a step (batches depend only on (seed, step)),
each trains on its slice, and DistributedDataParallel averages the gradients, so the step equals
the one-process step up to the order of float sums. Rank 0 alone validates and writes files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): `--shard 0/2` and `--shard 1/2` split the work in two."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """"i/N" -> Shard(i, N); None or "" -> the whole work. Raises ValueError on bad input."""
        if not text:
            return cls()
        i, sep, n = text.partition("/")
        try:
            shard = cls(int(i), int(n))
        except ValueError:
            shard = None
        if not sep or shard is None or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/4")
        return shard

    def owns(self, key: str) -> bool:
        """Items named by a key (an utterance id): spread by hash, so shards stay balanced and an
        item keeps its shard when a corpus grows."""
        h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        return h % self.count == self.index

    def owns_index(self, index: int) -> bool:
        """Numbered items of similar size (label shard files): round robin."""
        return index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (every rank passes the same keys in the same order)."""
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[Ranks]:
    """Join the torchrun job this process belongs to for the block (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT from the environment); a plain process is rank 0 of 1 and nothing is
    initialised. Backend: NCCL for `device="cuda"` (each rank on GPU LOCAL_RANK), else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "cuda":
        import torch

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world <= 1:
        yield Ranks(device=device)
        return
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), device)
        # Leave together: a rank that tore its gloo group down while rank 0 was still validating
        # and writing the last checkpoint aborted ("terminate called without an active
        # exception", SIGABRT) in about half of the runs here. Not on error, where a barrier
        # would wait for a rank that is gone.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache file), the others after it, reading it."""
    if not ranks.main:
        ranks.barrier()
    yield
    if ranks.main:
        ranks.barrier()


def chunk_forward(model: Any, ranks: Ranks) -> Callable:
    """`model.forward_chunks`, wrapped in DistributedDataParallel under torchrun (DDP only hooks a
    module's `forward`, so a small module whose forward is `forward_chunks` carries it)."""
    if ranks.world == 1:
        return model.forward_chunks
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
        # Per-rank batch statistics would make the run differ from one process; SyncBatchNorm
        # needs GPUs. The default students use LayerNorm, which has no batch statistics.
        if not ranks.device.startswith("cuda"):
            raise ValueError("norm 'batch' under torchrun needs GPUs (SyncBatchNorm); use norm 'layer'")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    class _Chunks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = model

        def forward(self, audio: torch.Tensor, frames: int) -> dict:
            return self.student.forward_chunks(audio, frames)

    device_ids = [int(ranks.device.split(":")[1])] if ranks.device.startswith("cuda") else None
    return DistributedDataParallel(_Chunks(), device_ids=device_ids)
