"""Interruptions and shards of the data stages: the real CLI of `corpus synth` and `label`, killed
with SIGKILL at seeded random points and re-run, or split with `--shard i/N` over processes, ends
with folders byte-identical to an uninterrupted one-process run; no half-written file is ever left
under a name a reader takes.

Training: tests/test_train.py kills the real CLI training mid-run and checks the resumed run
equals the uninterrupted one; tests/test_ddp.py does the same for a torchrun run.
"""

import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distilface.distributed import Shard
from distilface.fileio import read_json
from distilface.label import LabelStore
from distilface.manifest import read_manifest
from distilface.phones import read_phones

from test_cli import CLI, run  # the real CLI in a subprocess, failing with its stderr

# Three engines (espeak-ng in-process, flite and festival as subprocesses), augmentation on.
SYNTH = ["--hours", "0.01", "--max-voices", "6", "--engines", "espeak-ng,flite,festival"]
LABEL = ["--fps", "50", "--shard-size", "1"]  # one file per utterance: many kill points


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted one-process run every other run must equal."""
    root = tmp_path_factory.mktemp("interrupt")
    run("corpus", "synth", "--out", root / "corpus", *SYNTH, "--workers", "1")
    run("label", root / "corpus" / "manifest.jsonl", "--out", root / "labels", *LABEL, "--workers", "1")
    return root


def hashes(folder: Path, skip: tuple[str, ...] = ("stats.json",)) -> dict[str, str]:
    """sha256 of every file a reader may open (hidden temp files excluded), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".") and p.name not in skip}


def run_until_killed(args: list, progress, at: int, timeout_s: float = 600) -> bool:
    """Run the CLI in its own session and SIGKILL the whole session (main process, pool workers,
    engine subprocesses: what a scheduler or a crash does) once progress() >= at.
    Returns False when the run finished first."""
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if progress() >= at:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"distilface {' '.join(map(str, args))} failed with {proc.returncode}")
    return proc.returncode == -signal.SIGKILL


def visible(folder: Path, pattern: str) -> list[Path]:
    """What a reader globs: pathlib's glob, unlike the shell's, also matches hidden names, so the
    temp files of atomic writes (".NAME.XXXX.flac", possibly half written at a kill) are dropped."""
    return [p for p in folder.glob(pattern) if not p.name.startswith(".")]


def count(folder: Path, pattern: str) -> int:
    return len(visible(folder, pattern))


def assert_nothing_half_written(corpus: Path) -> None:
    """After a kill: every file under a reader's name is whole; no manifest before the end."""
    assert not (corpus / "manifest.jsonl").exists()
    for record in visible(corpus / "records", "*.json"):
        made = read_json(record)  # whole JSON
        if "failed" not in made:  # its audio and phones were renamed into place before it
            assert sf.info(corpus / made["audio"]).frames == round(made["duration_s"] * 16000)
            assert abs(read_phones(corpus / made["phones"])[-1].end_s - made["duration_s"]) < 2e-3
    for audio in visible(corpus / "audio", "*.flac"):
        sf.read(audio)  # decodes to the end
    for phones in visible(corpus / "phones", "*.tsv"):
        read_phones(phones)


def test_corpus_synth_killed_at_random_points_equals_uninterrupted(reference, tmp_path):
    planned = len((reference / "corpus" / "plan.jsonl").read_text().splitlines())
    rng = random.Random(7)
    corpus = tmp_path / "corpus"
    # Kill points: during start-up once the plan is written, then after k records, k drawn with a seed.
    points = [(lambda: (corpus / "plan.jsonl").exists(), 1)]
    points += [(lambda: count(corpus / "records", "*.json"), k) for k in sorted(rng.sample(range(1, planned - 1), 2))]
    killed = 0
    for progress, at in points:
        if run_until_killed(["corpus", "synth", "--out", corpus, *SYNTH, "--workers", "2"], progress, at):
            killed += 1
            assert_nothing_half_written(corpus)
    assert killed >= 2, "the runs finished before they could be killed"
    run("corpus", "synth", "--out", corpus, *SYNTH, "--workers", "2")
    # Equal files under every visible name, and no other visible file: what a kill leaves behind is
    # at most a hidden temp file (".NAME.XXXX.tmp" or ".NAME.XXXX.flac"), which no reader opens or globs.
    assert hashes(corpus) == hashes(reference / "corpus")


