"""`distilface stream --priority`: the stream's threads get the scheduling asked for, only they,
and a process that may not raise its priority is refused in one line before streaming."""

import json
import os
import subprocess
import sys
import threading

import pytest

from distilface.runtime.priority import FIFO_PRIORITY, NICE_HIGH, current_priority, describe, set_priority

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")

# A child that certainly may not raise its priority: no rtprio or nice allowance (RLIMIT_RTPRIO
# and RLIMIT_NICE 0, which any process may lower) and, when the tests run as root, no
# CAP_SYS_NICE (util-linux's setpriv drops it from the bounding set before the interpreter starts).
UNPRIVILEGED = """
import resource
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
"""


def unprivileged() -> list[str]:
    return ["setpriv", "--bounding-set=-sys_nice", "--"] if os.geteuid() == 0 else []


def may_raise_priority() -> bool:
    """Whether this process can set SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit), tried on a
    throwaway thread."""
    result = []

    def probe():
        try:
            set_priority("realtime")
            result.append(True)
        except PermissionError:
            result.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]


def test_unknown_level_and_normal():
    with pytest.raises(ValueError, match="--priority 'fast': expected normal, high, realtime"):
        set_priority("fast")
    before = current_priority()
    assert set_priority("normal") == describe() and current_priority() == before  # as it was


@linux
def test_levels_apply_to_the_calling_thread_and_threads_it_starts():
    if not may_raise_priority():
        pytest.skip("this process may not raise its priority (not root, no CAP_SYS_NICE or rtprio limit)")
    main_before = current_priority()
    seen = {}

    def worker(level):
        seen[level, "set"] = set_priority(level)
        seen[level, "self"] = current_priority()
        child = threading.Thread(target=lambda: seen.__setitem__((level, "child"), current_priority()))
        child.start()
        child.join()

    for level in ("high", "realtime"):
        t = threading.Thread(target=worker, args=(level,))
        t.start()
        t.join()
    assert seen["high", "set"] == f"nice {NICE_HIGH}"
    assert seen["high", "self"]["nice"] == NICE_HIGH and seen["high", "self"]["policy"] == "SCHED_OTHER"
    assert seen["realtime", "set"] == f"SCHED_FIFO {FIFO_PRIORITY}"
    assert seen["realtime", "self"]["policy"] == "SCHED_FIFO"
    assert seen["realtime", "self"]["rt_priority"] == FIFO_PRIORITY
    for level in ("high", "realtime"):  # inherited by a thread started afterwards
        assert seen[level, "child"] == seen[level, "self"]
    assert seen["realtime", "child"]["policy"] == "SCHED_FIFO"
    assert current_priority() == main_before  # the thread that asked, not the process


@linux
def test_without_the_privilege_each_level_is_refused_naming_what_is_missing():
    code = UNPRIVILEGED + """
from distilface.runtime.priority import set_priority
for level in ("high", "realtime"):
    try:
        set_priority(level)
        print(level, "SET")
    except PermissionError as e:
        print(level, "REFUSED", e)
"""
    out = subprocess.run([*unprivileged(), sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("high REFUSED --priority high (nice -10) needs the right to raise priority")
    assert lines[1].startswith("realtime REFUSED --priority realtime (SCHED_FIFO 10) needs the right")
    assert "CAP_SYS_NICE" in lines[1] and "rtprio 10" in lines[1]


def _stream_cli(tmp_path, priority, prefix="", runner=(), outputs=("ndjson",)):
    from distilface.audio import write_audio
    from distilface.checkpoint import save_checkpoint
    from test_stream import MODEL, noise

    save_checkpoint(tmp_path / "tiny.pt", MODEL)
    write_audio(tmp_path / "a.wav", noise(0.5, seed=3))
    code = prefix + "\nimport sys\nfrom distilface.cli import main\nmain(sys.argv[1:])"
    return subprocess.run([*runner, sys.executable, "-c", code, "stream", "--input", f"wav:{tmp_path / 'a.wav'}",
                           "--no-realtime", "--model", str(tmp_path / "tiny.pt"), "--runtime", "torch",
                           "--priority", priority, *[x for o in outputs for x in ("--output", o)]], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@linux
def test_cli_streams_at_the_priority_or_refuses_in_one_line(tmp_path):
    if may_raise_priority():
        ok = _stream_cli(tmp_path, "realtime")
        assert ok.returncode == 0, ok.stderr[-2000:]
        stats = json.loads(ok.stderr.split("stream: ", 1)[1].splitlines()[0])
        assert stats["priority"] == f"SCHED_FIFO {FIFO_PRIORITY}" and stats["frames"] == 15
        assert len(ok.stdout.splitlines()) == 15  # the frames, as without --priority
    refused = _stream_cli(tmp_path, "realtime", prefix=UNPRIVILEGED, runner=unprivileged(),
                          outputs=("ndjson", f"csv:{tmp_path / 'out.csv'}"))
    assert refused.returncode == 1 and refused.stdout == ""
    assert not list(tmp_path.glob("out.csv*"))  # no CSV, no .part left behind
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]  # one line, no traceback
    assert refused.stderr.startswith("distilface stream: --priority realtime (SCHED_FIFO 10) needs the right")
    bad = _stream_cli(tmp_path, "fast")
    assert bad.returncode == 2 and "invalid choice: 'fast'" in bad.stderr
