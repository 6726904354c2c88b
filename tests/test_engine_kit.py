"""The engine kit (`export --native --engine-kit`, distilface.runtime.kit): the real CLI writes
the library, header and C# binding beside a checked .dfn with their sha256 sums; the C# binding,
compiled with Mono's mcs and run by mono against that library, streams 48 kHz and 16 kHz PCM to
the torch student's frames, and reports bad files and rates by name."""

import hashlib
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from distilface.animate import animate_audio
from distilface.audio import EXAMPLE_AUDIO, load_audio, resample
from distilface.checkpoint import save_checkpoint
from distilface.cli import main
from distilface.runtime import native
from distilface.smoothing import EnsembleSmoothed
from distilface.student import StudentConfig, build_student

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")


def _student():
    torch.manual_seed(0)
    return build_student(StudentConfig(channels=16, context_groups=8)).eval()


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("kit")
    save_checkpoint(d / "tiny.pt", _student())
    main(["export", str(d / "tiny.pt"), "--native", "-o", str(d / "kit" / "m.dfn"), "--engine-kit"])
    return d / "kit"


def test_kit_files_and_sums(kit, capsys):
    meta = json.loads((kit / "kit.json").read_text())
    assert meta["abi"] == native.ABI and "-march=x86-64-v3" in meta["step_flags"] or meta["machine"] != "x86_64"
    assert set(meta["files"]) == {"m.dfn", "libdistilface.so", "dfstep.h", "DistilFace.cs", "Example.cs"}
    for name, f in meta["files"].items():
        data = (kit / name).read_bytes()
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert (kit / "dfstep.h").read_bytes() == (native.CSRC / "dfstep.h").read_bytes()
    with pytest.raises(SystemExit, match="engine-kit: for the native runtime"):
        main(["export", str(kit.parent / "tiny.pt"), "--engine-kit", "-o", str(kit / "x.onnx")])
    from distilface.runtime.kit import write_engine_kit

    with pytest.raises(ValueError, match="x.npz: an engine kit goes with a .dfn file"):
        write_engine_kit(kit / "x.npz")


def _pcm(rate):
    x = resample(load_audio(EXAMPLE_AUDIO), 16000, rate)
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")


@pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")),
                    reason="Mono (mcs, mono) not installed; scripts/setup.sh installs it")
