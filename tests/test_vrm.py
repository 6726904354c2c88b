"""ARKit curves -> VRM vowel and blink presets (distilface.vrm): the fit recovers the teacher's
vowel poses, equals scipy's NNLS, rests at zero, and on real speech picks I where the clip says
"ee"; the .vrm.json / .vrm.csv formats."""

import csv

import numpy as np
import pytest
from scipy.optimize import nnls

from distilface.curves import Curves
from distilface.formats import format_for, mouth_channels, mouth_features, read_curves_any, teacher_poses, write_curves
from distilface.rig.arkit import ARKIT_52
from distilface.vrm import PRESETS, VRM_VERSIONS, VrmMapper, _vowel_fit, vowel_weights, vrm_curves

VOWEL_VISEMES = [p[2] for p in PRESETS[:5]]  # aa iy ou E oh


def arkit_rows(*poses: dict) -> np.ndarray:
    rows = np.zeros((len(poses), 52), np.float32)
    for r, pose in enumerate(poses):
        for name, v in pose.items():
            rows[r, ARKIT_52.index(name)] = v
    return rows


def test_each_vowel_pose_is_its_preset_alone_and_amounts_scale():
    poses = teacher_poses(VOWEL_VISEMES)
    m = VrmMapper(ARKIT_52, "0")
    assert m.names == ("A", "I", "U", "E", "O", "Blink_L", "Blink_R")
    np.testing.assert_allclose(m(arkit_rows(*poses))[:, :5], np.eye(5), atol=1e-6)
    half = [{n: v / 2 for n, v in p.items()} for p in poses]
    np.testing.assert_allclose(m(arkit_rows(*half))[:, :5], np.eye(5) / 2, atol=1e-6)
    more = [{n: 1.5 * v for n, v in poses[0].items()}]  # A's pose one and a half times over: A 1.5, clipped to 1
    np.testing.assert_allclose(m(arkit_rows(*more))[0, :5], [1, 0, 0, 0, 0], atol=1e-6)


def test_rest_and_sealed_lips_give_no_vowel_and_blinks_pass_through():
    m = VrmMapper(ARKIT_52, "1")
    assert m.names == ("aa", "ih", "ou", "ee", "oh", "blinkLeft", "blinkRight")
    rest, sealed = {}, {"jawOpen": 0.3, "mouthClose": 0.3}  # lips sealed over an open jaw: p, b, m
    blink = {"eyeBlinkLeft": 0.9, "eyeBlinkRight": 0.2}
    out = m(arkit_rows(rest, sealed, blink))
    np.testing.assert_array_equal(out[:2], 0.0)
    np.testing.assert_allclose(out[2], [0, 0, 0, 0, 0, 0.9, 0.2], atol=1e-6)
    one = m(arkit_rows(blink)[0])  # one frame in, one frame out (the stream's OSC output)
    assert one.shape == (7,) and one.dtype == np.float32


def test_fit_equals_scipy_nnls():
    fit = _vowel_fit()
    assert fit.channels == mouth_channels(teacher_poses(VOWEL_VISEMES))
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(500, fit.templates.shape[1]))) * rng.uniform(0, 0.6, size=(500, 1))
    x[:50] = rng.uniform(0, 1, size=(50, 5)) @ fit.templates  # exact mixtures of the vowels
    got = vowel_weights(x)
    want = np.array([nnls(fit.templates.T, row)[0] for row in x])
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert (got > 0).sum(axis=1).max() >= 2  # mixtures were found, not just single vowels


def test_in_between_vowel_mixes_its_neighbours():
    ae = teacher_poses(["ae"])[0]  # jaw 0.5, stretch 0.2, lower lip down 0.25
    channels = mouth_channels(teacher_poses(VOWEL_VISEMES))
    w = vowel_weights(mouth_features(channels, np.array([[ae.get(n, 0.0) for n in channels]])))[0]
    assert w[0] > 0.3 and w[3] > 0.3 and w[1] == w[2] == w[4] == 0  # A and E only


def test_missing_curves_are_named():
    with pytest.raises(ValueError, match="mouthPucker"):
        VrmMapper(tuple(n for n in ARKIT_52 if n != "mouthPucker"))
    with pytest.raises(ValueError, match="VRM version"):
        VrmMapper(ARKIT_52, "2")


def test_real_speech_ee_frames_are_I():
    """The shipped default on the bundled clip: frames inside its /iy/ phones (the aligned
    transcript) are all I (measured: 17 of 17, mean 0.73), and in its pause the vowels are under
    half of what they are in speech (0.24 against 0.62: the jaw rests at 0.1 between words)."""
    import distilface
    from distilface.demo import EXAMPLE_AUDIO, EXAMPLE_PHONES

    curves = distilface.animate_file(distilface.load_model(), EXAMPLE_AUDIO)
    vrm = vrm_curves(curves, "0")
    t = curves.times_s
    label = np.full(len(t), "", dtype=object)
    for line in EXAMPLE_PHONES.read_text().splitlines()[1:]:
        start, end, phone = line.split("\t")[:3]
        label[(t >= float(start)) & (t < float(end))] = phone
    ee = vrm.values[label == "iy"]
    assert len(ee) >= 10
    assert np.mean(ee[:, :5].argmax(axis=1) == 1) > 0.8 and ee[:, 1].mean() > 0.5
    vowels = vrm.values[:, :5].sum(axis=1)
    assert vowels[label == "sil"].mean() < 0.5 * vowels[(label != "sil") & (label != "")].mean()


@pytest.mark.parametrize("name", ["take.vrm.json", "take.vrm.csv"])
def test_vrm_formats(tmp_path, name):
    poses = teacher_poses(VOWEL_VISEMES)
    curves = Curves(30.0, ARKIT_52, arkit_rows({}, *poses))
    path = write_curves(curves, tmp_path / name)
    if name.endswith(".json"):
        back = read_curves_any(path)
        assert back.names == VRM_VERSIONS["1"] and back.fps == 30.0
        values = back.values
    else:
        rows = list(csv.reader(path.open()))
        assert rows[0] == ["frame", "time_s", *VRM_VERSIONS["1"]]
        assert rows[2][:2] == ["1", "0.033333"]
        values = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(values[:, :5], np.vstack([np.zeros(5), np.eye(5)]), atol=1e-5)
    assert format_for(tmp_path / name) == ("vrm-json" if name.endswith(".json") else "vrm-csv")
    assert format_for("x.csv", "vrm") == "vrm-csv" and format_for("x.json", "vrm") == "vrm-json"
