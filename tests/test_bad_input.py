"""Bad input through the real CLI (docs/robustness.md): every odd file of tests/badaudio.py through
`animate`, `stream --input wav:`, `eval` (a manifest) and `corpus ingest` (a folder), with the
result's values or the one error line checked; a 2-hour file animated and streamed in bounded
memory; hypothesis fuzzing of audio loading, the animate reading path and the stream's PCM
inputs (stdin and WebSocket) for a bounded number of examples (DISTILFACE_FUZZ_EXAMPLES)."""

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from test_animate import checkpoint  # noqa: F401 - a fixture: the tiny checkpoint
from badaudio import TRANSCRIPT, Case, example_speech, speechy, write_bad_audio, write_long_wav
from distilface.animate import animate_audio, animate_file, load_model
from distilface.audio import EXAMPLE_AUDIO, AudioError, load_audio
from distilface.cli import main
from distilface.curves import num_frames
from distilface.formats import LLF_BLENDSHAPES, read_curves_any
from distilface.models import resolve_model

CLI = [sys.executable, "-m", "distilface.cli"]
FPS = 30.0
FUZZ_EXAMPLES = int(os.environ.get("DISTILFACE_FUZZ_EXAMPLES", "200"))  # per fuzz test; ~20 s in all
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LONG_HOURS = 2.0
LONG_FPS = 10.0  # the long runs check the reading path: fewer frames, same audio


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    torch.set_flush_denormal(False)  # the in-process CLI sets it (animate, stream): not for later modules


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> tuple[Path, dict[str, Case]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_audio(folder)


@pytest.fixture(scope="module")
def shipped():
    return load_model(resolve_model(None))


@pytest.fixture(scope="module")
def tiny_ckpt(checkpoint) -> Path:
    return checkpoint  # test_animate's tiny random student (channels 16)


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    return load_model(tiny_ckpt, runtime="torch")  # the reference; the CLI runs it in C where it can


def cli(*args) -> int | str:
    """The real CLI in this process -> 0 when it returned, else the exit code or sys.exit's message."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if e.code is not None else 0
    return 0


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("distilface")]


def jaw_corr(a: np.ndarray, b: np.ndarray, names) -> float:
    j = list(names).index("jawOpen")
    return float(np.corrcoef(a[:, j], b[:, j])[0, 1])


# -- animate ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def animated(bad, tmp_path_factory):
    """`distilface animate` (shipped default) on every case, in this process ->
    {name: (exit code or message, curves values or None, warning lines)}."""
    folder, cases = bad
    out_dir = tmp_path_factory.mktemp("animated")
    logger = logging.getLogger("distilface")
    results = {}
    for name in cases:
        out = out_dir / f"{name}.npz"
        handler = _ListHandler()
        logger.addHandler(handler)
        try:
            code = cli("animate", folder / name, "-o", out, "--no-progress", "--threads", "1")
        finally:
            logger.removeHandler(handler)
        values = read_curves_any(out).values if out.exists() else None
        results[name] = (code, values, handler.lines)
    return results


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_animate_errors_are_one_line_naming_the_file(bad, animated):
    folder, cases = bad
    for name, case in cases.items():
        code, values, _ = animated[name]
        if not case.fails:
            continue
        assert isinstance(code, str) and values is None, (name, code)
        assert code.startswith(f"distilface animate: {folder / name}: "), code
        assert case.match in code and "\n" not in code and "Traceback" not in code, code


def test_animate_results_frames_and_warnings(bad, animated, shipped):
    folder, cases = bad
    for name, case in cases.items():
        code, values, warned = animated[name]
        if case.fails:
            continue
        assert code == 0, (name, code)
        assert values.shape == (num_frames(case.duration_s, FPS), 52), name
        assert np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1, name
        if case.outcome == "warn":
            assert len(warned) == 1 and warned[0].startswith(f"{folder / name}: ") and case.match in warned[0], warned
        else:
            assert warned == [], (name, warned)
        # the block reader equals the whole-file loader with the same conditioning
        whole = animate_audio(shipped, load_audio(folder / name, conditioned=True), FPS).values
        np.testing.assert_allclose(values, whole, atol=1e-4, rtol=0, err_msg=name)


def test_animate_values_match_the_clean_clip(bad, animated, shipped):
    """Formats that carry the same speech give the clean clip's animation (the shipped student)."""
    names = tuple(shipped.names) if hasattr(shipped, "names") else shipped.cfg.names  # C runtime or torch
    x = example_speech()
    clean = animate_audio(shipped, x, FPS).values
    got = {name: animated[name][1] for name in bad[1] if animated[name][1] is not None}
    for name in ("wav_named.mp3", "pcm_24.wav", "float64.wav"):  # lossless: the same samples
        np.testing.assert_allclose(got[name], clean, atol=1e-5, rtol=0, err_msg=name)
    # a +0.25 DC offset is subtracted: the student sees the clean clip (it would not follow it
    # otherwise). The file's mean goes, so the clip's own small mean goes with it: exactly the clip
    # minus its mean, and within 0.01 of the clean clip (the default's log-mel front end reads that
    # tiny mean in the quietest frames: 0.009 at most, against 0.005 for the raw-audio C0/2)
    np.testing.assert_allclose(got["dc_offset.wav"], animate_audio(shipped, x - x.mean(), FPS).values,
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["dc_offset.wav"], clean, atol=1e-2, rtol=0)
    # Why the subtraction matters: a raw-audio student does not follow the offset clip. (The
    # default's log-mel front end barely sees a constant: jaw correlation 0.995 without it.)
    raw = load_model(resolve_model("c0-2-256ms-ft"))
    assert jaw_corr(animate_audio(raw, x + 0.25, FPS).values, animate_audio(raw, x, FPS).values, names) < 0.8
    # float audio at integer scale is scaled to peak 1: the clip at its own peak
    np.testing.assert_allclose(got["float_unnormalised.wav"], animate_audio(shipped, x / np.abs(x).max(), FPS).values,
                               atol=1e-4, rtol=0)
    # jaw correlation with the clean clip; the default v2 (log-mel front end) measured 0.9996,
    # 0.9995, 0.898, 0.985, 0.718, 0.999: it follows 8 kHz and clipped speech less closely than the
    # raw-audio c0-2-256ms-ft did (> 0.95, > 0.8), its model card says so
    for name, min_corr in (("rate_96k.wav", 0.995), ("six_channels.wav", 0.99), ("rate_8k.wav", 0.85),
                           ("pcm_u8.wav", 0.9), ("clipped.wav", 0.65), ("float_unnormalised.wav", 0.95)):
        assert jaw_corr(got[name], clean, names) > min_corr, name
    # a truncated file animates what it holds: equal to the clean clip until its future context runs out
    keep = int((2.0 - 0.3) * FPS)
    np.testing.assert_allclose(got["truncated_data.wav"][:keep], clean[:keep], atol=1e-4, rtol=0)
    # silence: one pose, the rest pose, mouth closed
    silent = got["silence.wav"]
    assert np.ptp(silent, axis=0).max() < 1e-6
    assert silent[0, list(names).index("jawOpen")] < 0.1


def test_real_console_output(bad, tiny_ckpt, tmp_path):
    """Subprocess runs: exactly one stderr line for an error, a warning line plus the result, nothing
    for a good file."""
    folder, _ = bad

    def run(*args, env=None):
        return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **(env or {})})

    for name, problem in (("notes.wav", "corrupt"),):
        proc = run("animate", folder / name, "-o", tmp_path / "o.json", "--model", tiny_ckpt, "--no-progress")
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"distilface animate: {folder / name}: ") and problem in lines[0]
        assert proc.stdout == ""
    proc = run("animate", folder / "clipped.wav", "-o", tmp_path / "c.json", "--model", tiny_ckpt, "--no-progress")
    assert proc.returncode == 0 and proc.stdout.strip() == f"wrote: {tmp_path / 'c.json'}"
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]]
    assert proc.stderr.startswith(f"WARNING distilface.animate: {folder / 'clipped.wav'}: audio is clipped")
    proc = run("animate", folder / "wav_named.mp3", "-o", tmp_path / "m.json", "--model", tiny_ckpt, "--no-progress")
    assert proc.returncode == 0 and proc.stderr == ""
    proc = run("stream", "--input", f"wav:{folder / 'truncated_header.wav'}", "--model", tiny_ckpt)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"distilface stream: {folder / 'truncated_header.wav'}: " + proc.stderr.split(": ", 2)[2].strip()]


