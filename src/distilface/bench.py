"""`distilface bench train`: training throughput, shared-encoder chunks vs naive per-window training.

Both modes train on the same batches (`batch_chunks` chunks of `chunk_frames` frames one encoder
step apart, the shape `ChunkSampler` makes) with the same losses, gradient clipping and AdamW step:

- shared: `train.train_step`, the encoder runs once per chunk (`Student.forward_chunks`);
- naive: each frame's window (window_samples) is cut out and run through `model(windows)` on its
  own, the way a per-window trainer would do it. To bound memory the windows go through in
  micro-batches of whole chunks with gradient accumulation; the losses are means over equal-sized
  micro-batches, so the gradient is that of the whole batch.

Throughput is seconds of audio trained per second: frames per step / TRAIN_FPS over the median step
time after warm-up. Steps of the two modes are interleaved so that load from other processes hits
both alike; the ratio of the medians is the speed-up.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch

from distilface.dataset import TRAIN_FPS
from distilface.student import Student, StudentConfig, count_parameters, encoder_stride
from distilface.train import OptimConfig, TrainConfig, distill_losses, train_step

log = logging.getLogger(__name__)

AUDIO_RMS = 0.05  # about -26 dBFS, a typical level of normalised speech


def synthetic_batch(cfg: StudentConfig, batch_chunks: int, chunk_frames: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random audio shaped like `ChunkSampler.batch`: (B, chunk_samples) noise at speech level with a
    syllable-rate envelope (loud and near-silent stretches), targets (B, F, outputs) in [0, 1]."""
    samples = cfg.window_samples + (chunk_frames - 1) * encoder_stride()
    noise = torch.randn(batch_chunks, samples, generator=generator)
    t = torch.arange(samples) / 16000.0
    phase = torch.rand(batch_chunks, 1, generator=generator) * 6.3
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 4.0 * t + phase))  # 4 Hz, 0..1
    audio = AUDIO_RMS * 2**0.5 * envelope * noise
    target = torch.rand(batch_chunks, chunk_frames, len(cfg.names), generator=generator)
    return audio, target


def chunk_windows(audio: torch.Tensor, cfg: StudentConfig, chunk_frames: int) -> torch.Tensor:
    """(B, chunk_samples) -> (B * F, window_samples): frame j of a chunk starts at sample j * stride."""
    wins = audio.unfold(1, cfg.window_samples, encoder_stride())[:, :chunk_frames]  # (B, F, W)
    return wins.reshape(-1, cfg.window_samples)


def naive_train_step(model: Student, opt: torch.optim.Optimizer, audio: torch.Tensor, target: torch.Tensor,
                     cfg: TrainConfig, micro_chunks: int = 4) -> dict[str, float]:
    """`train_step` with every window evaluated on its own (no shared encoder)."""
    model.train()
    b, f, _ = target.shape
    opt.zero_grad(set_to_none=True)
    parts = range(0, b, micro_chunks)
    total = 0.0
    for i in parts:
        a, t = audio[i:i + micro_chunks], target[i:i + micro_chunks]
        pred = model(chunk_windows(a, model.cfg, f)).view(len(a), f, -1)
        terms = distill_losses(pred, t)
        loss = sum(getattr(cfg.loss, k) * v for k, v in terms.items()) * (len(a) / b)
        loss.backward()
        total += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    opt.step()
    return {"loss": total}


def _batches(cfg: StudentConfig, batch_chunks: int, chunk_frames: int, seed: int,
             manifest: str | None, labels: str | None, split: str):
    """Endless (audio, target) batches: real chunks when a labelled corpus is given, else synthetic."""
    if labels:
        from distilface.dataset import ChunkSampler, pack_split

        data = pack_split(manifest, labels, split)
        if tuple(data.names) != tuple(cfg.names):
            raise ValueError(f"{labels}: labels have {len(data.names)} channels, the student {len(cfg.names)}")
        sampler = ChunkSampler(data, cfg, chunk_frames, seed)
        i = 0
        while True:
            yield sampler.batch(i, batch_chunks)
            i += 1
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield synthetic_batch(cfg, batch_chunks, chunk_frames, gen)


