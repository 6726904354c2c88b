"""Label shards: values, resume after an interrupted run, refusal to mix runs."""

import os

import numpy as np
import pytest

from distilface import label as label_mod
from distilface.audio import write_audio
from distilface.label import LabelJob, LabelStore, run_labels, shard_path
from distilface.manifest import Utterance, write_manifest
from distilface.phones import PhoneSegment as P
from distilface.phones import write_phones
from distilface.teacher import build_teacher


def make_manifest(tmp_path, n=5):
    utts = []
    for i in range(n):
        dur = 0.5 + 0.1 * i
        phones = [P("sil", 0, 0.1), P("m", 0.1, 0.2), P("aa", 0.2, 0.35), P("sil", 0.35, dur)]
        write_audio(tmp_path / f"a{i}.wav", np.zeros(int(dur * 16000), np.float32))
        write_phones(tmp_path / f"a{i}.phones.tsv", phones)
        utts.append(Utterance(id=f"u{i}", audio=f"a{i}.wav", phones=f"a{i}.phones.tsv", duration_s=dur,
                              voice="v", language="en", source="test", split="train"))
    write_manifest(tmp_path / "manifest.jsonl", utts)
    return tmp_path / "manifest.jsonl"


def test_labels_equal_teacher_output(tmp_path):
    manifest = make_manifest(tmp_path)
    out = run_labels(LabelJob(manifest, tmp_path / "labels", shard_size=2, workers=1))
    store = LabelStore(out)
    assert len(store) == 5 and store.meta["num_shards"] == 3
    teacher = build_teacher("aligned")
    phones = [P("sil", 0, 0.1), P("m", 0.1, 0.2), P("aa", 0.2, 0.35), P("sil", 0.35, 0.8)]
    expected = teacher.animate(np.zeros(int(0.8 * 16000), np.float32), 30, phones=phones)
    np.testing.assert_array_equal(store["u3"].values, expected.values)
    assert store.meta["teacher_id"] == teacher.id


def test_resume_after_interruption(tmp_path, monkeypatch):
    manifest = make_manifest(tmp_path)
    reference = LabelStore(run_labels(LabelJob(manifest, tmp_path / "ref", shard_size=2, workers=1)))

    # First run dies after one shard (as a kill would), leaving a half-written temp file behind.
    real = label_mod._label_shard
    calls = {"n": 0}

    def dying(args):
        calls["n"] += 1
        if calls["n"] == 2:
            (tmp_path / "labels" / ".shard-00001.npz.partial.npz").write_bytes(b"\x00garbage")
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(label_mod, "_label_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        run_labels(LabelJob(manifest, tmp_path / "labels", shard_size=2, workers=1))
    assert shard_path(tmp_path / "labels", 0).exists() and not shard_path(tmp_path / "labels", 1).exists()
    with pytest.raises(FileNotFoundError, match="missing shard"):
        LabelStore(tmp_path / "labels")
    first_mtime = os.stat(shard_path(tmp_path / "labels", 0)).st_mtime_ns

    # The re-run redoes only what is missing and ends equal to an uninterrupted run.
    redone = []
    monkeypatch.setattr(label_mod, "_label_shard", lambda a: (redone.append(a[2]), real(a))[1])
    store = LabelStore(run_labels(LabelJob(manifest, tmp_path / "labels", shard_size=2, workers=1)))
    assert redone == [1, 2]
    assert os.stat(shard_path(tmp_path / "labels", 0)).st_mtime_ns == first_mtime
    for utt_id in reference.ids():
        np.testing.assert_array_equal(store[utt_id].values, reference[utt_id].values)


def test_refuses_to_mix_fps(tmp_path):
    manifest = make_manifest(tmp_path, n=2)
    run_labels(LabelJob(manifest, tmp_path / "labels", workers=1))
    with pytest.raises(ValueError, match="fps"):
        run_labels(LabelJob(manifest, tmp_path / "labels", fps=60, workers=1))


def test_parallel_workers_give_same_labels(tmp_path):
    manifest = make_manifest(tmp_path)
    a = LabelStore(run_labels(LabelJob(manifest, tmp_path / "one", shard_size=2, workers=1)))
    b = LabelStore(run_labels(LabelJob(manifest, tmp_path / "two", shard_size=2, workers=2)))
    for utt_id in a.ids():
        np.testing.assert_array_equal(a[utt_id].values, b[utt_id].values)
