"""An exported DistilFace graph in onnxruntime: numpy in, numpy out, no torch.

`OrtModel(path)` loads a file written by `distilface export` and is a `StreamingAnimator` backend
(`distilface.runtime.streaming`): the streaming graph runs `phase_step` with its cache as explicit
state, a windowed graph runs one window per frame. Either way

    StreamingAnimator(OrtModel("model.onnx"), fps=30).push(chunk)

streams exactly like the torch student the file was exported from. Everything the runtime needs
to know about the network (frame geometry, curve names, the smoothing offset) travels in the
file's metadata under `META_KEY`, so this module needs only onnxruntime and numpy.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from distilface.runtime.streaming import Smoothed, StreamGeometry

META_KEY = "distilface"  # ONNX metadata_props key: JSON written by `distilface.runtime.export`
META_VERSION = 1
GRAPHS = ("windowed", "streaming")


class OrtModel:
    """A DistilFace ONNX export run by onnxruntime on the CPU.

    threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores). Raises
    ValueError for a file that is not a DistilFace export of a known version."""

    def __init__(self, path: str | Path, threads: int | None = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, ...)
            detail = str(e).split(":")[-1].strip() or type(e).__name__
            raise ValueError(f"{self.path}: not a readable ONNX model ({detail})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise ValueError(f"{self.path}: not a DistilFace export (no '{META_KEY}' metadata)")
        self.meta = json.loads(meta[META_KEY])
        if self.meta.get("version") != META_VERSION or self.meta.get("graph") not in GRAPHS:
            raise ValueError(f"{self.path}: DistilFace export version {self.meta.get('version')} / graph "
                             f"{self.meta.get('graph')!r}, this runtime reads version {META_VERSION}")
        self.graph: str = self.meta["graph"]
        self.streaming = self.graph == "streaming"
        self.names: tuple[str, ...] = tuple(self.meta["names"])
        self.geometry = StreamGeometry(**{f.name: int(self.meta[f.name]) for f in fields(StreamGeometry)
                                          if f.name in self.meta})  # files before the grid: its defaults

    def __repr__(self) -> str:
        kind = f"{self.graph}, int8" if self.meta.get("int8") else self.graph
        return f"OrtModel({str(self.path)!r}, {kind})"

    def smoothed(self, weights: tuple[float, float, float]) -> Smoothed:
        """This model with ensemble smoothing (the offset the torch student used, from the file)."""
        return Smoothed(self, weights, int(self.meta["smooth_offset_samples"]))

    def phase_step(self, audio: np.ndarray, cache: np.ndarray | None,
                   frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Streaming graph: (L,) new-step audio, (C, S + R) state or None, (F,) window indices ->
        ((F, outputs) frames, (C, S + R) state); see `distilface.runtime.step`."""
        if not self.streaming:
            raise ValueError(f"{self.path}: a windowed graph has no streaming step; export with --streaming")
        g = self.geometry
        if cache is None:
            cache = np.zeros((g.feature_channels, g.state_steps), np.float32)
        out, cache_out = self.session.run(None, {
            "audio": np.ascontiguousarray(audio, np.float32)[None],
            "cache": np.ascontiguousarray(cache, np.float32)[None],
            "frames": np.ascontiguousarray(frames, np.int64)})
        return out, cache_out[0]

    def windows(self, windows: np.ndarray) -> np.ndarray:
        """(N, window_samples) -> (N, outputs): the windowed graph, or the streaming one per window."""
        windows = np.ascontiguousarray(windows, np.float32)
        if self.streaming:  # every window alone: its steps, no cache read
            g = self.geometry
            first = np.zeros(1, np.int64) + g.cache_steps + g.tail_steps
            return np.concatenate([self.phase_step(w[: g.span_samples], None, first)[0] for w in windows])
        return self.session.run(None, {"window": windows})[0]
