"""The models shipped in the package: every registry entry verifies (sha256), loads with its
recorded size and width, and has a model card that names it and its parameter count."""

import pytest

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
