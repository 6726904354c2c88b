"""The C API (csrc/dfstep.h) under misuse and damaged files, built with AddressSanitizer and UBSan
(tests/csrc/api_misuse.c against csrc/ itself): NULL handles, NULL or negative output buffers, a
first push of no samples, absurd frame rates, NaN / inf / huge samples (taken as silence, as the
Python inputs do), and every header field of a real .dfn set to wrong values: each must be refused
or run cleanly, never crash or read out of bounds. Python's NativeModel refuses the same damage."""

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distilface.cli import main
from distilface.runtime import native

HERE = Path(__file__).resolve().parent
CC = native.compiler()
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
pytestmark = pytest.mark.skipif(CC is None or shutil.which(CC) is None, reason="no C compiler")


def _sanitizers_work(tmp) -> bool:
    src = tmp / "probe.c"
    src.write_text("int main(void) { return 0; }\n")
    return subprocess.run([CC, *SAN, str(src), "-o", str(tmp / "probe")], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    d = tmp_path_factory.mktemp("capi")
    if not _sanitizers_work(d):
        pytest.skip("the C compiler has no AddressSanitizer / UBSan runtime")
    csrc = native.CSRC
    exe = d / "api_misuse"
    sources = [csrc / f for f in ("dfstep.c", "dfstream.c", "dfmodel.c", "dfresample.c")]
    r = subprocess.run([CC, "-O1", "-g", "-Wno-psabi", *SAN, f"-I{csrc}", *map(str, sources),
                        str(HERE / "csrc" / "api_misuse.c"), "-o", str(exe), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    main(["export", "c0-4-256ms-ft", "--native", "--frame-grid", "80", "-o", str(d / "m.dfn")])
    return exe, d / "m.dfn"


def _run(exe, *args, timeout=300):
    # no LeakSanitizer: it needs ptrace, which sandboxed CI runners often refuse
    env = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def test_misuse_is_refused_not_a_crash(harness):
    exe, model = harness
    got = _run(exe, model)
    err_argument = str(-7)
    for case in ("stream_of_null", "name_of_null", "net_of_null", "weights_nan"):
        assert got[case].split()[-1] == "1", (case, got[case])
    assert got["outputs_of_null"] == "0" and got["lookahead_of_null"] == "0"
    assert got["push_null_stream"] == err_argument and got["rate_null_stream"] == err_argument
    assert got["load_null_path"].startswith("1 (null): no path")
    assert got["load_memory_null"].startswith("1 x: not a DistilFace native model")
    assert got["push_zero_first"] == "0"
    for case in ("push_out_null", "push_cap_negative", "push_audio_null"):
        assert got[case] == err_argument, (case, got[case])
    assert got["push_out_null_cap0"] == "0"  # frames wait for a buffer: not an error
    # one second of samples at 16 kHz (30 frames), or a third of a second at 48 kHz (5334 samples
    # once resampled: 11 frames), with 10 NaN / inf samples and one of 1e20: the frames of the same
    # audio with zeros there, bit for bit
    for rate, frames in (("16k", 30), ("48k", 11)):
        _, n_bad, n_zero, _, finite, _, equal = got[f"nonfinite_samples_{rate}"].split()
        assert int(n_bad) == int(n_zero) == frames and finite == "1" and equal == "1", got[f"nonfinite_samples_{rate}"]
    assert got["plain"] == "frames 30"


def test_fps_refusals_each(harness):
    exe, model = harness
    r = subprocess.run([str(exe), str(model)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("fps ")]
    assert len(lines) == 6 and all(ln.endswith("refused 1") for ln in lines), lines


def _header_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, kind) of every int32 of the header and each of its six floats."""
    n = struct.unpack_from("<i", data, 8)[0]
    ints = [(12 + 4 * i, "i") for i in range(n)]
    floats = [(12 + 4 * n + 4 * i, "f") for i in range(6)]
    return ints + floats


def test_every_damaged_header_field_is_refused_or_runs_cleanly(harness, tmp_path):
    exe, model = harness
    data = model.read_bytes()
    folder = tmp_path / "mutated"
    folder.mkdir()
    count = 0
    for offset, kind in _header_fields(data):
        value = struct.unpack_from("<" + kind, data, offset)[0]
        bad = ([-1, 0, 1, value + 1, value - 1, 2 * value + 1, 0x7FFFFFFF, -0x80000000] if kind == "i"
               else [0.0, -1.0, float("nan"), float("inf"), 1e30])
        for j, v in enumerate(bad):
            if v == value or (kind == "i" and not -2**31 <= v < 2**31):
                continue
            mutated = bytearray(data)
            struct.pack_into("<" + kind, mutated, offset, v)
            (folder / f"{offset:04d}_{j}.dfn").write_bytes(bytes(mutated))
            count += 1
    got = _run(exe, model, folder, timeout=600)
    loaded, refused = (int(x) for x in got["mutations"].split()[1::2])
    assert loaded + refused == count and refused > count // 2
    # Python reads the same files through the same checks: refused with a message naming the file
    for path in sorted(folder.iterdir()):
        try:
            native.NativeModel(path)
        except ValueError as e:
            assert str(e).startswith(f"{path}: "), e


def test_python_refuses_a_damaged_npz_meta(tmp_path):
    import json

    main(["export", "c0-4-256ms-ft", "--native", "-o", str(tmp_path / "m.npz")])
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["enc_stride"][2] = 0  # a division by zero in the step
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: inconsistent native model \(encoder layer sizes\)"):
        native.NativeModel(tmp_path / "bad.npz")
