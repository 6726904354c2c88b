"""Software rendering of the face rig with numpy + matplotlib (CPU only, no OpenGL).

Orthographic view from the front (optionally turned by `yaw_deg` for a 3/4 look), Lambert
shading with per-vertex normals averaged over each triangle, painter's algorithm (triangles
sorted far to near in one PolyCollection). The canonical mesh fills the mouth opening with
triangles; they are left out and a dark cavity with upper and lower teeth is drawn behind the
inner lip ring instead, so an open mouth reads as open. Eyes get a sclera colour and an iris
clipped to the lid opening, so blinks show.

Public: `render_frame`, `render_animation`, `plot_lip_trajectory`.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon
from matplotlib.path import Path as MplPath
from matplotlib.transforms import blended_transform_factory

from distilface.curves import Curves
from distilface.fileio import atomic_path
from distilface.phones import BILABIALS, OPEN_VOWELS, SILENCE, PhoneSegment
from distilface.rig import blendshapes as bs
from distilface.rig.mesh import LOWER_LIP_MID_VERTEX, UPPER_LIP_MID_VERTEX, FaceRig, load_rig

log = logging.getLogger(__name__)

SKIN_RGB = np.array([0.88, 0.72, 0.62])
LIP_RGB = np.array([0.76, 0.42, 0.42])
SCLERA_RGB = np.array([0.93, 0.92, 0.90])
IRIS_RGB = (0.23, 0.16, 0.11)
CAVITY_RGB = (0.22, 0.05, 0.06)
TEETH_RGB = (0.84, 0.82, 0.76)  # in the mouth's shade
TEETH_EDGE_RGB = (0.55, 0.50, 0.46)
BACKGROUND_RGB = (0.17, 0.18, 0.21)
LIGHT_DIR = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])  # from upper left front
AMBIENT = 0.28
VIEW_MARGIN_MM = 6.0
JAW_ROOM_MM = 16.0  # extra room below the chin: jawOpen=1 drops it ~15 mm
IRIS_RADIUS_MM = 5.5
# Teeth, relative to the rest mid inner lips (mm): upper incisor edge just above the lip line,
# lower teeth hang from the jaw. Half-width covers the canines.
TEETH_HALF_WIDTH_MM = 17.0
TEETH_HEIGHT_MM = 10.0
UPPER_TEETH_EDGE_MM = 3.0  # below the upper lip's rest height (overbite over the lower teeth)
LOWER_TEETH_EDGE_MM = 0.5  # below the lower lip's rest height
TEETH_SET_BACK_MM = 4.0  # behind the lips, so they only show inside the cavity
JAW_CHANNELS = ("jawOpen", "jawForward", "jawLeft", "jawRight")
DPI = 100


@dataclass(frozen=True)
class View:
    size_px: int = 256
    yaw_deg: float = 0.0  # turn of the head to the subject's left (viewer's right)


class _Renderer:
    """One reusable figure; draw() updates its artists in place (~20 ms a frame at 256 px)."""

    def __init__(self, rig: FaceRig, view: View) -> None:
        self.rig, self.view = rig, view
        tri = rig.triangles
        mouth_ring = set(bs.UPPER_INNER_LIP) | set(bs.LOWER_INNER_LIP)
        is_mouth_fill = np.array([set(t) <= mouth_ring for t in tri.tolist()])
        self.tris = tri[~is_mouth_fill]  # (F', 3)
        openings = bs.opening_triangles(self.tris)  # what is left of them: the eyes
        outer_lip = np.array(bs.UPPER_OUTER_LIP + bs.LOWER_OUTER_LIP[::-1])
        lip_region = MplPath(rig.neutral_mm[outer_lip, :2])
        # Points on the outline count as inside; the sign of `radius` that grows the path depends
        # on its winding, so take both.
        inside = lip_region.contains_points(rig.neutral_mm[:, :2], radius=0.5) | lip_region.contains_points(
            rig.neutral_mm[:, :2], radius=-0.5)
        is_lip = inside[self.tris].all(axis=1)
        self.base_rgb = np.where(openings[:, None], SCLERA_RGB, np.where(is_lip[:, None], LIP_RGB, SKIN_RGB))
        self.mouth_ring = np.array(bs.UPPER_INNER_LIP + bs.LOWER_INNER_LIP[-2:0:-1])
        self.eye_rings = [np.array(up + lo[-2:0:-1]) for up, lo in (
            (bs.LEFT_EYE_UPPER, bs.LEFT_EYE_LOWER), (bs.RIGHT_EYE_UPPER, bs.RIGHT_EYE_LOWER))]
        self.jaw_idx = [rig.names.index(n) for n in JAW_CHANNELS if n in rig.names]
        self.center_mm = rig.neutral_mm.mean(axis=0)
        yaw = np.deg2rad(view.yaw_deg)
        self.rot = np.array([[np.cos(yaw), 0.0, np.sin(yaw)], [0.0, 1.0, 0.0], [-np.sin(yaw), 0.0, np.cos(yaw)]])
        xy = self._project(rig.neutral_mm)[:, :2]
        lo, hi = xy.min(axis=0) - VIEW_MARGIN_MM, xy.max(axis=0) + VIEW_MARGIN_MM
        lo[1] -= JAW_ROOM_MM
        half = 0.5 * (hi - lo).max()
        mid = 0.5 * (lo + hi)

        inch = view.size_px / DPI
        self.fig = Figure(figsize=(inch, inch), dpi=DPI, facecolor=BACKGROUND_RGB)
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_facecolor(BACKGROUND_RGB)
        self.cavity = Polygon(np.zeros((3, 2)), closed=True, facecolor=CAVITY_RGB, edgecolor=CAVITY_RGB,
                              linewidth=0.3, zorder=1)
        ax.add_patch(self.cavity)
        # upper teeth over the lower ones (overbite): zorder 2.1 vs 2
        self.teeth = [Polygon(np.zeros((4, 2)), closed=True, facecolor=TEETH_RGB, edgecolor=TEETH_EDGE_RGB,
                              linewidth=0.6, zorder=z) for z in (2.1, 2.0)]
        for t in self.teeth:
            ax.add_patch(t)
            t.set_clip_path(self.cavity)
        self.faces = PolyCollection([], edgecolors="face", linewidths=0.25, antialiaseds=True, zorder=3)
        ax.add_collection(self.faces)
        self.eye_openings = [Polygon(np.zeros((3, 2)), closed=True, facecolor="none", edgecolor="none")
                             for _ in self.eye_rings]
        self.irises = [Circle((0, 0), IRIS_RADIUS_MM, facecolor=IRIS_RGB, edgecolor="none", zorder=4)
                       for _ in self.eye_rings]
        for opening, iris in zip(self.eye_openings, self.irises):
            ax.add_patch(opening)
            ax.add_patch(iris)
            iris.set_clip_path(opening)
        self.ax = ax

    def _project(self, v: np.ndarray) -> np.ndarray:
        return (v - self.center_mm) @ self.rot.T + self.center_mm

    def _teeth(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rest = self.rig.neutral_mm
        jaw_mm = weights[self.jaw_idx] @ self.rig.deltas_mm[self.jaw_idx, LOWER_LIP_MID_VERTEX]  # (3,)
        xs = np.linspace(-TEETH_HALF_WIDTH_MM, TEETH_HALF_WIDTH_MM, 9)
        arch_mm = -0.02 * xs ** 2  # the dental arch curves back
        polys = []
        for vertex, edge_mm, sign, offset in ((UPPER_LIP_MID_VERTEX, UPPER_TEETH_EDGE_MM, 1.0, 0.0),
                                             (LOWER_LIP_MID_VERTEX, LOWER_TEETH_EDGE_MM, -1.0, 1.0)):
            edge_y = rest[vertex, 1] - sign * edge_mm
            z = rest[vertex, 2] - TEETH_SET_BACK_MM + arch_mm
            edge = np.stack([xs, np.full_like(xs, edge_y), z], axis=1)
            root = edge + [0.0, sign * TEETH_HEIGHT_MM, 0.0]
            pts = np.concatenate([edge, root[::-1]]) + offset * jaw_mm
            polys.append(self._project(pts)[:, :2])
        return polys[0], polys[1]

    def draw(self, weights: np.ndarray) -> np.ndarray:
        """weights (C,) -> image (H, W, 3) uint8."""
        v = self._project(self.rig.vertices(weights)[0])  # (V, 3)
        tri_v = v[self.tris]  # (F, 3, 3)
        face_n = np.cross(tri_v[:, 1] - tri_v[:, 0], tri_v[:, 2] - tri_v[:, 0])  # (F, 3)
        vert_n = np.zeros_like(v)
        for k in range(3):
            np.add.at(vert_n, self.tris[:, k], face_n)
        vert_n /= np.maximum(np.linalg.norm(vert_n, axis=1, keepdims=True), 1e-9)
        lambert = np.clip(vert_n @ LIGHT_DIR, 0.0, 1.0)[self.tris].mean(axis=1)  # (F,) Gouraud-ish
        rgb = np.clip(self.base_rgb * (AMBIENT + (1.0 - AMBIENT) * lambert)[:, None], 0.0, 1.0)
        visible = face_n[:, 2] > -1e-6  # back faces only show when the head turns
        order = np.argsort(tri_v[:, :, 2].mean(axis=1))  # far to near
        order = order[visible[order]]
        self.faces.set_verts(tri_v[order, :, :2])
        self.faces.set_facecolor(rgb[order])
        self.faces.set_edgecolor(rgb[order])
        self.cavity.set_xy(v[self.mouth_ring, :2])
        for patch, poly in zip(self.teeth, self._teeth(weights)):
            patch.set_xy(poly)
        for ring, opening, iris in zip(self.eye_rings, self.eye_openings, self.irises):
            opening.set_xy(v[ring, :2])
            iris.center = tuple(v[ring, :2].mean(axis=0))
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()


@functools.lru_cache(maxsize=4)
def _renderer(rig: FaceRig, view: View) -> _Renderer:
    return _Renderer(rig, view)


def render_frame(rig: FaceRig, weights_52: np.ndarray, size_px: int = 256, yaw_deg: float = 0.0) -> np.ndarray:
    """Render one pose. weights_52: (C,) in `rig.names` order -> (size_px, size_px, 3) uint8."""
    w = rig.weights(np.asarray(weights_52, dtype=np.float32))
    if len(w) != 1:
        raise ValueError(f"render_frame takes one pose, got {len(w)}")
    return _renderer(rig, View(int(size_px), float(yaw_deg))).draw(w[0])


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_animation(curves: Curves, out_dir: str | Path, audio_path: str | Path | None = None,
                     fps: float | None = None, size_px: int = 256, max_frames: int | None = None,
                     rig: FaceRig | None = None, yaw_deg: float = 0.0) -> dict[str, Path]:
    """Render curves to out_dir/frames/frame_NNNNN.png, out_dir/animation.gif and, when ffmpeg is on
    PATH, out_dir/animation.mp4 (H.264, with `audio_path` muxed in as AAC when given).

    fps: output frame rate (default: the curves' own); frames are sampled from the curves at the
    nearest curve frame. Returns {"frames": dir, "gif": path, ["mp4": path]}. Every file is
    written atomically; a missing ffmpeg only skips the MP4 (logged).
    """
    from PIL import Image

    rig = rig or load_rig()
    out_dir = Path(out_dir)
    fps = float(fps or curves.fps)
    weights = rig.weights(curves)  # (T, C)
    duration_s = curves.num_frames / curves.fps
    num_frames = max(1, int(round(duration_s * fps)))
    if max_frames is not None:
        num_frames = min(num_frames, max_frames)
    src = np.clip(np.round(np.arange(num_frames) / fps * curves.fps).astype(int), 0, curves.num_frames - 1)

    renderer = _renderer(rig, View(int(size_px), float(yaw_deg)))
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for k, i in enumerate(src):
        image = renderer.draw(weights[i])
        images.append(Image.fromarray(image))
        with atomic_path(frames_dir / f"frame_{k:05d}.png") as tmp:
            tmp.write_bytes(_png_bytes(image))
    paths: dict[str, Path] = {"frames": frames_dir}

    gif = out_dir / "animation.gif"
    with atomic_path(gif) as tmp:
        # GIF timing is in 10 ms ticks, so long animations drift by up to 5 ms a frame.
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000.0 / fps), loop=0)
    paths["gif"] = gif

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        log.info("ffmpeg not on PATH: skipping the MP4")
        return paths
    mp4 = out_dir / "animation.mp4"
    with atomic_path(mp4) as tmp:
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-framerate", f"{fps:g}",
               "-i", str(frames_dir / "frame_%05d.png")]
        if audio_path is not None:
            cmd += ["-i", str(audio_path), "-c:a", "aac", "-b:a", "128k", "-shortest"]
        # yuv420p needs even sizes; players expect it.
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-movflags", "+faststart", str(tmp)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    paths["mp4"] = mp4
    return paths


def plot_lip_trajectory(curves_by_label: dict[str, Curves], phones: list[PhoneSegment] | None,
                        out_png: str | Path, title: str = "", rig: FaceRig | None = None) -> Path:
    """Upper and lower mid inner lip heights over time, one colour per curve set (after Fig. 8 of
    "Tiny is not small enough"): solid = upper lip, dashed = lower lip; the lips are closed where the
    two lines of one colour meet. Heights are mm relative to the rest mouth line (the midpoint of the
    two lips at rest). Phones are written along the bottom; /p b m/ shaded, open vowels tinted.
    """
    rig = rig or load_rig()
    rest_line_mm = 0.5 * (rig.neutral_mm[UPPER_LIP_MID_VERTEX, 1] + rig.neutral_mm[LOWER_LIP_MID_VERTEX, 1])
    fig = Figure(figsize=(10, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for k, (label, curves) in enumerate(curves_by_label.items()):
        c = colors[k % len(colors)]
        t_s = curves.times_s
        ax.plot(t_s, rig.upper_lip_mm(curves)[:, 1] - rest_line_mm, color=c, lw=1.4, label=f"{label} upper lip")
        ax.plot(t_s, rig.lower_lip_mm(curves)[:, 1] - rest_line_mm, color=c, lw=1.4, ls="--",
                label=f"{label} lower lip")
    if phones:
        text_tf = blended_transform_factory(ax.transData, ax.transAxes)
        for seg in phones:
            if seg.phone in BILABIALS:
                ax.axvspan(seg.start_s, seg.end_s, color="tab:red", alpha=0.18, lw=0)
            elif seg.phone in OPEN_VOWELS:
                ax.axvspan(seg.start_s, seg.end_s, color="tab:cyan", alpha=0.08, lw=0)
            if seg.phone != SILENCE:
                ax.axvline(seg.start_s, color="0.85", lw=0.5, zorder=0)
                ax.text(0.5 * (seg.start_s + seg.end_s), 0.02, seg.phone, transform=text_tf, ha="center",
                        va="bottom", fontsize=7, color="darkred" if seg.phone in BILABIALS else "0.25")
        ax.set_ylim(ax.get_ylim()[0] - 3.0, ax.get_ylim()[1])  # room for the phone labels
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("lip height (mm, rest mouth line = 0)")
    if title:
        ax.set_title(title, loc="left")
    # above the axes, so it never hides a curve; one column per source (upper over lower lip),
    # so long model names leave the left-aligned title room
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False,
              ncol=max(1, len(curves_by_label)))
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
