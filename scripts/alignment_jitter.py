"""Why a frame grid lowers jitter: the same student, the same 30 fps frames, with window starts
aligned differently. Used for "On a frame grid" in docs/runtime.md:

    python scripts/alignment_jitter.py c0-4-256ms-ft c0-2-256ms-ft --corpus runs/shift-corpus

Variants of each frame's window start (16 kHz samples):
- exact: `frame_starts` (k / fps, rounded to a sample): its offset modulo 80 changes from frame
  to frame (0, 53, 27, ...);
- grid80, grid80+40: k / fps rounded to a multiple of 80 (plus 40): one offset modulo 80 for all;
- grid80+random: grid80 plus a random offset in [0, 80) per frame: the grid's spacing, exact
  times' varying offsets;
- exact+random: exact plus such a random offset;
- grid320: k / fps rounded to a multiple of 320, the training grid (30 fps frames 20 or 40 ms apart).
Jitter is the metric of `distilface eval` (lower-lip vertex on the face rig, mm/frame^2), summed
over all utterances' frames. The corpus is made with espeak-ng when the folder has no manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.curves import Curves, num_frames
from distilface.manifest import read_manifest, resolve
from distilface.metrics import jitter
from distilface.student import frame_starts

VARIANTS = ("exact", "grid80", "grid80+40", "grid80+random", "exact+random", "grid320")


def variant_starts(n: int, fps: float, cfg, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Window starts of n frames per variant (module doc)."""
    def on(grid: int) -> torch.Tensor:  # as `animate --frame-grid grid` places them
        return frame_starts(n, fps, dataclasses.replace(cfg, frame_grid_samples=grid)).long()

    def noise() -> torch.Tensor:
        return torch.from_numpy(rng.integers(0, 80, n))

    exact, grid80 = on(1), on(80)
    return {"exact": exact, "grid80": grid80, "grid80+40": grid80 + 40, "grid80+random": grid80 + noise(),
            "exact+random": exact + noise(), "grid320": on(320)}


def alignment_jitter(student, audios: list[np.ndarray], fps: float = 30.0, seed: int = 0) -> dict[str, float]:
    """Variant -> jitter (mm/frame^2) over all frames of `audios` (16 kHz)."""
    from distilface.rig.mesh import load_rig

    rig, rng = load_rig(), np.random.default_rng(seed)
    sums = dict.fromkeys(VARIANTS, 0.0)
    count = 0
    for audio in audios:
        n = num_frames(len(audio) / SAMPLE_RATE_HZ, fps)
        if n < 3:
            continue
        x = torch.from_numpy(audio).float()
        for name, starts in variant_starts(n, fps, student.cfg, rng).items():
            with torch.inference_mode():
                values = student.forward_frames(x, starts).numpy()
            sums[name] += jitter(rig.lower_lip_mm(Curves(fps, student.cfg.names, values))) * (n - 2)
        count += n - 2
    return {name: s / count for name, s in sums.items()}


def main() -> None:
    from distilface.checkpoint import load_student
    from distilface.corpus.synth import SynthConfig, synth_corpus
    from distilface.models import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="shipped model names or checkpoints")
    ap.add_argument("--corpus", type=Path, default=Path("runs/shift-corpus"),
                    help="a corpus folder (manifest.jsonl); made with espeak-ng when missing")
    ap.add_argument("--hours", type=float, default=0.05, help="audio to synthesise when the corpus is missing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = args.corpus / "manifest.jsonl"
    if not manifest.exists():
        synth_corpus(SynthConfig(hours=args.hours, max_voices=6, engines=("espeak-ng",), augment_fraction=0.0),
                     args.corpus, workers=2)
    audios = [load_audio(resolve(manifest, u.audio)) for u in read_manifest(manifest)]
    print(f"{len(audios)} utterances, {sum(map(len, audios)) / SAMPLE_RATE_HZ:.1f} s")
    print("| model | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for name in args.models:
        student = load_student(resolve_model(name))[0].eval()
        j = alignment_jitter(student, audios)
        print(f"| {name} | " + " | ".join(f"{j[v]:.4f}" for v in VARIANTS) + " |")


if __name__ == "__main__":
    main()
