"""What `make setup` must have installed: engine tests skip when an engine is missing, so this
test makes a missing install step fail instead of silently skipping."""

import shutil
from pathlib import Path

import pytest

from distilface.corpus.voices import ENGINES, voice_catalogue


@pytest.mark.parametrize("engine", ["espeak-ng", "festival", "flite"])
def test_default_engines_installed(engine):
    assert ENGINES[engine].available(), f"{engine} missing: run scripts/setup.sh"


def test_default_catalogue_has_40_english_voices():
    default = [v for v in voice_catalogue(("en",)) if v.engine in ("espeak-ng", "festival", "flite")]
    assert len(default) >= 40


def test_tools_installed():
    assert shutil.which("ffmpeg"), "ffmpeg missing: run scripts/setup.sh"
    import pyroomacoustics  # noqa: F401  reverb
    from distilface.corpus.augment import real_impulse_responses

    assert len(real_impulse_responses()) == 8


def test_demo_runs(tmp_path):
    """The README's main command (`make demo` -> `distilface demo`), in a temporary folder."""
    from distilface.demo import run_demo

    summary = run_demo(tmp_path, workers=2)
    assert summary["teacher_scores"]["pbm_accuracy"] == 1.0
    assert summary["teacher_scores"]["open_vowel_accuracy"] >= 0.9
    for key in ("lip_trajectory", "gif", "curves"):
        assert Path(summary[key]).stat().st_size > 0, key
