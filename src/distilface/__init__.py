"""DistilFace: speech-driven facial animation distilled into tiny real-time students.

From Python (the CLI, `distilface --help`, runs the same code):

    import distilface

    model = distilface.load_model()                       # the shipped default; or a shipped name,
                                                          # a checkpoint, an .onnx, .npz or .dfn export
    curves = distilface.animate_file(model, "line.wav")   # any length, format, rate: Curves with .fps,
                                                          # .names (ARKit 52) and .values (frames, 52)
    live = distilface.load_model(live=True)               # the live default: 57 ms of look-ahead, not 249
    stream = distilface.StreamingAnimator(live, fps=30, sample_rate_hz=48000)
    frames = stream.push(chunk)                           # (n, 52): the frames whose future has come
    frames = stream.flush()                               # the rest, at the end of the audio

`import distilface` itself loads nothing heavy: numpy, torch and the C runtime load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model", "animate_file", "StreamingAnimator", "Curves", "shipped_models"]


def load_model(model: str | None = None, *, live: bool = False,
               smooth: bool | tuple[float, float, float] | None = None,
               frame_grid: int | None = None, runtime: str = "auto") -> Any:
    """A model to animate with: `model` is a shipped name (None: the default, or with `live` the
    live default that `distilface stream` runs, whose short look-ahead suits live audio), a
    checkpoint, or a file of `distilface export` (.onnx: onnxruntime; .npz / .dfn: the C runtime,
    no torch). smooth: True
    for ensemble smoothing with the default weights (+16.7 ms of latency), or three weights.
    frame_grid, runtime: as `distilface animate --frame-grid / --runtime` (docs/runtime.md)."""
    from distilface.animate import load_model as _load
    from distilface.models import resolve_model
    from distilface.runtime.streaming import parse_weights

    weights = parse_weights("default" if smooth is True else ",".join(map(str, smooth)) if smooth else None)
    return _load(resolve_model(model, live=live), weights, frame_grid=frame_grid, runtime=runtime)


def shipped_models() -> list[str]:
    """Names `load_model` takes for the models shipped in this package (cards: `distilface info NAME`)."""
    from distilface.models import registry

    return list(registry()["models"])


_LAZY = {"animate_file": "distilface.animate", "StreamingAnimator": "distilface.runtime.streaming",
         "Curves": "distilface.curves"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # imported on first use, so that `import distilface` stays light
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distilface' has no attribute {name!r}")
