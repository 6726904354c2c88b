"""Animation curves: frames x named channels at a frame rate, and their file formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilface.fileio import atomic_path, read_json, write_json


@dataclass
class Curves:
    fps: float
    names: tuple[str, ...]
    values: np.ndarray  # (frames, channels) float32

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(f"curves: values {self.values.shape} do not match {len(self.names)} names")
        if not self.fps > 0:
            raise ValueError(f"curves: fps must be positive, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return self.values.shape[0]

    @property
    def times_s(self) -> np.ndarray:
        """Time of each frame in seconds (frame k samples time k / fps)."""
        return np.arange(self.num_frames) / self.fps

    def channel(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def select(self, names: tuple[str, ...] | list[str]) -> "Curves":
        idx = [self.names.index(n) for n in names]
        return Curves(self.fps, tuple(names), self.values[:, idx])

    def to_json_dict(self) -> dict:
        return {"fps": self.fps, "names": list(self.names),
                "frames": np.round(self.values.astype(np.float64), 6).tolist()}

    @classmethod
    def from_json_dict(cls, d: dict) -> "Curves":
        return cls(float(d["fps"]), tuple(d["names"]), np.asarray(d["frames"], dtype=np.float32).reshape(-1, len(d["names"])))


def save_curves(path: str | Path, curves: Curves) -> None:
    """Write curves as .json ({"fps", "names", "frames"}) or .npz, by extension."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        save_curves_npz(path, curves)
    elif path.suffix.lower() == ".json":
        write_json(path, curves.to_json_dict())
    else:
        raise ValueError(f"{path}: unsupported curve format {path.suffix!r} (use .json or .npz)")


def save_curves_npz(path: str | Path, curves: Curves) -> None:
    """Curves as an .npz archive (fps, names, values) at `path`, whatever its extension."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, fps=np.float64(curves.fps), names=np.array(curves.names), values=curves.values)


def load_curves(path: str | Path) -> Curves:
    path = Path(path)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:  # never unpickle: a file may carry code
                return Curves(float(z["fps"]), tuple(str(n) for n in z["names"]), z["values"])
        except (ValueError, KeyError, OSError, EOFError) as e:  # pickled objects, missing arrays, not a zip
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a curves file ({type(e).__name__}: {e})") from None
    if path.suffix.lower() == ".json":
        return Curves.from_json_dict(read_json(path))
    raise ValueError(f"{path}: unsupported curve format {path.suffix!r} (use .json or .npz)")


def num_frames(duration_s: float, fps: float) -> int:
    """Frames covering `duration_s`: frame k shows time k / fps, for every k / fps < duration_s."""
    import math

    return max(int(math.ceil(duration_s * fps - 1e-9)), 0)
