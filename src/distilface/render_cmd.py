"""`distilface render`: curves + audio -> face frames, GIF/MP4 and the lip-trajectory plot."""

from __future__ import annotations

from pathlib import Path

from distilface.curves import load_curves
from distilface.phones import read_phones

# render decodes the clip whole to check it and draws one PNG per frame (54,000 for 30 min at 30 fps)
RENDER_MAX_S = 1800.0


def render_command(curves_path: str | Path, audio_path: str | Path, out_dir: str | Path, *,
                   phones: str | Path | None = None, max_frames: int | None = None,
                   size_px: int = 256) -> dict[str, Path]:
    from distilface.audio import load_audio
    from distilface.rig.render import plot_lip_trajectory, render_animation

    out = Path(out_dir)
    curves = load_curves(curves_path)
    load_audio(audio_path, max_s=RENDER_MAX_S)  # fail early, with the file named, on unreadable or huge audio
    segments = read_phones(phones) if phones else None
    paths = dict(render_animation(curves, out, audio_path=audio_path, size_px=size_px, max_frames=max_frames))
    plot = out / "lip_trajectory.png"
    plot_lip_trajectory({Path(curves_path).stem: curves}, segments, plot, title=Path(audio_path).name)
    paths["lip_trajectory"] = plot
    return paths
