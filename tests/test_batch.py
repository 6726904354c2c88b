"""`distilface animate FOLDER -o OUT`: many files, the same curves as one by one, resumable."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from badaudio import speechy
from test_animate import checkpoint  # noqa: F401 - a fixture: the tiny checkpoint

from distilface.batch import LOG_NAME, REPORT_NAME, animate_batch, plan
from distilface.curves import num_frames

CLI = [sys.executable, "-m", "distilface.cli"]


def lines_folder(root):
    """lines/a.wav (1.2 s, 16 kHz), lines/sub/b.flac (0.7 s, 44.1 kHz stereo), a corrupt
    lines/bad.mp3, and files a walk must pass over."""
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", speechy(1.2, 16000, 0), 16000)
    b = speechy(0.7, 44100, 1)
    sf.write(root / "sub" / "b.flac", np.stack([b, 0.5 * b], axis=1), 44100)
    (root / "bad.mp3").write_bytes(b"not audio" * 50)
    (root / "sub" / "notes.txt").write_text("not audio\n")
    sf.write(root / ".hidden.wav", speechy(0.5, 16000, 2), 16000)
    return root


def run(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_a_folder_animates_as_single_files_do_and_resumes(checkpoint, tmp_path):
    lines, out = lines_folder(tmp_path / "lines"), tmp_path / "out"
    args = ("animate", lines, "-o", out, "--model", checkpoint, "--runtime", "torch", "--format", "csv",
            "--no-progress")
    p = run(*args)
    assert p.returncode == 1, p.stderr
    assert "bad.mp3" in p.stderr and "1 file(s) failed" in p.stderr
    assert sorted(q.relative_to(out).as_posix() for q in out.rglob("*.csv")) == ["a.csv", "sub/b.csv"]
    for audio, csv in ((lines / "a.wav", out / "a.csv"), (lines / "sub" / "b.flac", out / "sub" / "b.csv")):
        single = tmp_path / "single" / csv.name
        q = run("animate", audio, "-o", single, "--model", checkpoint, "--runtime", "torch", "--no-progress")
        assert q.returncode == 0, q.stderr
        assert csv.read_bytes() == single.read_bytes()  # bit for bit what `animate FILE` writes
    report = json.loads((out / REPORT_NAME).read_text())
    assert (report["files"], report["animated"], report["skipped"], report["failed"]) == (3, 2, 0, 1)
    assert report["audio_s"] == pytest.approx((num_frames(1.2, 30.0) + num_frames(0.7, 30.0)) / 30.0, abs=2e-3)
    assert report["failures"][0]["audio"].endswith("bad.mp3")
    stamps = {q: q.stat().st_mtime_ns for q in out.rglob("*.csv")}

    # again: what is done is skipped, the failed file is tried again (and fails again)
    p = run(*args)
    assert p.returncode == 1
    report = json.loads((out / REPORT_NAME).read_text())
    assert (report["animated"], report["skipped"], report["failed"]) == (0, 2, 1)
    assert {q: q.stat().st_mtime_ns for q in out.rglob("*.csv")} == stamps

    # the corrupt file gone, a.wav changed, b's output deleted: exactly those two run again
    (lines / "bad.mp3").unlink()
    sf.write(lines / "a.wav", speechy(1.5, 16000, 3), 16000)
    (out / "sub" / "b.csv").unlink()
    p = run(*args)
    assert p.returncode == 0, p.stderr
    report = json.loads((out / REPORT_NAME).read_text())
    assert (report["files"], report["animated"], report["skipped"], report["failed"]) == (2, 2, 0, 0)
    assert len((out / "a.csv").read_text().splitlines()) == 1 + num_frames(1.5, 30.0)

    # other settings: everything runs again
    (out / LOG_NAME).open("a").write('{"version": 1, "out": "a.cs')  # a run killed mid-line
    p = run(*args[:-1], "--fps", "60", "--no-progress")
    assert p.returncode == 0, p.stderr
    report = json.loads((out / REPORT_NAME).read_text())
    assert (report["animated"], report["skipped"]) == (2, 0)
    assert len((out / "a.csv").read_text().splitlines()) == 1 + num_frames(1.5, 60.0)


@pytest.mark.parametrize("runtime", ["native", "torch"])
def test_two_jobs_write_what_one_does(checkpoint, tmp_path, runtime):
    lines = tmp_path / "lines"
    lines.mkdir()
    for i, (sec, rate) in enumerate(((0.9, 16000), (1.3, 22050), (0.6, 48000))):
        sf.write(lines / f"l{i}.wav", speechy(sec, rate, i), rate)
    # a worker runs torch on one thread: so does the one-job run here (other thread counts sum in
    # another order and change the last digits in torch; the C step has one order)
    one = animate_batch([str(lines)], tmp_path / "one", checkpoint, runtime=runtime, progress=False, threads=1)
    two = animate_batch([str(lines)], tmp_path / "two", checkpoint, runtime=runtime, progress=False, jobs=2)
    assert (one["animated"], two["animated"], two["jobs"]) == (3, 3, 2)
    for i in range(3):
        assert (tmp_path / "one" / f"l{i}.json").read_bytes() == (tmp_path / "two" / f"l{i}.json").read_bytes()


def test_bad_plans_fail_before_anything_is_written(tmp_path):
    lines = tmp_path / "lines"
    lines.mkdir()
    sf.write(lines / "a.wav", speechy(0.3, 16000, 0), 16000)
    sf.write(lines / "a.flac", speechy(0.3, 16000, 1), 16000)
    with pytest.raises(ValueError, match=r"a\.flac and .*a\.wav would both write .*a\.json"):
        plan([lines], tmp_path / "out", "json")
    with pytest.raises(FileNotFoundError, match="nothing.wav: no such file"):
        plan([lines / "a.wav", tmp_path / "nothing.wav"], tmp_path / "out", "json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no audio files"):
        plan([tmp_path / "empty"], tmp_path / "out", "json")
    assert not (tmp_path / "out").exists()
    # the output folder inside the input folder is not walked; names keep their inner dots
    (lines / "a.flac").rename(lines / "b.take2.flac")
    (lines / "out").mkdir()
    sf.write(lines / "out" / "old.wav", speechy(0.3, 16000, 2), 16000)
    jobs = plan([lines], lines / "out", "rhubarb-json")
    assert [j.rel for j in jobs] == ["a.rhubarb.json", "b.take2.rhubarb.json"]
    assert [j.outs for j in jobs] == [(lines / "out" / "a.rhubarb.json",), (lines / "out" / "b.take2.rhubarb.json",)]
    # several formats: a clash between two of them is a clash too
    sf.write(lines / "a.rhubarb.wav", speechy(0.3, 16000, 3), 16000)
    with pytest.raises(ValueError, match=r"a\.rhubarb\.wav and .*a\.wav would both write .*out/a\.rhubarb\.json"):
        plan([lines], tmp_path / "out", ("rhubarb-json", "json"))


def test_several_formats_from_one_animation(checkpoint, tmp_path):
    lines, out = tmp_path / "lines", tmp_path / "out"
    lines.mkdir()
    sf.write(lines / "a.wav", speechy(0.8, 16000, 0), 16000)
    sf.write(lines / "b.ogg", speechy(0.6, 22050, 1), 22050)
    args = ("animate", lines, "-o", out, "--model", checkpoint, "--format", "csv,glb,oculus,vrm", "--no-progress")
    p = run(*args)
    assert p.returncode == 0, p.stderr
    for name in ("a", "b"):
        audio = lines / (name + (".wav" if name == "a" else ".ogg"))
        for suffix in (".csv", ".glb", ".oculus.json", ".vrm.json"):
            single = tmp_path / "single" / (name + suffix)
            q = run("animate", audio, "-o", single, "--model", checkpoint, "--no-progress")
            assert q.returncode == 0, q.stderr
            assert (out / (name + suffix)).read_bytes() == single.read_bytes(), (name, suffix)
    (out / "b.glb").unlink()
    p = run(*args)
    report = json.loads((out / REPORT_NAME).read_text())
    assert p.returncode == 0 and (report["animated"], report["skipped"]) == (1, 1)
    assert (out / "b.glb").exists()
    p = run(*args[:-3], "--format", "csv,mp4")
    assert p.returncode == 1 and "--format 'csv,mp4': use one or more of" in p.stderr


def test_an_output_folder_that_is_a_file_is_refused(checkpoint, tmp_path):
    sf.write(tmp_path / "a.wav", speechy(0.3, 16000, 0), 16000)
    sf.write(tmp_path / "b.wav", speechy(0.3, 16000, 1), 16000)
    (tmp_path / "out").write_text("")
    p = run("animate", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "out", "--model", checkpoint)
    assert p.returncode == 1 and "out: is a file" in p.stderr
    assert os.path.getsize(tmp_path / "out") == 0


def test_ctrl_c_stops_a_batch_soon_and_the_next_run_finishes_it(checkpoint, tmp_path):
    lines, out = tmp_path / "lines", tmp_path / "out"
    lines.mkdir()
    for i in range(200):
        sf.write(lines / f"l{i:03d}.wav", speechy(1.0, 16000, i), 16000)
    args = [*CLI, "animate", lines, "-o", out, "--model", checkpoint, "--runtime", "torch", "--jobs", "2",
            "--no-progress"]
    p = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    log, deadline = out / LOG_NAME, time.time() + 300
    while (not log.exists() or len(log.read_text().splitlines()) < 10) and p.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    logged = len(log.read_text().splitlines())
    written = len(list(out.glob("*.json"))) - 1  # less the report, if any
    assert 10 <= logged < 200
    # only the files in flight (2 workers, one more queued each) may have been written unlogged
    assert written <= logged + 4, (written, logged)
    assert not list(out.glob(".*.tmp"))
    p = run(*args[len(CLI):])
    assert p.returncode == 0, p.stderr
    report = json.loads((out / REPORT_NAME).read_text())
    assert (report["files"], report["skipped"], report["animated"]) == (200, logged, 200 - logged)
