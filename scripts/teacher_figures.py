"""Figures of the aligned teacher for docs/: lip trajectory and face frames at /p/ and an open vowel.

    .venv/bin/python scripts/teacher_figures.py MANIFEST LABELS --out docs/figures

Picks the shortest clean test-split utterance that holds a /p/ and an open vowel, plots its
upper/lower lip over time with the phones, and renders the face at the middle of the /p/
closure and at the middle of the longest open vowel, side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from distilface.fileio import atomic_path
from distilface.label import LabelStore
from distilface.manifest import read_manifest, resolve
from distilface.phones import OPEN_VOWELS, read_phones
from distilface.rig.mesh import load_rig
from distilface.rig.render import plot_lip_trajectory, render_frame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest")
    p.add_argument("labels")
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--size", type=int, default=320)
    a = p.parse_args()
    out = Path(a.out)
    store = LabelStore(a.labels)
    rig = load_rig()
    candidates = []
    for u in read_manifest(a.manifest):
        if u.split != "test" or u.augmentation or u.id not in store or u.duration_s > 4.0:
            continue
        phones = read_phones(resolve(a.manifest, u.phones))
        if any(s.phone == "p" for s in phones) and any(s.phone in OPEN_VOWELS for s in phones):
            candidates.append((u.duration_s, u, phones))
    if not candidates:
        raise SystemExit("no short clean test utterance with /p/ and an open vowel")
    _, utt, phones = min(candidates, key=lambda c: c[0])
    curves = store[utt.id]
    plot_lip_trajectory({"aligned teacher": curves}, phones, out / "teacher_lip_trajectory.png",
                        title=f'{utt.id} ({utt.voice}): "{utt.text}"')
    gap = rig.lip_gap_mm(curves)
    p_seg = next(s for s in phones if s.phone == "p")
    vowel = max((s for s in phones if s.phone in OPEN_VOWELS), key=lambda s: s.duration_s)
    panels = []
    for label, seg in ((f"/p/ closure", p_seg), (f"open vowel /{vowel.phone}/", vowel)):
        k = min(int(round(0.5 * (seg.start_s + seg.end_s) * curves.fps)), curves.num_frames - 1)
        image = Image.fromarray(render_frame(rig, curves.values[k], size_px=a.size))
        ImageDraw.Draw(image).text((8, 8), f"{label}  t={k / curves.fps:.2f}s  lip gap {gap[k]:.1f} mm",
                                   fill=(255, 255, 255))
        panels.append(image)
    sheet = Image.new("RGB", (sum(i.width for i in panels), panels[0].height))
    x = 0
    for image in panels:
        sheet.paste(image, (x, 0))
        x += image.width
    with atomic_path(out / "teacher_frames_p_vs_open.png") as tmp:
        sheet.save(tmp, format="PNG")
    print(f"utterance {utt.id}: {utt.text!r}\nwrote {out / 'teacher_lip_trajectory.png'} and "
          f"{out / 'teacher_frames_p_vs_open.png'}")


if __name__ == "__main__":
    main()