def test_debug_shows_tracebacks_and_bugs_are_not_swallowed(monkeypatch, bad, tiny_ckpt, tmp_path):
    monkeypatch.setenv("DISTILFACE_DEBUG", "1")  # an expected error raises, with its traceback
    with pytest.raises(AudioError, match="notes.wav"):
        main(["animate", str(bad[0] / "notes.wav"), "-o", str(tmp_path / "o.json"), "--model", str(tiny_ckpt)])
    monkeypatch.delenv("DISTILFACE_DEBUG")
    code = cli("animate", bad[0] / "missing.wav", "-o", tmp_path / "x.json", "--model", "no/such/model.pt")
    assert isinstance(code, str) and code.startswith("distilface animate: ") and "model.pt" in code

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("distilface.animate.animate_command", bug)  # anything unexpected: a traceback
    with pytest.raises(RuntimeError, match="a bug"):
        main(["animate", str(bad[0] / "pcm_24.wav"), "-o", str(tmp_path / "x.json")])


# -- outputs, models and options ---------------------------------------------------------------

def test_animate_output_problems_fail_before_the_run_naming_the_target(bad, tiny_ckpt, tmp_path):
    """Where the curves cannot go, animate says so up front (never naming its temporary file), and
    an output that is the input audio is refused: the audio stays as it was."""
    folder, _ = bad
    audio = tmp_path / "speech.wav"
    shutil.copy(folder / "pcm_24.wav", audio)
    before = audio.read_bytes()
    (tmp_path / "odir").mkdir()
    cases = [(audio, ["--format", "csv"], f"{audio}: is the input file"),
             (tmp_path / "odir", ["--format", "json"], f"{tmp_path / 'odir'}: is a folder"),
             (audio / "x.json", [], f"{audio / 'x.json'}: {audio} is a file, not a folder")]
    if Path("/sys/kernel").is_dir():  # sysfs takes no new files, even from root
        cases.append((Path("/sys/x.json"), [], "/sys/x.json: cannot write there"))
    for out, extra, message in cases:
        code = cli("animate", audio, "-o", out, "--model", tiny_ckpt, "--no-progress", *extra)
        assert isinstance(code, str) and code.startswith(f"distilface animate: {message}"), code
        assert ".tmp" not in code and ".probe" not in code
    assert audio.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["odir", "speech.wav"]


