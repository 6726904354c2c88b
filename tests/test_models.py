"""The models shipped in the package: every registry entry verifies (sha256), loads with its
recorded size and width, and has a model card that names it and its parameter count."""

import json
import subprocess
import sys

import pytest

import distilface
from distilface.audio import EXAMPLE_AUDIO
from distilface.checkpoint import load_student
from distilface.models import MODELS_DIR, registry, resolve_model
from distilface.student import count_parameters

MODELS = sorted(registry()["models"])


def test_registry_has_a_default_among_its_models():
    reg = registry()
    assert reg["default"] in reg["models"] and len(MODELS) >= 2


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_verifies_loads_and_has_a_card(name):
    entry = registry()["models"][name]
    path = resolve_model(name)  # raises on a sha256 mismatch
    assert path.stat().st_size == entry["bytes"]
    model, ckpt = load_student(path)
    assert count_parameters(model) == entry["parameters"]
    assert model.cfg.channels == entry["channels"] and model.cfg.future_ms == entry["future_ms"]
    assert "optimizer" not in ckpt  # shipped files keep weights and config only
    card = (MODELS_DIR / entry["card"]).read_text()
    assert f"`{name}`" in card.splitlines()[0]
    assert f"{entry['parameters']:,}" in card


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    import distilface.models as models

    name = MODELS[0]
    entry = registry()["models"][name]
    copy = tmp_path / entry["file"]
    data = bytearray((MODELS_DIR / entry["file"]).read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    (tmp_path / "MODELS.json").write_text((MODELS_DIR / "MODELS.json").read_text())
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(models, "REGISTRY", tmp_path / "MODELS.json")
    with pytest.raises(ValueError, match="sha256"):
        models.resolve_model(name)


def test_stream_runs_the_live_default_and_it_is_live():
    """`stream` without --model runs `live_default` (the real CLI): a model that waits at most 64 ms
    for future audio, where the offline default waits 249 ms."""
    reg = registry()
    live, default = reg["live_default"], reg["default"]
    assert live in reg["models"] and reg["models"][live]["future_ms"] <= 64.0 < reg["models"][default]["future_ms"]
    assert resolve_model(None, live=True) == resolve_model(live) and resolve_model(None) == resolve_model(default)
    assert distilface.load_model(live=True, runtime="torch").cfg.future_ms == reg["models"][live]["future_ms"]
    p = subprocess.run([sys.executable, "-m", "distilface.cli", "stream", "--input", f"wav:{EXAMPLE_AUDIO}",
                        "--no-realtime", "--output", "ndjson"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    frames = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(frames) == 99 and {f["type"] for f in frames} == {"frame"}
    assert {f["lookahead_ms"] for f in frames} == {57.0}  # measured from the model (64 ms configured)