def bench_train(widths: tuple[int, ...] = (288, 144, 72), seconds: float = 60.0, min_steps: int = 3,
                warmup_steps: int = 1, batch_chunks: int = 16, chunk_frames: int = 32, threads: int = 2,
                micro_chunks: int = 4, shared_per_round: int = 2, manifest: str | None = None,
                labels: str | None = None, split: str = "train", seed: int = 0,
                student: dict | None = None) -> dict:
    """Training throughput per width, shared-encoder chunks vs naive per-window (see module doc).

    seconds: time budget per width after warm-up; each width runs at least `min_steps` rounds of
    `shared_per_round` shared steps + 1 naive step. student: other StudentConfig fields.
    Returns {"settings": {...}, "rows": [{"channels", "params", "shared_step_s", "naive_step_s",
    "shared_audio_s_per_s", "naive_audio_s_per_s", "speedup", ...}]}. Sets and restores the torch
    thread count; flushes denormals (as `train` does)."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    frames_per_step = batch_chunks * chunk_frames
    audio_s_per_step = frames_per_step / TRAIN_FPS
    rows = []
    try:
        for width in widths:
            torch.manual_seed(seed)
            scfg = StudentConfig(channels=width, **(student or {}))
            tcfg = TrainConfig(student=scfg, optim=OptimConfig(batch_chunks=batch_chunks, chunk_frames=chunk_frames))
            model = Student(scfg)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            batches = _batches(scfg, batch_chunks, chunk_frames, seed, manifest, labels, split)
            times: dict[str, list[float]] = {"shared": [], "naive": []}

            def timed(mode: str, record: bool) -> None:
                audio, target = next(batches)
                t0 = time.perf_counter()
                if mode == "shared":
                    train_step(model, opt, audio, target, tcfg)
                else:
                    naive_train_step(model, opt, audio, target, tcfg, micro_chunks)
                if record:
                    times[mode].append(time.perf_counter() - t0)

            for _ in range(warmup_steps):
                timed("shared", False)
                timed("naive", False)
            t_start = time.perf_counter()
            rounds = 0
            while rounds < min_steps or time.perf_counter() - t_start < seconds:
                for _ in range(shared_per_round):
                    timed("shared", True)
                timed("naive", True)
                rounds += 1
            shared, naive = statistics.median(times["shared"]), statistics.median(times["naive"])
            row = {"channels": width, "params": count_parameters(model),
                   "shared_steps": len(times["shared"]), "naive_steps": len(times["naive"]),
                   "shared_step_s": shared, "naive_step_s": naive,
                   "shared_audio_s_per_s": audio_s_per_step / shared, "naive_audio_s_per_s": audio_s_per_step / naive,
                   "speedup": naive / shared}
            log.info("C=%d: shared %.2f s/step, naive %.2f s/step, x%.1f", width, shared, naive, row["speedup"])
            rows.append(row)
    finally:
        torch.set_num_threads(old_threads)
    settings = {"batch_chunks": batch_chunks, "chunk_frames": chunk_frames, "frames_per_step": frames_per_step,
                "audio_s_per_step": audio_s_per_step, "threads": threads, "micro_chunks": micro_chunks,
                "data": f"{labels} ({split})" if labels else "synthetic noise at speech level",
                "torch": torch.__version__}
    return {"settings": settings, "rows": rows}


def format_bench(result: dict) -> str:
    """Markdown table of `bench_train`."""
    s = result["settings"]
    names = {288: "C0", 144: "C0/2", 72: "C0/4"}
    lines = [
        f"Training throughput, {s['threads']} threads, {s['batch_chunks']} chunks x {s['chunk_frames']} frames "
        f"= {s['audio_s_per_step']:g} s of audio per step, {s['data']}; medians after warm-up.",
        "",
        "| student | channels | params | shared s/step | naive s/step | shared audio s/s | naive audio s/s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {names.get(r['channels'], '-')} | {r['channels']} | {r['params'] / 1e6:.2f} M | {r['shared_step_s']:.3f} "
            f"| {r['naive_step_s']:.3f} | {r['shared_audio_s_per_s']:.1f} | {r['naive_audio_s_per_s']:.2f} "
            f"| {r['speedup']:.1f}x |")
    return "\n".join(lines)


def write_bench(result: dict, out: str | Path) -> tuple[Path, Path]:
    """-> (<out>.json, <out>.md)."""
    from distilface.fileio import write_json
    from distilface.fileio import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    write_json(js, result)
    with atomic_path(md) as tmp:
        Path(tmp).write_text(format_bench(result) + "\n")
    return js, md