def test_animate_npz_by_format_or_upper_case_extension(bad, tiny_ckpt, tmp_path):
    from distilface.curves import load_curves

    folder, _ = bad
    assert cli("animate", folder / "pcm_24.wav", "-o", tmp_path / "a.NPZ", "--model", tiny_ckpt, "--no-progress") == 0
    assert cli("animate", folder / "pcm_24.wav", "-o", tmp_path / "b.csv", "--format", "npz", "--model", tiny_ckpt,
               "--no-progress") == 0
    a = load_curves(tmp_path / "a.NPZ")
    with np.load(tmp_path / "b.csv") as b:  # --format wins over the extension, as for every format
        np.testing.assert_array_equal(b["values"], a.values)
    assert a.num_frames == num_frames(3.29, FPS) and a.values.shape[1] == 52


def test_damaged_models_and_bad_options_are_one_line_errors(bad, tiny_ckpt, tmp_path):
    folder, _ = bad
    audio = folder / "pcm_24.wav"
    onnx_text, onnx_empty = tmp_path / "m.onnx", tmp_path / "empty.onnx"
    onnx_text.write_text("not a model")
    onnx_empty.write_bytes(b"")
    npz_text, npz_empty, npz_cut = tmp_path / "m.npz", tmp_path / "empty.npz", tmp_path / "cut.npz"
    npz_text.write_text("not a model")
    npz_empty.write_bytes(b"")
    np.savez(tmp_path / "whole.npz", x=np.zeros(1000))
    npz_cut.write_bytes((tmp_path / "whole.npz").read_bytes()[:300])
    for model, message in ((onnx_text, "not a readable ONNX model"), (onnx_empty, "not a readable ONNX model"),
                           (npz_text, "not a DistilFace native model (not an .npz archive)"),
                           (npz_empty, "not a DistilFace native model (empty)"),
                           (npz_cut, "not a DistilFace native model")):
        for command in (["animate", audio, "-o", tmp_path / "o.json", "--no-progress"],
                        ["stream", "--input", f"wav:{audio}", "--no-realtime"]):
            code = cli(*command, "--model", model)
            assert isinstance(code, str) and code.startswith(f"distilface {command[0]}: {model}: {message}"), code
    for option, value, message in (("--smooth", "nan,1,1", "smoothing weights 'nan,1,1': expected three finite"),
                                   ("--smooth", "1,inf,1", "expected three finite"),
                                   ("--fps", "inf", "argument --fps: inf is not a frame rate"),
                                   ("--fps", "1e9", "argument --fps: 1e9 is not a frame rate"),
                                   ("--threads", "-1", "argument --threads: -1: at least 1 thread"),
                                   ("--threads", "0", "argument --threads: 0: at least 1 thread")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli("animate", audio, "-o", tmp_path / "o.json", "--model", tiny_ckpt, option, value)
        assert code == 2 or isinstance(code, str), code
        assert message in (code if isinstance(code, str) else err.getvalue()), (option, value, code, err.getvalue())
    assert not (tmp_path / "o.json").exists()


# -- stream --input wav:PATH ------------------------------------------------------------------

def test_stream_wav_input_same_outcomes(bad, animated, tmp_path):
    """`stream --input wav:PATH --no-realtime`: the same errors as animate, and the same frames."""
    from distilface.rig.arkit import ARKIT_52

    folder, cases = bad
    order = [ARKIT_52.index(n[0].lower() + n[1:]) for n in LLF_BLENDSHAPES]  # Live Link Face -> ARKit columns
    for name, case in cases.items():
        out = tmp_path / f"{name}.csv"
        code = cli("stream", "--input", f"wav:{folder / name}", "--no-realtime", "--output", f"csv:{out}",
                      "--threads", "1", "--chunk-ms", "100", "--model", str(resolve_model(None)))  # animate's model
        if case.fails:
            assert isinstance(code, str) and code.startswith(f"distilface stream: {folder / name}: "), code
            assert case.match in code and not out.exists()
            continue
        assert code == 0, (name, code)
        rows = out.read_text().splitlines()[1:]
        want = animated[name][1]
        assert len(rows) == len(want), name
        llf = np.array([r.split(",")[2: 2 + len(LLF_BLENDSHAPES)] for r in rows], float)
        np.testing.assert_allclose(llf, want[:, order], atol=1e-4, rtol=0, err_msg=name)


def test_stream_csv_is_complete_or_the_old_file_stays(bad, tiny_ckpt, tmp_path):
    """`--output csv:F` never empties what it reads, and replaces F only with a finished recording:
    a file input stopped by SIGINT exits 130 and leaves the old F whole (the rows so far in a .part)."""
    import signal
    import time

    folder, _ = bad
    audio = tmp_path / "speech.wav"
    shutil.copy(folder / "pcm_24.wav", audio)
    before = audio.read_bytes()
    code = cli("stream", "--input", f"wav:{audio}", "--no-realtime", "--output", f"csv:{audio}", "--model", tiny_ckpt)
    assert code == f"distilface stream: {audio}: is the input file; give the output another name"
    assert audio.read_bytes() == before

    out = tmp_path / "take.csv"
    assert cli("stream", "--input", f"wav:{audio}", "--no-realtime", "--output", f"csv:{out}", "--model",
               tiny_ckpt) == 0
    whole = out.read_bytes()
    assert len(whole.splitlines()) == 1 + num_frames(3.29, FPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav", "take.csv"]  # no .part left

    long_audio = tmp_path / "long.wav"
    write_long_wav(long_audio, 60 / 3600)  # a minute, at real-time pace: stopped after a few seconds
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):  # as a shell reports them
        proc = subprocess.Popen([*CLI, "stream", "--input", f"wav:{long_audio}", "--output", f"csv:{out}",
                                 "--model", str(tiny_ckpt)], stderr=subprocess.PIPE, text=True)
        parts = []
        deadline = time.monotonic() + 120
        while not parts and time.monotonic() < deadline:  # rows are being written: the stream is live
            parts = [p for p in tmp_path.glob("take.csv.*.part") if len(p.read_bytes().splitlines()) > 10]
            time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == status, err
        assert f"interrupted before the end of {long_audio}" in err and "left as it was" in err
        assert out.read_bytes() == whole
        assert len(parts) == 1 and parts[0].exists() and str(parts[0]) in err
        parts[0].unlink()


def test_stream_output_addresses_are_named(tiny_ckpt):
    for args, message in ((["--output", "osc", "--osc-host", "no.such.host.invalid"],
                           "--osc-host 'no.such.host.invalid': cannot resolve"),
                          (["--output", "osc", "--osc-port", "0"], "--osc-port 0: not a port to send to"),
                          (["--output", "livelink", "--livelink-host", "999.1.1.1"], "--livelink-host '999.1.1.1'"),
                          (["--output", "ws", "--host", "no.such.host.invalid"],
                           "--host no.such.host.invalid --ws-port 8765: cannot listen there")):
        code = cli("stream", "--input", "stdin", "--model", tiny_ckpt, *args)
        assert isinstance(code, str) and code.startswith(f"distilface stream: {message}"), code


def test_stream_pcm_rates_are_checked():
    for rate, problem in (("3999999", "not supported"), ("0", "not supported"), ("44101", "use a common rate")):
        code = cli("stream", "--input", "stdin", "--rate", rate)
        assert isinstance(code, str) and code.startswith(f"distilface stream: --rate: sample rate {rate} Hz"), code
        assert problem in code


# -- eval and corpus ingest --------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """A real 2-hour 16 kHz 16-bit WAV (230 MB, written in one second), removed after the module."""
    path = write_long_wav(tmp_path_factory.mktemp("long") / "long_2h.wav", LONG_HOURS)
    yield path
    path.unlink()


def test_eval_skips_bad_utterances_naming_them(bad, long_wav, tmp_path, caplog):
    from distilface.manifest import Utterance, write_manifest

    folder, cases = bad
    shutil.copy(EXAMPLE_AUDIO.with_name("example_en.phones.tsv"), tmp_path / "p.tsv")
    (tmp_path / "audio").mkdir()
    files = {}
    for path in [*(folder / n for n in cases), long_wav]:
        files[path.stem] = tmp_path / "audio" / path.name
        os.symlink(path, files[path.stem])
    write_manifest(tmp_path / "m.jsonl", [
        Utterance(id=k, audio=f"audio/{p.name}", phones="p.tsv", duration_s=3.285, voice="v",
                  language="en", source="bad", split="test", text=TRANSCRIPT) for k, p in files.items()])
    with caplog.at_level(logging.WARNING):
        code = cli("eval", "--model", f"shipped={resolve_model(None)}", "--out", tmp_path / "out", "--sets", "real",
                      "--real", tmp_path / "m.jsonl", "--timing-runs", "1", "--max-utterances", "100")
    assert code == 0
    real = json.loads((tmp_path / "out" / "eval.json").read_text())["test_sets"]["real"]
    failed = {line.split(":")[0]: line for line in real["failed_utterances"]}
    errors = {Path(n).stem: c for n, c in cases.items() if c.fails}
    assert set(failed) == set(errors) | {"long_2h"}
    for stem, line in failed.items():
        path = files[stem]
        assert f"AudioError: {path}: " in line, line
        assert (errors[stem].match if stem in errors else "7200.0 s long") in line, line
        assert any(str(path) in w for w in warnings_of(caplog)), stem
    assert real["utterances"] == len(cases) - len(errors)
    row = next(r for r in json.loads((tmp_path / "out" / "eval.json").read_text())["rows"] if r["model"] == "shipped")
    assert row["utterances"] == real["utterances"] and np.isfinite(row["mse"])


def test_view_and_render_refuse_clips_they_would_hold_whole(long_wav, tmp_path):
    """view sends its clip to the page whole and render muxes it whole: over 30 min they refuse it
    with the file named, before any server starts or frame is drawn."""
    code = cli("view", str(long_wav), "--no-browser", "--port", "0", "--cache-dir", tmp_path / "cache")
    assert isinstance(code, str) and code.startswith(f"distilface view: {long_wav}: 7200.0 s long, over the 1800 s"), code
    curves = tmp_path / "c.json"
    assert cli("animate", EXAMPLE_AUDIO, "-o", curves) == 0
    code = cli("render", curves, long_wav, "--out", tmp_path / "render")
    assert isinstance(code, str) and code.startswith(f"distilface render: {long_wav}: 7200.0 s long"), code
    assert not (tmp_path / "render").exists() or not any((tmp_path / "render").iterdir())


def test_corpus_ingest_skips_bad_files_with_a_warning(bad, long_wav, tmp_path, caplog):
    pytest.importorskip("pocketsphinx")
    folder, cases = bad
    src = tmp_path / "src"
    src.mkdir()
    for name in cases:
        shutil.copy(folder / name, src / name)
        (src / name).with_suffix(".txt").write_text(TRANSCRIPT + "\n")
    os.symlink(long_wav, src / "long_2h.wav")
    (src / "long_2h.txt").write_text(TRANSCRIPT + "\n")
    with caplog.at_level(logging.WARNING):
        code = cli("corpus", "ingest", src, "--out", tmp_path / "out", "--workers", "1")
    assert code == 0
    failures = {r["id"]: r["reason"] for r in map(json.loads, open(tmp_path / "out" / "failures.jsonl"))}
    # audio errors, the 2-hour file, and two files whose words the audio does not hold
    errors = {Path(n).stem for n, c in cases.items() if c.fails}
    assert set(failures) == errors | {"long_2h", "silence", "truncated_data"}
    assert "7200.0 s long" in failures["long_2h"] and "alignment" in failures["silence"]
    skipped = [w for w in warnings_of(caplog) if w.startswith("skipped ")]
    assert len(skipped) == len(failures)
    for stem in failures:
        name = next(n for n in [*cases, "long_2h.wav"] if Path(n).stem == stem)
        assert sum(f"skipped {src / name}: " in w for w in skipped) == 1, stem
    from distilface.manifest import read_manifest, resolve

    manifest = tmp_path / "out" / "manifest.jsonl"
    utts = {u.id: u for u in read_manifest(manifest)}
    assert set(utts) == {Path(n).stem for n in cases} - set(failures)
    stored = load_audio(resolve(manifest, utts["dc_offset"].audio))
    assert abs(float(stored.mean())) < 1e-3  # stored with its DC offset removed
    assert abs(utts["rate_96k"].duration_s - len(example_speech()) / 16000) < 1e-3
    # a folder where nothing can be ingested fails with one line
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    shutil.copy(folder / "notes.wav", only_bad / "notes.wav")
    (only_bad / "notes.txt").write_text(TRANSCRIPT)
    code = cli("corpus", "ingest", only_bad, "--out", tmp_path / "out2", "--workers", "1")
    assert isinstance(code, str) and code.startswith("distilface corpus ingest: ") and "no utterance" in code


# -- the 2-hour file: bounded memory ---------------------------------------------------------

MEASURE = """import atexit, sys
def hwm(path=sys.argv[1]):
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(path, "w").write(line.split()[1])
atexit.register(hwm)
sys.argv = ["distilface"] + sys.argv[2:]
from distilface.cli import main
main()
"""


def peak_rss_mb(tmp_path: Path, *args) -> tuple[float, subprocess.CompletedProcess]:
    """Run the real CLI in a subprocess -> (its peak RSS in MB: VmHWM of its own process, the run)."""
    hwm = tmp_path / "hwm.txt"
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(hwm), *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(hwm.read_text()) / 1024, proc


DECODED_MB = LONG_HOURS * 3600 * 16000 * 4 / 2**20  # the long file as float32 at 16 kHz: 439 MB
needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")


@pytest.fixture(scope="module")
def base_mb(tiny_ckpt, tmp_path_factory) -> float:
    """Peak RSS of `animate` on one minute: the interpreter, torch, the model (about 270 MB)."""
    tmp = tmp_path_factory.mktemp("base")
    write_long_wav(tmp / "short.wav", 1 / 60)
    mb, _ = peak_rss_mb(tmp, "animate", tmp / "short.wav", "-o", tmp / "s.npz", "--model", tiny_ckpt,
                        "--fps", LONG_FPS, "--threads", "1", "--no-progress")
    return mb


@needs_proc
def test_two_hour_file_in_bounded_memory(long_wav, tiny_ckpt, tiny, base_mb, tmp_path):
    peak_mb, _ = peak_rss_mb(tmp_path, "animate", long_wav, "-o", tmp_path / "l.npz", "--model", tiny_ckpt,
                             "--fps", LONG_FPS, "--threads", "1", "--no-progress")
    values = read_curves_any(tmp_path / "l.npz").values
    assert values.shape == (num_frames(LONG_HOURS * 3600, LONG_FPS), 52)
    assert np.all(np.isfinite(values))
    # the first minute of the file is `speechy(60)` as 16-bit PCM: its frames, away from the block's end
    first = np.round(speechy(60.0) * 32768).clip(-32768, 32767) / 32768
    want = animate_audio(tiny, first.astype(np.float32), LONG_FPS).values
    keep = int(50 * LONG_FPS)
    np.testing.assert_allclose(values[:keep], want[:keep], atol=1e-4, rtol=0)
    # memory: blocks, the curves (72,000 x 52) and the output file's buffers on top of the base
    # (measured: +55 MB); never the whole file (DECODED_MB on top)
    assert peak_mb - base_mb < 120 and peak_mb < DECODED_MB, (peak_mb, base_mb)


@needs_proc
def test_two_hour_file_streams_in_bounded_memory(long_wav, tiny_ckpt, base_mb, tmp_path):
    peak_mb, _ = peak_rss_mb(tmp_path, "stream", "--input", f"wav:{long_wav}", "--no-realtime", "--model",
                             tiny_ckpt, "--fps", 1.0, "--chunk-ms", 1000, "--threads", "1",
                             "--output", f"csv:{tmp_path / 'l.csv'}")
    assert (tmp_path / "l.csv").read_text().count("\n") - 1 == num_frames(LONG_HOURS * 3600, 1.0)
    assert peak_mb - base_mb < 60 and peak_mb < DECODED_MB, (peak_mb, base_mb)  # measured: +0 MB


# -- fuzzing ---------------------------------------------------------------------------------

def _small_wav(n: int = 400, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((speechy(n / rate, rate) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _small_file(fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, speechy(0.3, 22050), 22050, format=fmt)
    return buf.getvalue()


SMALL_WAV = _small_wav()
SMALL_FILES = {ext: _small_file(ext[1:].upper()) for ext in (".flac", ".ogg", ".mp3")}
EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".bin")


def _read_both(tiny, path: Path) -> None:
    """load_audio and animate_file on `path`: a clean AudioError or a sane result; if both read it,
    the same animation."""
    results = []
    for read in (lambda: load_audio(path, conditioned=True, max_s=60.0),
                 lambda: animate_file(tiny, path, fps=FPS, block_s=0.05, progress=False)):
        try:
            results.append(read())
        except AudioError as e:
            assert str(path) in str(e) and "\n" not in str(e), str(e)
            results.append(None)
    audio, curves = results
    if audio is not None:
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.all(np.isfinite(audio))
    if curves is not None:
        assert np.all(np.isfinite(curves.values)) and curves.values.shape[1] == 52
    if audio is not None and curves is not None:
        np.testing.assert_allclose(curves.values, animate_audio(tiny, audio, FPS).values, atol=1e-4, rtol=0)


@FUZZ
@given(data=st.binary(max_size=3000), ext=st.sampled_from(EXTENSIONS))
def test_fuzz_random_bytes(tiny, tmp_path, data, ext):
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(data)
    _read_both(tiny, path)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 47), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, len(SMALL_WAV)), ext=st.sampled_from(EXTENSIONS))
