"""corpus synth in-process: growing a corpus keeps finished utterances; plans are deterministic."""

import json

from distilface.corpus.synth import SynthConfig, make_plan, synth_corpus
from distilface.manifest import read_manifest


def test_plan_is_deterministic_and_split_by_voice():
    cfg = SynthConfig(hours=0.02, max_voices=8, engines=("espeak-ng",), seed=3)
    a, b = make_plan(cfg), make_plan(cfg)
    assert json.dumps(a) == json.dumps(b)
    split_of = {}
    for item in a:
        assert split_of.setdefault(item["voice"]["id"], item["split"]) == item["split"]
        if item["split"] != "train":
            assert item["augmentation"] == []
    assert {"train", "test", "val"} <= set(split_of.values())
    assert any(item["augmentation"] for item in a)
    assert make_plan(SynthConfig(hours=0.02, max_voices=8, engines=("espeak-ng",), seed=4)) != a


def test_growing_keeps_finished_utterances(tmp_path):
    small = SynthConfig(hours=0.004, max_voices=3, engines=("espeak-ng",), augment_fraction=0.0)
    manifest = synth_corpus(small, tmp_path, workers=1)
    first = read_manifest(manifest)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "records").iterdir()}
    big = SynthConfig(hours=0.008, max_voices=3, engines=("espeak-ng",), augment_fraction=0.0)
    grown = read_manifest(synth_corpus(big, tmp_path, workers=1))
    assert len(grown) > len(first)
    assert [u.id for u in grown[:len(first)]] == [u.id for u in first]
    for name, stamp in stamps.items():
        assert (tmp_path / "records" / name).stat().st_mtime_ns == stamp