def test_csharp_binding_streams_like_torch(kit, tmp_path):
    exe = tmp_path / "animate.exe"
    subprocess.run(["mcs", f"-out:{exe}", str(kit / "DistilFace.cs"), str(kit / "Example.cs")], check=True,
                   capture_output=True, timeout=120)
    env = {**os.environ, "LD_LIBRARY_PATH": str(kit)}
    s = _student()
    for rate, fps, smooth in ((48000, 30.0, False), (16000, 60.0, True), (44100, 30.0, True)):
        pcm = _pcm(rate)
        r = subprocess.run(["mono", str(exe), str(kit / "m.dfn"), f"{fps:g}", str(rate)] + (["smooth"] if smooth else []),
                           input=pcm.tobytes(), capture_output=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().splitlines()
        assert lines[0].split(",") == ["frame", "time_s", *s.cfg.names]
        got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
        audio = pcm.astype(np.float32) / 32768
        want = animate_audio(EnsembleSmoothed(s) if smooth else s, resample(audio, rate, 16000), fps).values
        assert got.shape == (len(want), 2 + len(s.cfg.names))
        np.testing.assert_array_equal(got[:, 0], np.arange(len(want)))
        np.testing.assert_allclose(got[:, 2:], want, atol=1e-4, rtol=0)
    r = subprocess.run(["mono", str(exe), str(tmp_path / "none.dfn")], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 1 and "none.dfn: cannot open" in r.stderr
    (tmp_path / "bad.dfn").write_bytes((kit / "m.dfn").read_bytes()[:40])  # cut inside the header
    r = subprocess.run(["mono", str(exe), str(tmp_path / "bad.dfn")], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 1 and "bad.dfn: truncated" in r.stderr
    r = subprocess.run(["mono", str(exe), str(kit / "m.dfn"), "30", "16001"], capture_output=True, text=True,
                       timeout=60, env=env, input="")
    assert r.returncode == 1 and "cannot stream 16001 Hz audio: sample rate not supported" in r.stderr


LIFETIME_CS = r"""
using System;
using System.IO;
static class Lifetime
{
    static int Main(string[] args)
    {
        var audio = new float[16000];
        for (int i = 0; i < audio.Length; i++) audio[i] = 0.3f * (float)Math.Sin(0.05 * i);
        var model = DistilFace.Model.Load(args[0]);
        var fromBytes = DistilFace.Model.Load(File.ReadAllBytes(args[0]), "bytes.dfn");
        var a = new float[64 * model.Outputs];
        var b = new float[64 * model.Outputs];
        int na, nb;
        using (var s = model.CreateStream()) { na = s.Push(audio, audio.Length, a); }
        using (var s = fromBytes.CreateStream()) { nb = s.Push(audio, audio.Length, b); }
        bool same = na == nb && na > 0;
        for (int i = 0; i < na * model.Outputs; i++) same &= a[i] == b[i];
        Console.WriteLine("bytes_equal " + same + " " + na);
        try { DistilFace.Model.Load(new byte[] { 1, 2, 3 }, "junk.dfn"); }
        catch (DistilFace.DistilFaceException e) { Console.WriteLine("bytes_error " + e.Message); }
        // NaN and infinite samples: silence
        var bad = (float[])audio.Clone();
        var zero = (float[])audio.Clone();
        for (int i = 4000; i < 4010; i++) { bad[i] = i % 2 == 0 ? float.NaN : float.PositiveInfinity; zero[i] = 0f; }
        using (var s = model.CreateStream()) { na = s.Push(bad, bad.Length, a); }
        using (var s = model.CreateStream()) { nb = s.Push(zero, zero.Length, b); }
        same = na == nb;
        for (int i = 0; i < na * model.Outputs; i++) same &= a[i] == b[i] && !float.IsNaN(a[i]);
        Console.WriteLine("nonfinite_as_silence " + same);
        // the model disposed while a stream runs: the stream keeps its weights
        var first = new float[64 * model.Outputs];
        int nFirst;
        using (var s = model.CreateStream()) { nFirst = s.Push(audio, audio.Length, first); }
        var live = model.CreateStream();
        model.Dispose();
        na = live.Push(audio, audio.Length, a);
        same = na == nFirst;
        for (int i = 0; i < na * model.Outputs; i++) same &= a[i] == first[i];
        Console.WriteLine("stream_outlives_model " + same + " " + model.OpenStreams);
        live.Dispose();
        try { model.CreateStream(); Console.WriteLine("create_after_dispose no error"); }
        catch (ObjectDisposedException) { Console.WriteLine("create_after_dispose ObjectDisposedException"); }
        Console.WriteLine("open_after " + model.OpenStreams);
        fromBytes.Dispose();
        return 0;
    }
}
"""


@pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")),
                    reason="Mono (mcs, mono) not installed; scripts/setup.sh installs it")
def test_csharp_binding_bytes_lifetime_and_bad_samples(kit, tmp_path):
    """Model.Load(bytes) streams as Model.Load(path); NaN / inf samples are silence; a Stream keeps
    running, with the same frames, after its Model is disposed (counted references); Example.cs
    refuses a non-number."""
    (tmp_path / "Lifetime.cs").write_text(LIFETIME_CS)
    exe = tmp_path / "lifetime.exe"
    subprocess.run(["mcs", f"-out:{exe}", str(kit / "DistilFace.cs"), str(tmp_path / "Lifetime.cs")], check=True,
                   capture_output=True, timeout=120)
    env = {**os.environ, "LD_LIBRARY_PATH": str(kit)}
    r = subprocess.run(["mono", str(exe), str(kit / "m.dfn")], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert got["bytes_equal"] == "True 23"
    assert got["bytes_error"].startswith("junk.dfn: ")
    assert got["nonfinite_as_silence"] == "True"
    assert got["stream_outlives_model"] == "True 1"
    assert got["create_after_dispose"] == "ObjectDisposedException" and got["open_after"] == "0"
    example = tmp_path / "animate.exe"
    subprocess.run(["mcs", f"-out:{example}", str(kit / "DistilFace.cs"), str(kit / "Example.cs")], check=True,
                   capture_output=True, timeout=120)
    r = subprocess.run(["mono", str(example), str(kit / "m.dfn"), "30", "forty-eight"], capture_output=True,
                       text=True, timeout=60, env=env, input="")
    assert r.returncode == 2 and "FPS and RATE_HZ are numbers" in r.stderr


def _wine():
    return shutil.which("wine64") or ("/usr/lib/wine/wine64" if os.access("/usr/lib/wine/wine64", os.X_OK) else None)


@pytest.mark.skipif(not (shutil.which("x86_64-w64-mingw32-gcc") and _wine()),
                    reason="MinGW-w64 and Wine not installed (scripts/setup-extra.sh windows)")
def test_windows_kit_runs_under_wine_like_torch(tmp_path):
    """`--kit-target windows`: distilface.dll cross-compiled with MinGW-w64, imported only from
    KERNEL32 and msvcrt; csrc/dfanimate.c built for Windows against it and run by Wine streams
    44.1 kHz PCM (stdin in binary mode) to the torch student's frames; a program linked by
    lld-link against the kit's import library distilface.lib runs."""
    save_checkpoint(tmp_path / "tiny.pt", _student())
    kit = tmp_path / "win"
    main(["export", str(tmp_path / "tiny.pt"), "--native", "-o", str(kit / "m.dfn"), "--engine-kit",
          "--kit-target", "windows"])
    meta = json.loads((kit / "kit.json").read_text())
    assert meta["target"] == "windows" and not (kit / "libdistilface.so").exists()
    assert {"distilface.dll", "distilface.def", "distilface.lib"} <= set(meta["files"])
    dump = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", str(kit / "distilface.dll")], capture_output=True,
                          text=True, check=True).stdout
    assert sorted(line.split()[-1] for line in dump.splitlines() if "DLL Name" in line) == ["KERNEL32.dll", "msvcrt.dll"]
    exe = tmp_path / "dfanimate.exe"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-o", str(exe), str(native.CSRC / "dfanimate.c"),
                    f"-I{native.CSRC}", str(kit / "distilface.dll")], check=True, capture_output=True, timeout=120)
    shutil.copy(kit / "distilface.dll", tmp_path)  # beside the program, where Windows looks first
    env = {**os.environ, "WINEPREFIX": str(tmp_path / "wineprefix"), "WINEDEBUG": "-all", "DISPLAY": ""}
    pcm = _pcm(44100)
    r = subprocess.run([_wine(), str(exe), str(kit / "m.dfn"), "30", "--rate", "44100"], input=pcm.tobytes(),
                       capture_output=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    lines = r.stdout.decode().splitlines()
    s = _student()
    assert lines[0].split(",") == ["frame", "time_s", *s.cfg.names]
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    want = animate_audio(s, resample(pcm.astype(np.float32) / 32768, 44100, 16000), 30.0).values
    assert got.shape == (len(want), 2 + len(s.cfg.names))
    np.testing.assert_allclose(got[:, 2:], want, atol=1e-4, rtol=0)
    # a UTF-8 path with letters outside ASCII, as the C API takes paths on every system (Windows'
    # fopen would read the bytes in the ANSI code page: "modÃ¨le.dfn")
    (tmp_path / "utf8.c").write_text('#include <stdio.h>\n#include "dfstep.h"\nint main(void) {\n'
                                     '  char err[256]; df_model *m = df_model_load("mod\\xc3\\xa8le.dfn", err, sizeof err);\n'
                                     '  if (!m) { puts(err); return 1; }\n  printf("%d\\n", df_model_outputs(m));\n'
                                     '  df_model_free(m); return 0;\n}\n')
    subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-o", str(tmp_path / "utf8.exe"), str(tmp_path / "utf8.c"),
                    f"-I{native.CSRC}", str(kit / "distilface.dll")], check=True, capture_output=True, timeout=120)
    shutil.copy(kit / "m.dfn", tmp_path / "modèle.dfn")
    r = subprocess.run([_wine(), str(tmp_path / "utf8.exe")], capture_output=True, text=True, timeout=120, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split() == [str(len(s.cfg.names))], r.stdout + r.stderr
    # MSVC's side: distilface.lib is an import library lld-link takes (MSVC's format and ABI, no
    # MinGW), for a program compiled by clang for x86_64-pc-windows-msvc with no C runtime at all
    assert (kit / "distilface.def").read_text().split() == ["LIBRARY", "distilface.dll", "EXPORTS",
                                                            *sorted(re.findall(r"\] (df_\w+)", dump))]
    if not (shutil.which("clang") and shutil.which("lld-link")):
        return
    (tmp_path / "msvc.c").write_text(MSVC_PROGRAM)
    subprocess.run(["clang", "--target=x86_64-pc-windows-msvc", "-O2", "-c", "-o", str(tmp_path / "msvc.obj"),
                    str(tmp_path / "msvc.c")], check=True, capture_output=True, timeout=120)
    subprocess.run(["lld-link", "/entry:start", "/subsystem:console", "/nodefaultlib", f"/out:{tmp_path / 'msvc.exe'}",
                    str(tmp_path / "msvc.obj"), str(kit / "distilface.lib")], check=True, capture_output=True, timeout=120)
    r = subprocess.run([_wine(), str(tmp_path / "msvc.exe")], capture_output=True, timeout=120, env=env, cwd=kit)
    assert r.returncode == len(s.cfg.names), r.returncode  # loaded m.dfn and read its outputs through the DLL


# Loads m.dfn through the DLL and exits with its number of curves (ABI checked first).
MSVC_PROGRAM = """
typedef struct df_model df_model;
__declspec(dllimport) int df_abi(void);
__declspec(dllimport) df_model *df_model_load(const char *path, char *err, unsigned long long errlen);
__declspec(dllimport) int df_model_outputs(const df_model *m);
__declspec(dllimport) void df_model_free(df_model *m);
int start(void) {
    char err[256];
    if (df_abi() != %d) return 201;
    df_model *m = df_model_load("m.dfn", err, sizeof err);
    if (!m) return 202;
    int n = df_model_outputs(m);
    df_model_free(m);
    return n;
}
""" % native.ABI
