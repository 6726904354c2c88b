"""animate_file: streaming equals whole-file, any input format, clear errors; export formats."""

import csv
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from distilface.animate import StreamResampler, animate_audio, animate_command, animate_file
from distilface.audio import AudioError, load_audio, resample
from distilface.checkpoint import load_student, save_checkpoint
from distilface.curves import Curves, num_frames
from distilface.formats import (LLF_HEADER, OCULUS_VISEMES, format_for, llf_timecode, read_curves_any,
                                write_curves)
from distilface.rig.arkit import ARKIT_52
from distilface.student import Student, StudentConfig


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, Student(StudentConfig(channels=16, context_groups=8)).eval())
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_student(checkpoint)[0]


def speechy(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise bursts under a moving tone: (samples, channels) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t)
    mono = env * (0.3 * np.sin(2 * np.pi * (150 + 50 * np.sin(t)) * t) + 0.1 * rng.standard_normal(len(t)))
    out = np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_blockwise_equals_whole_file(model, tmp_path, rate):
    path = tmp_path / f"long_{rate}.wav"
    sf.write(path, speechy(20.0, rate, channels=2 if rate != 16000 else 1), rate, subtype="FLOAT")
    whole = animate_audio(model, load_audio(path), fps=30.0)
    blocks = animate_file(model, path, fps=30.0, block_s=3.0, progress=False)
    assert blocks.values.shape == (num_frames(20.0, 30.0), 52) == whole.values.shape
    assert blocks.names == ARKIT_52 and blocks.fps == 30.0
    np.testing.assert_allclose(blocks.values, whole.values, atol=1e-5, rtol=0)


def test_stream_resampler_equals_whole_signal():
    x = np.random.default_rng(1).standard_normal(44100 * 2 + 17).astype(np.float32)
    r = StreamResampler(44100, 16000)
    chunks = [r(x[i:i + 3001]) for i in range(0, len(x), 3001)] + [r(np.zeros(0, np.float32), final=True)]
    np.testing.assert_allclose(np.concatenate(chunks), resample(x, 44100, 16000), atol=1e-6, rtol=0)


@pytest.mark.parametrize("fmt", ["FLAC", "MP3"])
def test_stereo_44k_compressed_inputs(model, tmp_path, fmt):
    path = tmp_path / f"stereo.{fmt.lower()}"
    sf.write(path, speechy(2.0, 44100, channels=2), 44100, format=fmt)
    curves = animate_file(model, path, fps=25.0, block_s=0.7, progress=False)
    assert curves.values.shape[1] == 52
    assert abs(curves.num_frames - 50) <= 2  # mp3 adds encoder padding
    assert np.all(np.isfinite(curves.values))
    np.testing.assert_allclose(curves.values, animate_audio(model, load_audio(path), 25.0).values, atol=1e-5)


def test_silence_animates_with_a_warning(model, tmp_path, caplog):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(8000, np.float32), 16000)
    with caplog.at_level(logging.WARNING, logger="distilface.animate"):
        curves = animate_file(model, path, progress=False)
    assert curves.num_frames == 15 and "silent" in caplog.text


def test_animate_command_writes_the_format(checkpoint, tmp_path):
    audio = tmp_path / "a.ogg"
    sf.write(audio, speechy(1.0, 22050), 22050)
    out = animate_command(audio, tmp_path / "a.rhubarb.json", checkpoint, fps=24.0, progress=False)
    doc = json.loads(out.read_text())
    assert doc["metadata"]["soundFile"] == str(audio) and doc["mouthCues"][-1]["end"] == 1.0
    with pytest.raises(ValueError, match="extension"):
        animate_command(audio, tmp_path / "a.txt", checkpoint, progress=False)


def _bad_inputs(tmp):
    (tmp / "empty.wav").write_bytes(b"")
    good = tmp / "good.wav"
    sf.write(good, speechy(0.5, 16000), 16000)
    (tmp / "truncated.wav").write_bytes(good.read_bytes()[:30])
    (tmp / "notes.wav").write_text("these are meeting notes, not audio\n" * 20)
    nan = speechy(0.5, 16000)
    nan[4000] = np.nan
    sf.write(tmp / "nan.wav", nan, 16000, subtype="FLOAT")
    return {"empty.wav": "empty", "truncated.wav": "", "notes.wav": "", "nan.wav": "NaN",
            "missing.wav": "no such file"}


def test_bad_inputs_name_the_file(model, tmp_path):
    for name, problem in _bad_inputs(tmp_path).items():
        with pytest.raises(AudioError) as e:
            animate_file(model, tmp_path / name, progress=False)
        message = str(e.value)
        assert str(tmp_path / name) in message and problem in message and "\n" not in message, message


# -- formats ---------------------------------------------------------------------------------

def hand_curves(fps: float = 30.0) -> Curves:
    """1 s rest, 0.3 s closed lips over an open jaw (p/b/m), 0.5 s wide open, 0.4 s pucker, rest."""
    spans = [(30, {}), (9, {"jawOpen": 0.3, "mouthClose": 0.3}), (15, {"jawOpen": 0.7}),
             (12, {"jawOpen": 0.15, "mouthPucker": 0.8, "mouthFunnel": 0.3}), (10, {})]
    rows = []
    for n, pose in spans:
        row = np.zeros(52, np.float32)
        for name, v in pose.items():
            row[ARKIT_52.index(name)] = v
        rows += [row] * n
    return Curves(fps, ARKIT_52, np.stack(rows))


