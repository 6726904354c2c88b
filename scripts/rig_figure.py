"""A labelled grid of rig poses for docs/rig.md.

    .venv/bin/python scripts/rig_figure.py --out docs/figures/rig_poses.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from distilface.fileio import atomic_path
from distilface.rig.mesh import load_rig
from distilface.rig.render import render_frame

POSES = {
    "rest": {},
    "jawOpen 1": {"jawOpen": 1.0},
    "jawOpen 1 + mouthClose 1": {"jawOpen": 1.0, "mouthClose": 1.0},
    "mouthFunnel 1": {"mouthFunnel": 1.0},
    "mouthPucker 1": {"mouthPucker": 1.0},
    "mouthSmile L+R 1": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0},
    "mouthLowerDown+UpperUp 1": {"mouthLowerDownLeft": 1.0, "mouthLowerDownRight": 1.0,
                                 "mouthUpperUpLeft": 1.0, "mouthUpperUpRight": 1.0},
    "eyeBlink + browInnerUp 1": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0, "browInnerUp": 1.0},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="docs/figures/rig_poses.png")
    p.add_argument("--size", type=int, default=220)
    a = p.parse_args()
    rig = load_rig()
    tiles = []
    for label, pose in POSES.items():
        w = np.zeros(len(rig.names), np.float32)
        for name, value in pose.items():
            w[rig.names.index(name)] = value
        tile = Image.fromarray(render_frame(rig, w, size_px=a.size))
        gap = float(rig.lip_gap_mm(w)[0])
        ImageDraw.Draw(tile).text((6, 6), f"{label}\nlip gap {gap:.1f} mm", fill=(255, 255, 255))
        tiles.append(tile)
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * a.size, rows * a.size))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * a.size, (i // cols) * a.size))
    with atomic_path(Path(a.out)) as tmp:
        sheet.save(tmp, format="PNG")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
