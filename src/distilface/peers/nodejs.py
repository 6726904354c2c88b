"""Running the Node drivers in `peers/node/` (npm peers): availability and one batch call.

`scripts/setup.sh` installs Node.js and runs `npm ci` in NODE_DIR (exact versions from
`package-lock.json`). A driver reads audio files and prints one JSON line per file; see the
header of each `.mjs`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_TIMEOUT_S = 600.0  # one batch of files


def node_binary() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def installed_version(package: str) -> str | None:
    path = NODE_DIR / "node_modules" / package / "package.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["version"]


def unavailable(package: str) -> str | None:
    """Why `package` cannot run here (None when it can)."""
    if node_binary() is None:
        return "Node.js not found (scripts/setup.sh installs it)"
    if installed_version(package) is None:
        return f"npm package {package} not installed: run `npm ci` in {NODE_DIR} (scripts/setup.sh does)"
    return None


def run_driver(script: str, audios: list[np.ndarray], rate_hz: int, fps: float) -> list[dict]:
    """Run `node NODE_DIR/script --rate rate_hz --fps fps FILE...` on raw float32 files of `audios`.

    Returns the drivers' JSON objects in input order. Raises RuntimeError with the driver's
    stderr when it fails."""
    node = node_binary()
    if node is None:
        raise RuntimeError("Node.js not found")
    with tempfile.TemporaryDirectory(prefix="distilface-peers-") as tmp:
        files = []
        for i, audio in enumerate(audios):
            path = Path(tmp) / f"{i:05d}.f32"
            np.asarray(audio, dtype="<f4").tofile(path)
            files.append(str(path))
        cmd = [node, str(NODE_DIR / script), "--rate", str(rate_hz), "--fps", f"{fps:g}", *files]
        proc = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"{script} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if [r["file"] for r in results] != files:
        raise RuntimeError(f"{script}: printed {len(results)} results for {len(files)} files")
    return results
