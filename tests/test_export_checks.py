"""`distilface export` and `info` refuse what they cannot do before anything is written, naming the
path and the problem: options that do not go together, an -o whose suffix is not the format
written, a --march the compiler refuses, a folder where a file goes, an unwritable place, and an
export given where a checkpoint is taken. An engine kit is all or nothing: a failed or
interrupted build leaves the old kit, its .dfn included, byte for byte as it was."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from distilface.cli import main
from distilface.runtime import kit as kitmod
from distilface.runtime import native

MODEL = "c0-4-256ms"  # the smallest shipped model
KIT_FILES = ("m.dfn", "libdistilface.so", "dfstep.h", "DistilFace.cs", "Example.cs", "kit.json")
needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")


def _refused(*args) -> str:
    """The one-line error of the real CLI's main (SystemExit's message)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert isinstance(e.value.code, str), e.value.code
    return e.value.code


def _old_kit(folder: Path) -> dict[str, bytes]:
    """A kit folder of recognisable files, which a refused or failed run must leave alone."""
    folder.mkdir(parents=True)
    files = {name: f"old {name}\n".encode() for name in KIT_FILES}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _contents(folder: Path) -> dict[str, bytes]:
    """Every entry of the folder (a left-over stage folder would show up too)."""
    return {p.name: p.read_bytes() if p.is_file() else b"<folder>" for p in folder.iterdir()}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A kit built with a default --march the compiler refuses while compiling the step (the trial
    on an empty file passing): built portable, and kit.json says so."""
    if native.compiler() is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("kit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kitmod, "DEFAULT_MARCH", "bogus")
        mp.setattr(kitmod, "_refusal", lambda cc, flags: None)
        with pytest.warns(RuntimeWarning, match="-O3 -march=bogus .* refused"):
            main(["export", MODEL, "--native", "-o", str(d / "m.dfn"), "--engine-kit"])
    return d


def test_kit_with_npz_refused_before_the_npz_is_written(tmp_path):
    (tmp_path / "keep.npz").write_bytes(b"sentinel")
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "keep.npz", "--engine-kit")
    assert "keep.npz: an engine kit goes with a .dfn file" in msg
    assert (tmp_path / "keep.npz").read_bytes() == b"sentinel"


@pytest.mark.parametrize("name, native_, said", [
    ("x.dfn", False, "an ONNX export is written to a .onnx file"),
    ("x.npz", False, "an ONNX export is written to a .onnx file"),
    ("x.txt", False, "an ONNX export is written to a .onnx file"),
    ("x", False, "an ONNX export is written to a .onnx file"),
    ("x.ONNX", False, "name it x.onnx (lowercase)"),
    ("x.onnx", True, "--native writes a .npz (for Python) or a .dfn (for C callers)"),
    ("x.DFN", True, "name it x.dfn (lowercase)"),
])
def test_output_suffix_must_match_the_format(tmp_path, name, native_, said):
    (tmp_path / name).write_bytes(b"sentinel")
    msg = _refused("export", MODEL, "-o", tmp_path / name, *(["--native"] if native_ else []))
    assert msg.startswith(f"distilface export: {tmp_path / name}: ") and said in msg
    assert (tmp_path / name).read_bytes() == b"sentinel"


@needs_cc
def test_named_march_the_compiler_refuses_fails_before_writing(tmp_path):
    old = _old_kit(tmp_path / "kit")
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "kit" / "m.dfn", "--engine-kit", "--march", "bogus")
    assert f"{tmp_path / 'kit' / 'm.dfn'}: " in msg and "refuses -march=bogus" in msg
    assert _contents(tmp_path / "kit") == old
    _refused("export", MODEL, "--native", "-o", tmp_path / "new" / "m.dfn", "--engine-kit", "--march", "bogus")
    assert not (tmp_path / "new").exists()


@needs_cc
def test_default_march_refused_builds_portable_and_says_so(tmp_path, kit):
    with pytest.warns(RuntimeWarning, match="refuses -march=bogus"):
        plan = kitmod.plan_engine_kit(tmp_path / "m.dfn", march="bogus")  # the trial on an empty file
    assert plan.flags == native.CFLAGS_PORTABLE
    meta = json.loads((kit / "kit.json").read_text())  # the step itself refused (fixture)
    assert meta["step_flags"] == list(native.CFLAGS_PORTABLE)
    assert set(meta["files"]) == set(KIT_FILES) - {"kit.json"}


def test_kit_refused_where_a_folder_is_in_the_way(tmp_path):
    old = _old_kit(tmp_path / "kit")
    (tmp_path / "kit" / "kit.json").unlink()
    (tmp_path / "kit" / "kit.json").mkdir()
    old["kit.json"] = b"<folder>"
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "kit" / "m.dfn", "--engine-kit")
    assert f"{tmp_path / 'kit' / 'kit.json'}: is a folder" in msg
    assert _contents(tmp_path / "kit") == old


@needs_cc
def test_failed_kit_build_leaves_the_old_kit_and_its_dfn(tmp_path, monkeypatch):
    """The compiler refuses the named level only on the step itself: the .dfn was exported and
    the library built, in the stage; nothing of it reaches the kit folder."""
    old = _old_kit(tmp_path / "kit")
    monkeypatch.setattr(kitmod, "_refusal", lambda cc, flags: None)
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "kit" / "m.dfn", "--engine-kit", "--march", "bogus")
    assert f"{tmp_path / 'kit' / 'm.dfn'}: " in msg and "-march=bogus" in msg
    assert _contents(tmp_path / "kit") == old


def _compiling(folder: Path) -> bool:
    """Whether the C compiler is at work somewhere under `folder` (native.compile_library's folder)."""
    for root, dirs, _ in os.walk(folder):
        if any(d.startswith(".libdistilface.so.") and d.endswith(".build") for d in dirs):
            return True
    return False


@needs_cc
def test_ctrl_c_during_the_kit_build_leaves_the_old_kit(tmp_path):
    old = _old_kit(tmp_path / "kit")
    proc = subprocess.Popen([sys.executable, "-m", "distilface.cli", "export", MODEL, "--native", "-o",
                             str(tmp_path / "kit" / "m.dfn"), "--engine-kit"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _compiling(tmp_path / "kit"):
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before it was interrupted"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "distilface export: interrupted" in err, err
    assert _contents(tmp_path / "kit") == old


def test_unwritable_places_named_by_the_output(tmp_path):
    try:  # /sys refuses new files even to root; elsewhere (another OS, a container) skip that case
        os.close(tempfile.mkstemp(dir="/sys")[0])
        sys_writable = True
    except OSError:
        sys_writable = False
    if not sys_writable:
        # Permission denied, or Read-only file system where /sys is mounted read-only
        assert _refused("export", MODEL, "-o", "/sys/x.onnx").startswith(
            "distilface export: /sys/x.onnx: cannot write there (")
    (tmp_path / "a.wav").write_bytes(b"sentinel")
    msg = _refused("export", MODEL, "-o", tmp_path / "a.wav" / "x.onnx")
    assert msg == f"distilface export: {tmp_path / 'a.wav' / 'x.onnx'}: {tmp_path / 'a.wav'} is a file, not a folder"
    assert (tmp_path / "a.wav").read_bytes() == b"sentinel"
    (tmp_path / "d.npz").mkdir()
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "d.npz")
    assert msg.startswith(f"distilface export: {tmp_path / 'd.npz'}: is a folder")
    assert not list((tmp_path / "d.npz").iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "d.npz"]


@needs_cc
def test_info_and_export_of_an_export_say_what_it_is(tmp_path, kit, capsys):
    main(["export", MODEL, "-o", str(tmp_path / "m.onnx")])
    main(["export", MODEL, "--native", "-o", str(tmp_path / "m.npz")])
    capsys.readouterr()
    for path, kind in ((tmp_path / "m.onnx", "an ONNX export"),
                       (tmp_path / "m.npz", "a .npz file (a native export or curves)"),
                       (kit / "m.dfn", "a native export (.dfn)")):
        assert _refused("info", path).startswith(f"distilface info: {path}: {kind}, not a checkpoint; info and "
                                                 f"export take a checkpoint (.pt) or a shipped model name")
        (tmp_path / "out.onnx").write_bytes(b"sentinel")
        assert f"export: {path}: {kind}, not a checkpoint" in _refused("export", path, "-o", tmp_path / "out.onnx")
        assert (tmp_path / "out.onnx").read_bytes() == b"sentinel"


def test_a_compiler_that_cannot_run_is_named_before_writing(tmp_path, monkeypatch):
    files = _old_kit(tmp_path / "kit")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "kit" / "m.dfn", "--engine-kit")
    assert msg == (f"distilface export: the C compiler '{tmp_path / 'no-such-cc'}' (from $CC) cannot run: "
                   "No such file or directory")
    assert {n: (tmp_path / "kit" / n).read_bytes() for n in files} == files


def test_named_march_refused_only_by_the_real_build_fails_and_keeps_the_old_kit(tmp_path, monkeypatch):
    files = _old_kit(tmp_path / "kit")
    monkeypatch.setattr(kitmod, "_refusal", lambda cc, flags: None)  # the empty-file trial passes
    msg = _refused("export", MODEL, "--native", "-o", tmp_path / "kit" / "m.dfn", "--engine-kit", "--march", "bogus")
    assert msg.startswith(f"distilface export: {tmp_path / 'kit' / 'm.dfn'}: ") and "refuses -O3 -march=bogus" in msg
    assert {n: (tmp_path / "kit" / n).read_bytes() for n in files} == files
