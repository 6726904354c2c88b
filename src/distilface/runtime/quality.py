"""What int8 costs: an ONNX export scored by `distilface eval`'s test sets and metrics beside the
torch student it came from.

`int8_quality` builds eval's test sets (`distilface.evaluate.build_test_set`) and scores both
models on the same utterances against the aligned teacher with eval's own scoring loop: MSE,
PBM, open vowels and jitter, plus the largest and mean difference between the two models' curves.
The ONNX model is streamed as a game would run it, `chunk_s` of audio per push, so int8's
activation ranges are those of a stream (dynamic quantisation computes them per call).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distilface.audio import SAMPLE_RATE_HZ
from distilface.fileio import atomic_write, write_json
from distilface.runtime.streaming import StreamingAnimator, stream_all
from distilface.student import frame_starts

log = logging.getLogger(__name__)

STREAM_CHUNK_S = 0.02  # 20 ms pushes


@dataclass
class _Streamed:
    """`forward_frames` through `StreamingAnimator`, for eval's scoring loop; keeps the difference
    of every frame it makes from `reference` (the torch student) on the same frames."""

    model: Any
    reference: nn.Module
    fps: float
    chunk_s: float
    diffs: list[np.ndarray] = field(default_factory=list)

    @property
    def cfg(self):
        return self.reference.cfg

    def forward_frames(self, audio: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        n = len(starts)
        if not torch.equal(starts, frame_starts(n, self.fps, self.cfg)):
            raise ValueError("int8 quality: frames must be the stream's own (frame_starts at fps)")
        x = audio.numpy()
        # frames past the audio see zeros in forward_frames: append them so the stream has n frames
        need = int((n - 1) * SAMPLE_RATE_HZ / self.fps) + 1 if n else 0
        x = np.pad(x, (0, max(need - len(x), 0)))
        got = stream_all(StreamingAnimator(self.model, self.fps), x, round(self.chunk_s * SAMPLE_RATE_HZ))[:n]
        with torch.inference_mode():
            want = self.reference.forward_frames(audio, starts).numpy()
        self.diffs.append(np.abs(got.astype(np.float64) - want).ravel())
        return torch.from_numpy(np.ascontiguousarray(got))


def int8_quality(student: nn.Module, onnx_path: str | Path, out_dir: str | Path, *,
                 test_sets: tuple[str, ...] = ("clean", "real"), max_utterances: int = 30, fps: float = 30.0,
                 seed: int = 0, corpus: str | Path = "runs/corpus-20h/manifest.jsonl",
                 real: str | Path = "runs/asterisk-en/manifest.jsonl", chunk_s: float = STREAM_CHUNK_S,
                 progress: bool = True) -> dict[str, Any]:
    """Score `student` (torch fp32) and the ONNX export at `onnx_path` on eval's `test_sets`.

    Writes `out_dir/int8.json` and `out_dir/int8.md` (one row per model and set) and eval's lip
    plots; returns the report. A set that cannot be built here is reported as skipped."""
    from distilface.evaluate import SkipSet, _evaluate_set, build_test_set  # eval's own scoring loop
    from distilface.rig.mesh import load_rig
    from distilface.runtime.ort import OrtModel
    from distilface.teacher import build_teacher

    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    onnx_model = OrtModel(onnx_path, threads=1)
    label = f"{'int8' if onnx_model.meta.get('int8') else 'fp32'} onnxruntime ({onnx_model.graph})"
    teacher, rig = build_teacher("aligned"), load_rig()
    report: dict[str, Any] = {"onnx": str(onnx_path), "fps": fps, "chunk_s": chunk_s, "seed": seed,
                              "max_utterances": max_utterances, "models": ["fp32 torch", label], "sets": {}}
    cache: dict = {}
    for name in test_sets:
        streamed = _Streamed(onnx_model, student.eval(), fps, chunk_s)
        try:
            ts = build_test_set(name, corpus=Path(corpus), real=Path(real), cache_dir=out / "eval-cache",
                                max_utterances=max_utterances, seed=seed)
            res = _evaluate_set(ts, {"fp32 torch": student, label: streamed}, teacher, fps, seed,
                                out / "plots", cache, rig, progress)
        except SkipSet as e:
            log.warning("int8 quality: test set %s skipped: %s", name, e)
            report["sets"][name] = {"status": "skipped", "reason": str(e)}
            continue
        d = np.concatenate(streamed.diffs)
        report["sets"][name] = {"status": "ok", "utterances": res["utterances"], "results": res["results"],
                                "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())}
    write_json(out / "int8.json", report)
    with atomic_write(out / "int8.md", "w") as f:
        f.write(format_quality(report))
    return report


def format_quality(report: dict[str, Any]) -> str:
    lines = ["| test set | utts | model | PBM | open-vowel | jitter / teacher | MSE vs teacher | "
             "max / mean abs diff from fp32 |", "|---|---|---|---|---|---|---|---|"]
    for name, s in report["sets"].items():
        if s["status"] != "ok":
            lines.append(f"| {name} | - | skipped: {s['reason']} | | | | | |")
            continue
        for model, r in s["results"].items():
            diff = "-" if model == "fp32 torch" else f"{s['max_abs_diff']:.4f} / {s['mean_abs_diff']:.5f}"
            lines.append(f"| {name} | {s['utterances']} | {model} | {100 * r['pbm_accuracy']:.1f} % "
                         f"({round(r['pbm_accuracy'] * r['pbm_total'])}/{r['pbm_total']}) | "
                         f"{100 * r['open_vowel_accuracy']:.1f} % | {r['jitter_ratio']:.3f} | {r['mse']:.4g} | {diff} |")
    return "\n".join(lines) + "\n"