def test_label_killed_at_random_points_equals_uninterrupted(reference, tmp_path):
    manifest = reference / "corpus" / "manifest.jsonl"
    utterances = len(read_manifest(manifest))
    labels = tmp_path / "labels"
    rng = random.Random(11)
    killed = 0
    for at in sorted(rng.sample(range(1, utterances // 2), 2)):
        args = ["label", manifest, "--out", labels, *LABEL, "--workers", "2"]
        if run_until_killed(args, lambda: count(labels, "shard-*.npz"), at):
            killed += 1
            with pytest.raises(FileNotFoundError, match="missing shard"):
                LabelStore(labels)  # an unfinished folder is never read as complete
            for shard in visible(labels, "shard-*.npz"):  # every file under a shard name is whole
                with np.load(shard) as z:
                    assert len(z["offsets"]) == len(z["ids"]) + 1 == 2 and len(z["values"]) == z["offsets"][-1]
    assert killed >= 1, "the runs finished before they could be killed"
    run("label", manifest, "--out", labels, *LABEL, "--workers", "2")
    assert hashes(labels) == hashes(reference / "labels")
    store = LabelStore(labels)
    assert len(store) == utterances


def test_shard_split_is_a_partition():
    ids = [f"en-{k:07d}" for k in range(500)]
    owners = [[s for s in range(3) if Shard(s, 3).owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o == [s] for o in owners) for s in range(3)]
    assert min(sizes) > 130  # balanced (500 / 3 = 167)
    assert [k for k in range(10) if Shard(1, 3).owns_index(k)] == [1, 4, 7]
    assert Shard.parse("2/5") == Shard(2, 5) and Shard.parse(None) == Shard()
    for bad in ("5/5", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_sharded_synth_and_label_equal_one_process(reference, tmp_path):
    """Two shards as two processes into one folder (the last writes the manifest); two more into
    separate folders, joined by `corpus merge`; label shards into one folder."""
    procs = [subprocess.Popen([*CLI, *map(str, ["corpus", "synth", "--out", out, *SYNTH, "--workers", "1",
                                                   "--shard", f"{i}/2"])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out, i in ((tmp_path / "shared", 0), (tmp_path / "shared", 1), (tmp_path / "a", 0),
                            (tmp_path / "b", 1))]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    expected = hashes(reference / "corpus")
    assert hashes(tmp_path / "shared") == expected
    assert not (tmp_path / "a" / "manifest.jsonl").exists()  # half the corpus: no manifest
    assert "shard 0/2 done" in outs[2][0]
    proc = run("corpus", "merge", tmp_path / "merged", tmp_path / "c", check=False)  # no such shard folder
    assert proc.returncode != 0
    proc = run("corpus", "merge", tmp_path / "merged", tmp_path / "a", check=False)  # shard 1 missing
    assert proc.returncode != 0 and "not made yet" in proc.stderr
    run("corpus", "merge", tmp_path / "merged", tmp_path / "b")
    assert hashes(tmp_path / "merged") == expected

    manifest = reference / "corpus" / "manifest.jsonl"
    labels = tmp_path / "labels"
    run("label", manifest, "--out", labels, *LABEL, "--workers", "1", "--shard", "1/2")
    with pytest.raises(FileNotFoundError, match="missing shard"):
        LabelStore(labels)
    assert sorted(int(p.stem[6:]) % 2 for p in labels.glob("shard-*.npz")) == [1] * count(labels, "shard-*.npz")
    run("label", manifest, "--out", labels, *LABEL, "--workers", "1", "--shard", "0/2")
    assert hashes(labels) == hashes(reference / "labels")
    assert len(LabelStore(labels)) == len(read_manifest(manifest))