def test_json_round_trip(tmp_path):
    curves = hand_curves()
    path = write_curves(curves, tmp_path / "out.json")
    back = read_curves_any(path)
    assert back.names == ARKIT_52 and back.fps == 30.0
    np.testing.assert_allclose(back.values, curves.values, atol=1e-6)
    doc = json.loads(path.read_text())
    assert set(doc) == {"fps", "names", "frames"}


def test_live_link_face_csv(tmp_path):
    curves = hand_curves()
    path = write_curves(curves, tmp_path / "take.csv")
    rows = list(csv.reader(path.open()))
    assert tuple(rows[0]) == LLF_HEADER and len(rows[0]) == 2 + 61
    assert rows[0][:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert rows[0][-9:] == ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                            "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    body = rows[1:]
    assert len(body) == curves.num_frames and {r[1] for r in body} == {"61"}
    assert body[0][0] == "00:00:00:00.000" and body[31][0] == "00:00:01:01.000"

    def seconds(tc):
        h, m, s, f = tc.split(":")
        return int(h) * 3600 + int(m) * 60 + int(s) + float(f) / 30

    times = [seconds(r[0]) for r in body]
    assert all(b > a for a, b in zip(times, times[1:]))
    jaw = [float(r[rows[0].index("JawOpen")]) for r in body]
    np.testing.assert_allclose(jaw, curves.channel("jawOpen"), atol=1e-6)
    assert all(float(v) == 0 for r in body for v in r[-9:])
    assert llf_timecode(30, 29.97) == "00:00:01:00.030"


def _check_cues(cues, duration):
    assert cues[0][0] == 0 and abs(cues[-1][1] - duration) < 0.011
    for (s0, e0, v0), (s1, e1, v1) in zip(cues, cues[1:]):
        assert e0 == s1 and v0 != v1 and e0 > s0
    assert {v for _, _, v in cues} <= set("ABCDEFGHX")


def test_rhubarb_json_and_tsv(tmp_path):
    curves = hand_curves()
    duration = curves.num_frames / curves.fps
    doc = json.loads(write_curves(curves, tmp_path / "cues.rhubarb.json", sound_file="a.wav").read_text())
    assert doc["metadata"] == {"soundFile": "a.wav", "duration": round(duration, 2)}
    cues = [(c["start"], c["end"], c["value"]) for c in doc["mouthCues"]]
    _check_cues(cues, duration)
    assert [v for _, _, v in cues] == ["X", "A", "D", "F", "X"]
    a = cues[1]
    assert a[0] == pytest.approx(1.0) and a[1] == pytest.approx(1.3)

    lines = write_curves(curves, tmp_path / "cues.tsv").read_text().splitlines()
    tsv = [(float(t), v) for t, v in (line.split("\t") for line in lines)]
    assert [v for _, v in tsv] == ["X", "A", "D", "F", "X", "X"]  # Rhubarb's final line: end, X
    assert tsv[-1][0] == pytest.approx(duration, abs=0.011)
    assert [t for t, _ in tsv[:-1]] == [s for s, _, _ in cues]


def test_rhubarb_hysteresis_and_min_cue():
    rng = np.random.default_rng(0)
    values = np.zeros((90, 52), np.float32)
    values[:, ARKIT_52.index("jawOpen")] = 0.55 + 0.02 * rng.standard_normal(90)  # hovers at C/D
    values[40, ARKIT_52.index("jawOpen")] = 0.1  # one-frame blip: shorter than a cue
    from distilface.formats import rhubarb_cues

    cues = rhubarb_cues(Curves(30, ARKIT_52, values))
    assert len(cues) <= 3 and all(e - s >= 0.06 - 1e-9 for s, e, _ in cues[1:-1])
    _check_cues(cues, 3.0)


def test_short_closure_is_kept():
    values = np.zeros((30, 52), np.float32)
    values[:, ARKIT_52.index("jawOpen")] = 0.4
    values[15, ARKIT_52.index("mouthClose")] = 0.4  # one frame of sealed lips
    from distilface.formats import rhubarb_cues

    assert [v for _, _, v in rhubarb_cues(Curves(30, ARKIT_52, values))] == ["C", "A", "C"]


@pytest.mark.parametrize("name", ["vis.oculus.json", "vis.oculus.csv"])
def test_oculus_visemes(tmp_path, name):
    curves = hand_curves()
    path = write_curves(curves, tmp_path / name)
    if name.endswith(".json"):
        vis = read_curves_any(path)
        values = vis.values
        assert vis.names == OCULUS_VISEMES and vis.fps == 30.0
    else:
        rows = list(csv.reader(path.open()))
        assert rows[0] == ["frame", "time_s", *OCULUS_VISEMES]
        values = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert values.shape == (curves.num_frames, 15)
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    top = [OCULUS_VISEMES[i] for i in values.argmax(axis=1)]
    assert top[0] == "sil" and top[35] == "PP" and top[45] == "aa" and top[60] == "ou"


def test_format_choice():
    assert format_for("a.json") == "json" and format_for("a.csv") == "csv"
    assert format_for("a.oculus.json") == "oculus-json" and format_for("a.rhubarb.json") == "rhubarb-json"
    assert format_for("a.txt", "rhubarb-tsv") == "rhubarb-tsv"
    assert format_for("a.csv", "oculus") == "oculus-csv"
    with pytest.raises(ValueError):
        format_for("a.txt")
    with pytest.raises(ValueError, match="missing"):
        write_curves(Curves(30, ("jawOpen",), np.zeros((3, 1))), "unused.csv")
