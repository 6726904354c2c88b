"""The top-level Python API (`import distilface`): light to import, the CLI's models and frames."""

import subprocess
import sys

import numpy as np
import pytest

import distilface
from distilface.audio import EXAMPLE_AUDIO, load_audio
from distilface.curves import num_frames
from distilface.models import registry
from distilface.rig.arkit import ARKIT_52


def test_import_loads_nothing_heavy():
    code = "import sys, distilface; print(sorted(m for m in ('numpy', 'torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_animate_and_stream_a_shipped_model(tmp_path):
    assert distilface.shipped_models() == list(registry()["models"])
    model = distilface.load_model("c0-4-256ms-ft")  # the C runtime where a compiler is (CI has one)
    curves = distilface.animate_file(model, EXAMPLE_AUDIO, progress=False)
    audio = load_audio(EXAMPLE_AUDIO)
    assert isinstance(curves, distilface.Curves) and curves.names == tuple(ARKIT_52)
    assert curves.values.shape == (num_frames(len(audio) / 16000, 30.0), 52)
    torch_curves = distilface.animate_file(distilface.load_model("c0-4-256ms-ft", runtime="torch"), EXAMPLE_AUDIO,
                                           progress=False)
    np.testing.assert_allclose(curves.values, torch_curves.values, atol=1e-5)
    # streamed in uneven chunks at 48 kHz: the frames of the same audio as a file
    import soundfile as sf

    from distilface.audio import resample

    x48 = resample(audio, 16000, 48000).astype(np.float32)
    sf.write(tmp_path / "x48.wav", x48, 48000, subtype="FLOAT")
    stream = distilface.StreamingAnimator(model, fps=30, sample_rate_hz=48000)
    cuts = np.cumsum(np.random.default_rng(0).integers(1, 4000, 200))
    parts = [stream.push(c) for c in np.split(x48, cuts[cuts < len(x48)])] + [stream.flush()]
    streamed = np.concatenate([p for p in parts if len(p)])
    np.testing.assert_allclose(streamed, distilface.animate_file(model, tmp_path / "x48.wav", progress=False).values,
                               atol=1e-5)


def test_smooth_and_bad_names():
    plain = distilface.load_model("c0-4-256ms-ft", runtime="torch")
    smooth = distilface.load_model("c0-4-256ms-ft", smooth=True, runtime="torch")
    same = distilface.load_model("c0-4-256ms-ft", smooth=(1, 2, 1), runtime="torch")
    a, b, c = (distilface.animate_file(m, EXAMPLE_AUDIO, progress=False).values for m in (plain, smooth, same))
    assert np.abs(a - b).max() > 1e-3  # smoothing changes the curves...
    np.testing.assert_allclose(b, c, atol=1e-6)  # ...and (1, 2, 1) are the default weights, normalised
    with pytest.raises(FileNotFoundError, match="no-such-model: no such checkpoint or shipped model"):
        distilface.load_model("no-such-model")
    with pytest.raises(AttributeError, match="no attribute 'animate_files'"):
        distilface.animate_files
