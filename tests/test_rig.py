"""Value tests for the face rig (rig2mesh) and its renderer."""

import numpy as np
import pytest

from distilface.curves import Curves
from distilface.phones import PhoneSegment
from distilface.rig.arkit import ARKIT_52
from distilface.rig.mesh import LOWER_LIP_MID_VERTEX, UPPER_LIP_MID_VERTEX, FaceRig, load_rig
from distilface.rig.render import plot_lip_trajectory, render_animation, render_frame

INNER_CORNERS = (78, 308)


@pytest.fixture(scope="module")
def rig() -> FaceRig:
    return load_rig()


def pose(**weights: float) -> np.ndarray:
    w = np.zeros(len(ARKIT_52), dtype=np.float32)
    for name, value in weights.items():
        w[ARKIT_52.index(name)] = value
    return w


def test_mesh_shapes(rig):
    assert rig.neutral_mm.shape == (468, 3)
    assert rig.deltas_mm.shape == (52, 468, 3)
    assert rig.triangles.shape == (898, 3)
    assert rig.names == ARKIT_52
    # millimetres: a face is about 15 cm wide
    assert 140 < np.ptp(rig.neutral_mm[:, 0]) < 170


def test_rest_face_has_lips_closed(rig):
    gap = rig.lip_gap_mm(pose())
    assert gap.shape == (1,)
    assert 0.0 <= gap[0] < 1.0


def test_jaw_open_parts_lips_monotonically(rig):
    steps = np.linspace(0.0, 1.0, 11)
    gaps = rig.lip_gap_mm(np.stack([pose(jawOpen=a) for a in steps]))
    assert np.all(np.diff(gaps) > 0)
    assert 12.0 <= gaps[-1] - gaps[0] <= 15.0
    lower = rig.lower_lip_mm(np.stack([pose(), pose(jawOpen=1)]))
    assert lower[1, 1] < lower[0, 1] - 10.0  # lower lip goes down
    chin = rig.vertices(pose(jawOpen=1))[0, 152] - rig.neutral_mm[152]
    assert chin[1] < -10.0


def test_mouth_close_seals_open_jaw(rig):
    steps = np.linspace(0.0, 1.0, 11)
    gaps = rig.lip_gap_mm(np.stack([pose(jawOpen=1, mouthClose=c) for c in steps]))
    assert np.all(np.diff(gaps) < 0)
    assert abs(gaps[-1]) < 1.0


def test_pucker_narrows_mouth(rig):
    def width(w):
        v = rig.vertices(w)[0]
        return np.linalg.norm(v[INNER_CORNERS[0]] - v[INNER_CORNERS[1]])

    assert width(pose(mouthPucker=1)) < width(pose()) - 8.0
    assert width(pose(mouthSmileLeft=1, mouthSmileRight=1)) > width(pose())


def test_linear_combination_is_sum_of_deltas(rig):
    a, b = pose(jawOpen=0.7, mouthSmileLeft=0.3), pose(mouthPucker=0.5, browInnerUp=1.0)
    v = rig.vertices(np.stack([a, b, a + b]))
    np.testing.assert_allclose(v[2] - rig.neutral_mm, (v[0] - rig.neutral_mm) + (v[1] - rig.neutral_mm), atol=1e-4)
    np.testing.assert_allclose(rig.vertices(pose())[0], rig.neutral_mm)


def test_curves_select_channels_by_name(rig):
    curves = Curves(30.0, ("headYaw", "jawOpen"), np.array([[0.3, 0.0], [0.3, 1.0]]))  # headYaw is not ARKit-52
    np.testing.assert_allclose(rig.vertices(curves), rig.vertices(np.stack([pose(), pose(jawOpen=1)])), atol=1e-5)
    track = rig.lower_lip_mm(curves)
    assert track.shape == (2, 3)
    np.testing.assert_allclose(track, rig.vertices(curves)[:, LOWER_LIP_MID_VERTEX], atol=1e-4)
    np.testing.assert_allclose(rig.upper_lip_mm(curves), rig.vertices(curves)[:, UPPER_LIP_MID_VERTEX], atol=1e-4)


def test_render_frame_shows_open_mouth(rig):
    closed = render_frame(rig, pose(), size_px=128)
    opened = render_frame(rig, pose(jawOpen=1), size_px=128)
    assert closed.shape == (128, 128, 3) and closed.dtype == np.uint8
    # mouth region in pixels of the 128 px frontal view (mid lips at rest project to row 82, col 64; the jaw opens downwards)
    mouth = (slice(80, 105), slice(44, 84))
    diff = np.abs(closed[mouth].astype(int) - opened[mouth].astype(int)).sum(axis=2)
    assert (diff > 60).mean() > 0.1
    # the open mouth is dark inside
    assert opened[mouth].mean() < closed[mouth].mean() - 15


def test_render_animation_and_plot(rig, tmp_path):
    values = np.zeros((6, 2), dtype=np.float32)
    values[:, 0] = np.linspace(0, 1, 6)
    curves = Curves(30.0, ("jawOpen", "mouthClose"), values)
    paths = render_animation(curves, tmp_path / "anim", size_px=64, max_frames=4)
    assert len(list(paths["frames"].glob("frame_*.png"))) == 4
    assert paths["gif"].stat().st_size > 0
    phones = [PhoneSegment("sil", 0.0, 0.05), PhoneSegment("m", 0.05, 0.1), PhoneSegment("aa", 0.1, 0.2)]
    out = plot_lip_trajectory({"teacher": curves, "student": curves}, phones, tmp_path / "lips.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