def test_fuzz_mutated_wav_headers(tiny, tmp_path, edits, cut, ext):
    raw = bytearray(SMALL_WAV)
    for i, value in edits:  # RIFF size, fmt fields (channels, rate, block align, bits), data size
        raw[i] = value
    path = tmp_path / f"mutant{ext}"
    path.write_bytes(bytes(raw[: max(cut, 12)]))
    _read_both(tiny, path)


@FUZZ
@given(ext=st.sampled_from(sorted(SMALL_FILES)), edits=st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 255)),
                                                                 min_size=1, max_size=8),
       cut=st.integers(200, 10000), named=st.sampled_from(EXTENSIONS))
def test_fuzz_mutated_compressed_files(tiny, tmp_path, ext, edits, cut, named):
    """(Integer strategies only: the in-process CLI turned on flush-denormal, which hypothesis'
    float strategies refuse to run under.)"""
    raw = bytearray(SMALL_FILES[ext])
    for where, value in edits:  # anywhere, in 1/10,000 of the file: headers, frame headers, coded data
        raw[where * len(raw) // 10000] = value
    path = tmp_path / f"mutant{named}"
    path.write_bytes(bytes(raw[: max(cut * len(raw) // 10000, 1)]))
    _read_both(tiny, path)


# -- fuzzing the stream's PCM inputs -----------------------------------------------------------

class Pieces(io.RawIOBase):
    """A pipe that hands out `data` in the given piece sizes (read1 returns one piece)."""

    def __init__(self, data: bytes, sizes: list[int]):
        self.data, self.sizes, self.pos = data, list(sizes), 0

    def readable(self):
        return True

    def read1(self, n=-1):
        size = self.sizes.pop(0) if self.sizes else 4096
        out = self.data[self.pos: self.pos + max(1, min(size, n if n > 0 else size))]
        self.pos += len(out)
        return out

    read = read1


def _valid_pcm(fmt: str, seed: int, n: int) -> bytes:
    from distilface.runtime.sources import encode_pcm

    rng = np.random.default_rng(seed)
    if fmt == "s16le":
        return rng.integers(0, 256, size=2 * n, dtype=np.uint8).tobytes()  # any bytes are valid s16le
    return encode_pcm(rng.uniform(-1, 1, n).astype(np.float32), fmt)


@FUZZ
@given(fmt=st.sampled_from(["s16le", "f32le"]), seed=st.integers(0, 2**16), n=st.integers(0, 6000),
       tail=st.integers(0, 3), sizes=st.lists(st.integers(1, 3000), max_size=20))
def test_fuzz_stdin_pcm_equals_offline(tiny, fmt, seed, n, tail, sizes):
    """Random PCM (a partial last sample, random pipe reads) through the stdin source == offline."""
    from distilface.runtime.live import LiveStream, StreamConfig, StreamThread
    from distilface.runtime.sources import decode_pcm

    pcm = _valid_pcm(fmt, seed, n) + bytes(tail)
    out = io.StringIO()
    with StreamThread(LiveStream(tiny, StreamConfig(input="stdin", outputs=("ndjson",), pcm_format=fmt),
                                 stdin=Pieces(pcm, sizes), stdout=out)) as st_:
        stats = st_.join(60)
    frames = [json.loads(line) for line in out.getvalue().splitlines()]
    want = animate_audio(tiny, decode_pcm(pcm, fmt), FPS).values
    assert [f["frame"] for f in frames] == list(range(len(want))) and stats["frames"] == len(want)
    if len(want):
        got = np.array([[f["blendshapes"][k] for k in tiny.cfg.names] for f in frames])
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def ws_server(tiny):
    """One live server (ws audio in, ws frames out) for every fuzz example: it must survive them all."""
    from distilface.runtime.live import LiveStream, StreamConfig, StreamThread

    live = LiveStream(tiny, StreamConfig(input="ws", outputs=("ws",), ws_port=0, ws_max_message_bytes=4096,
                                         ws_queue_messages=100_000, drain_s=0.2))
    with StreamThread(live) as st_:
        yield live, st_


def _send_and_collect(live, messages, fmt) -> list[dict]:
    """Connects a viewer, sends `messages` as one audio stream, returns that stream's frames."""
    base = f"ws://127.0.0.1:{live.ws_port}"
    got = []
    with connect(base + "/frames", max_size=None) as viewer:
        assert json.loads(viewer.recv(timeout=10))["type"] == "hello"
        with connect(f"{base}/audio?format={fmt}", compression=None) as sender:
            for m in messages:
                sender.send(m)
        stream = None
        while True:
            msg = json.loads(viewer.recv(timeout=30))
            if msg["type"] == "start":
                stream = msg["stream"]
            elif msg["type"] == "frame" and msg["stream"] == stream:
                got.append(msg)
            elif msg["type"] == "end" and msg["stream"] == stream:
                return got


@FUZZ
@given(fmt=st.sampled_from(["s16le", "f32le"]), seed=st.integers(0, 2**16), n=st.integers(1, 6000),
       sizes=st.lists(st.integers(1, 4096), max_size=12), junk=st.sampled_from(["", "text", "garbage"]))
def test_fuzz_ws_pcm_server_lives_and_equals_offline(tiny, ws_server, fmt, seed, n, sizes, junk):
    """Valid PCM split at random message boundaries (a sample split across messages) == offline;
    text messages are ignored; garbage f32 (NaN, inf, 1e38) is zeroed and the frames stay finite;
    after every example the same server takes the next stream."""
    from distilface.runtime.sources import PcmDecoder

    live, st_ = ws_server
    pcm = _valid_pcm(fmt, seed, n)
    if junk == "garbage":
        pcm = np.random.default_rng(seed).integers(0, 256, len(pcm), dtype=np.uint8).tobytes()
    messages, pos = [], 0
    for size in sizes:
        messages.append(pcm[pos: pos + size])
        pos += size
    messages += [pcm[i: i + 4096] for i in range(pos, len(pcm), 4096)]  # the rest, under max_size
    messages = [m for m in messages if m]
    if junk == "text":
        messages.insert(len(messages) // 2, "not audio")
    frames = _send_and_collect(live, messages, fmt)
    samples = PcmDecoder(fmt)(pcm)
    want = animate_audio(tiny, samples, FPS).values
    got = np.array([[f["blendshapes"][k] for k in tiny.cfg.names] for f in frames])
    assert [f["frame"] for f in frames] == list(range(len(want)))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert st_.error is None and live.state == "idle"
