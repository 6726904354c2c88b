"""The real CLI end to end on a tiny config: corpus synth -> label -> score -> render."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distilface.manifest import read_manifest, resolve
from distilface.phones import read_phones

CLI = [sys.executable, "-m", "distilface.cli"]


def run(*args, check=True):
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"distilface {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    run("corpus", "synth", "--out", out, "--hours", "0.01", "--max-voices", "6", "--workers", "2")
    return out


def test_synth_corpus_files_and_splits(corpus):
    utts = read_manifest(corpus / "manifest.jsonl")
    assert len(utts) >= 8
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["utterances"] == len(utts) and stats["failed"] == 0
    assert abs(stats["hours"] - sum(u.duration_s for u in utts) / 3600) < 1e-3
    voices_by_split = {s: {u.voice for u in utts if u.split == s} for s in ("train", "val", "test")}
    assert voices_by_split["test"] and voices_by_split["train"]
    assert not voices_by_split["test"] & voices_by_split["train"]
    assert not voices_by_split["val"] & voices_by_split["train"]
    for u in utts:
        phones = read_phones(resolve(corpus / "manifest.jsonl", u.phones))
        assert abs(phones[-1].end_s - u.duration_s) < 2e-3, u.id
        assert u.text and u.language == "en"
        if u.split != "train":
            assert u.augmentation is None  # evaluation voices stay clean


def test_synth_resume_is_a_no_op_and_deterministic(corpus, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (corpus / "records").iterdir()}
    run("corpus", "synth", "--out", corpus, "--hours", "0.01", "--max-voices", "6", "--workers", "2")
    after = {p.name: p.stat().st_mtime_ns for p in (corpus / "records").iterdir()}
    assert before == after
    # Other options on the same folder are refused with one clear line.
    proc = run("corpus", "synth", "--out", corpus, "--hours", "0.02", check=False)
    assert proc.returncode != 0 and "another config" in proc.stderr and "Traceback" not in proc.stderr


def test_label_score_render(corpus, tmp_path):
    labels = tmp_path / "labels"
    run("label", corpus / "manifest.jsonl", "--out", labels, "--shard-size", "4")
    proc = run("score", corpus / "manifest.jsonl", labels, "--out", tmp_path / "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["all"]["pbm_total"] > 0
    assert scores["all"]["pbm_accuracy"] >= 0.9
    assert scores["all"]["open_vowel_accuracy"] >= 0.9
    # Render the first utterance's labels.
    from distilface.curves import save_curves
    from distilface.label import LabelStore

    utt = read_manifest(corpus / "manifest.jsonl")[0]
    save_curves(tmp_path / "c.json", LabelStore(labels)[utt.id])
    run("render", tmp_path / "c.json", resolve(corpus / "manifest.jsonl", utt.audio), "-o", tmp_path / "r",
        "--phones", resolve(corpus / "manifest.jsonl", utt.phones), "--max-frames", "10", "--size", "96")
    assert (tmp_path / "r" / "lip_trajectory.png").stat().st_size > 1000
    assert (tmp_path / "r" / "animation.gif").exists()


def test_bad_audio_gives_one_line_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    (tmp_path / "c.json").write_text(json.dumps({"fps": 30, "names": ["jawOpen"], "frames": [[0.5]]}))
    proc = run("render", tmp_path / "c.json", bad, "-o", tmp_path / "r", check=False)
    assert proc.returncode != 0
    assert "bad.wav" in proc.stderr and "Traceback" not in proc.stderr
