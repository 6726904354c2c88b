"""corpus ingest on tiny folders of espeak-ng speech in both layouts; the asterisk-en recipe's
transcript parsing and split."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distilface.audio import SAMPLE_RATE_HZ
from distilface.corpus import ingest as ingest_mod
from distilface.corpus.ingest import (ASTERISK_TRANSCRIPTS, hash_split, ingest_folder,
                                      read_asterisk_transcripts)
from distilface.manifest import SPLITS, read_manifest, resolve
from distilface.phones import SILENCE, read_phones

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def _say(path: Path, text: str) -> None:
    """espeak-ng speech at its native 22.05 kHz, written in the format of `path`'s suffix."""
    wav = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    data, rate = sf.read(str(wav))
    assert rate == 22050
    wav.unlink()
    sf.write(str(path), data, rate)


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing")
    root = tmp_path_factory.mktemp("src")
    chapter = root / "LibriSpeech" / "19" / "198"  # LibriSpeech layout
    chapter.mkdir(parents=True)
    _say(chapter / "19-198-0001.flac", "Please press the big button.")
    _say(chapter / "19-198-0002.flac", "My mother made a map.")
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0001 PLEASE PRESS THE BIG BUTTON\n19-198-0002 ZORBLAX QUUXIFIED THE FLIBBERTY\n")
    speaker = root / "pairs" / "alice"  # x.wav + x.txt pairs
    speaker.mkdir(parents=True)
    _say(speaker / "hello.wav", "Hello world, this is a test.")
    (speaker / "hello.txt").write_text("Hello world, this is a test.\n")
    (speaker / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (speaker / "broken.txt").write_text("This file is broken.\n")
    return root


@needs_espeak
def test_ingest_both_layouts_and_rerun(src_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    manifest_path = ingest_folder(src_dir, out, workers=2, source="tiny")
    assert manifest_path == out / "manifest.jsonl"
    utts = {u.id: u for u in read_manifest(manifest_path)}
    assert set(utts) == {"19-198-0001", "pairs-alice-hello"}
    for u in utts.values():
        audio, rate = sf.read(str(resolve(manifest_path, u.audio)))
        assert rate == SAMPLE_RATE_HZ  # resampled from 22.05 kHz
        assert u.duration_s == pytest.approx(len(audio) / SAMPLE_RATE_HZ, abs=1e-5)
        phones = read_phones(resolve(manifest_path, u.phones))
        assert phones[0].start_s == 0.0 and phones[-1].end_s == pytest.approx(u.duration_s)
        assert u.split in SPLITS and u.source == "tiny" and u.augmentation is None
    assert utts["19-198-0001"].voice == "tiny/19"
    assert utts["pairs-alice-hello"].voice == "tiny/alice"
    spoken = [s.phone for s in read_phones(resolve(manifest_path, utts["19-198-0001"].phones))
              if s.phone != SILENCE]
    assert spoken == "p l iy z p r eh s dh ah b ih g b ah t ah n".split()

    failures = {r["id"]: r["reason"] for r in map(json.loads, open(out / "failures.jsonl"))}
    assert set(failures) == {"19-198-0002", "pairs-alice-broken"}
    assert "zorblax" in failures["19-198-0002"]
    assert "broken.wav" in failures["pairs-alice-broken"]

    # Re-running redoes nothing: no alignment, no audio decoding, no file rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.name not in ("manifest.jsonl", "failures.jsonl")}

    def fail(*args, **kwargs):
        raise AssertionError("re-run must not redo work")

    monkeypatch.setattr("distilface.corpus.align.align_phones", fail)
    monkeypatch.setattr("distilface.audio.load_audio", fail)
    again = ingest_folder(src_dir, out, workers=1, source="tiny")
    assert {u.id for u in read_manifest(again)} == set(utts)
    assert {r["id"] for r in map(json.loads, open(out / "failures.jsonl"))} == set(failures)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


@needs_espeak
def test_custom_split_fn_and_bad_language(src_dir, tmp_path):
    with pytest.raises(ValueError, match="only English"):
        ingest_folder(src_dir, tmp_path / "de", language="de")
    with pytest.raises(ValueError, match="split_fn returned"):
        ingest_folder(src_dir, tmp_path / "x", split_fn=lambda utt_id, speaker: "holdout")


def test_hash_split_is_stable_and_proportional():
    assert [hash_split(n) for n in ("alice", "bob", "carol")] == \
        [hash_split(n) for n in ("alice", "bob", "carol")]
    counts = {s: 0 for s in SPLITS}
    for i in range(2000):
        counts[hash_split(f"speaker-{i}")] += 1
    assert 1500 < counts["train"] < 1700 and 140 < counts["val"] < 260 and 140 < counts["test"] < 260


@pytest.mark.skipif(not ASTERISK_TRANSCRIPTS.exists(), reason="asterisk-core-sounds-en missing")
def test_asterisk_transcripts():
    transcripts = read_asterisk_transcripts()
    assert len(transcripts) > 500
    assert transcripts["letters/at"] == "at"
    assert transcripts["beep"] == ""
    assert transcripts["silence/1"] == ""
    assert transcripts["auth-thankyou"] == "Thank you."
    items, problems = ingest_mod._asterisk_items()
    assert all(i.voice == "asterisk-en/female1" and i.source == "asterisk-en" for i in items)
    # the split is fixed: a change here moves prompts between train and test
    splits = {i.src: i.split for i in items}
    assert sum(s == "test" for s in splits.values()) > 30
    assert {n: splits[n] for n in ("auth-thankyou", "agent-pass", "digits/7")} == FIXED_SPLITS


FIXED_SPLITS = {"auth-thankyou": "train", "agent-pass": "test", "digits/7": "train"}
