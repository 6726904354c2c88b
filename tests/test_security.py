"""Security (docs/security.md): nothing untrusted is unpickled (a malicious checkpoint or curves
file is refused through the real CLI, and a static audit of the source keeps it so), servers bind
127.0.0.1 unless told otherwise, WebSocket messages are size-limited (also after decompression)."""

import ast
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from distilface.audio import EXAMPLE_AUDIO
from distilface.checkpoint import CHECKPOINT_KIND, CHECKPOINT_VERSION, save_checkpoint
from distilface.cli import build_parser
from distilface.student import Student, StudentConfig
from test_bad_input import cli  # the real CLI in this process -> exit code or message

SRC = Path(__file__).resolve().parent.parent / "src" / "distilface"


class Payload:
    """Unpickling this runs code: it writes `marker` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)




@pytest.fixture
def tiny_cfg() -> dict:
    return StudentConfig(channels=16, context_groups=8).to_dict()


def test_malicious_checkpoint_is_refused(tmp_path, tiny_cfg):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.manual_seed(0)
    state = Student(StudentConfig(**tiny_cfg)).state_dict()
    torch.save({"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "student_config": tiny_cfg,
                "state_dict": state, "notes": Payload(marker)}, evil)
    for args in (("animate", EXAMPLE_AUDIO, "-o", tmp_path / "o.json", "--model", evil, "--no-progress"),
                 ("info", evil), ("export", evil, "-o", tmp_path / "o.onnx"),
                 ("stream", "--input", f"wav:{EXAMPLE_AUDIO}", "--model", evil)):
        code = cli(*args)
        assert isinstance(code, str) and f"{evil}: not a readable checkpoint" in code, (args, code)
        assert not marker.exists(), args
    # the payload is real: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_damaged_checkpoint_is_one_line(tmp_path, tiny_cfg):
    ckpt = tmp_path / "damaged.pt"
    save_checkpoint(ckpt, Student(StudentConfig(**tiny_cfg)))
    payload = torch.load(ckpt, weights_only=True)
    payload["student_config"]["channels"] = 32  # weights of 16 channels under a 32-channel config
    torch.save(payload, ckpt)
    code = cli("info", ckpt)
    assert isinstance(code, str) and code.startswith(f"distilface info: {ckpt}: weights do not match"), code
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04not a checkpoint at all")
    code = cli("info", tmp_path / "junk.pt")
    assert isinstance(code, str) and "not a readable checkpoint" in code


def test_curves_with_pickled_objects_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"
    np.savez(evil, fps=np.float64(30), names=np.array([Payload(marker)], dtype=object),
             values=np.zeros((3, 1), np.float32))
    code = cli("render", evil, EXAMPLE_AUDIO, "-o", tmp_path / "r")
    assert isinstance(code, str) and code.startswith(f"distilface render: {evil}: not a curves file"), code
    assert "allow_pickle=False" in code and "\n" not in code
    assert not marker.exists()


# -- static audit ------------------------------------------------------------------------------

def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # x().eval() is no builtin eval
    return ".".join(reversed(parts))


def _kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value.value if isinstance(k.value, ast.Constant) else k.value
    return None


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
# Justified exceptions (docs/security.md), by file and module:
ALLOWED_IMPORTS = {
    # the espeak-ng engine's earlier form fork()ed a child per synthesis and got its result back
    # pickled over a private pipe: bytes from our own process image, never from outside (today it
    # talks JSON to corpus/espeak_server.py and imports no pickle)
    ("distilface/corpus/espeak.py", "pickle"),
}


def test_source_audit_no_unpickling_no_shell_no_eval():
    """Every torch.load passes weights_only=True; no pickle-family module, np.load(allow_pickle=True),
    yaml.load, builtin eval/exec, os.system/popen or subprocess shell=True anywhere in the package."""
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(SRC.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad = {a.name.split(".")[0] for a in node.names} & UNSAFE_MODULES
            elif isinstance(node, ast.ImportFrom):
                bad = {(node.module or "").split(".")[0]} & UNSAFE_MODULES
            else:
                continue
            bad = {m for m in bad if (str(where), m) not in ALLOWED_IMPORTS}
            if bad:
                problems.append(f"{where}:{node.lineno}: imports {', '.join(sorted(bad))}")
        for call in _calls(tree):
            name, line = _name(call.func), f"{where}:{call.lineno}"
            if name.endswith("torch.load"):
                if _kw(call, "weights_only") is not True:
                    problems.append(f"{line}: {name} without weights_only=True")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                if _kw(call, "allow_pickle") not in (None, False):
                    problems.append(f"{line}: np.load with allow_pickle")
            if name in ("yaml.load", "yaml.unsafe_load", "eval", "exec", "os.system", "os.popen", "torch.jit.load"):
                problems.append(f"{line}: {name}")
            if name.startswith("subprocess.") and _kw(call, "shell") not in (None, False):
                problems.append(f"{line}: {name} with shell=True")
    assert problems == []


# -- servers: loopback by default, bounded messages ------------------------------------------

def test_servers_bind_loopback_by_default():
    from distilface.runtime.live import StreamConfig

    parser = build_parser()
    stream = parser.parse_args(["stream"])
    assert stream.host == "127.0.0.1" and stream.osc_host == "127.0.0.1"
    assert stream.ws_max_bytes == 65536
    assert StreamConfig().host == "127.0.0.1" and StreamConfig().ws_max_message_bytes == 65536
    view = parser.parse_args(["view"])
    assert view.host == "127.0.0.1" and view.ws.startswith("ws://127.0.0.1:")
    from distilface.view import ViewConfig

    assert ViewConfig().host == "127.0.0.1"


@pytest.fixture(scope="module")
def live_default():
    """A live server with the default configuration (but a free port): ws audio in, ws frames out."""
    from distilface.runtime.live import LiveStream, StreamConfig, StreamThread
    from distilface.student import build_student

    torch.manual_seed(0)
    model = build_student(StudentConfig(channels=16, context_groups=8)).eval()
    live = LiveStream(model, StreamConfig(input="ws", outputs=("ws",), ws_port=0, drain_s=0.2))
    with StreamThread(live) as st:
        yield live, st


def test_live_server_is_loopback_only(live_default):
    live, _ = live_default
    assert live.bound_host == "127.0.0.1"
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except socket.gaierror:  # no name for this host: nothing else to try
        infos = []
    others = {ip for *_, (ip, *_) in infos if not ip.startswith("127.")}
    for ip in others:  # no other interface answers
        with pytest.raises(OSError):
            socket.create_connection((ip, live.ws_port), timeout=2).close()


def _closed_code(url: str, payload, **kw) -> int:
    """Sends `payload`, reads whatever comes (a viewer's hello) until the server closes -> its code."""
    with connect(url, **kw) as ws:
        ws.send(payload)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):
                ws.recv(timeout=10)
    return closed.value.rcvd.code


def _one_stream(live, pcm: bytes) -> int:
    """Frames that come out for `pcm` sent as one message."""
    base = f"ws://127.0.0.1:{live.ws_port}"
    with connect(base + "/frames", max_size=None) as viewer:
        assert json.loads(viewer.recv(timeout=10))["type"] == "hello"
        with connect(base + "/audio", compression=None, max_size=None) as sender:
            sender.send(pcm)
        frames = 0
        while (msg := json.loads(viewer.recv(timeout=30)))["type"] != "end":
            frames += msg["type"] == "frame"
        return frames


def test_ws_message_size_limits(live_default):
    from distilface.curves import num_frames

    live, st = live_default
    base = f"ws://127.0.0.1:{live.ws_port}"
    limit = live.cfg.ws_max_message_bytes
    assert _one_stream(live, b"\x00\x01" * (limit // 2)) == num_frames(limit / 2 / 16000, 30.0)  # at the limit: taken
    assert _closed_code(base + "/audio", b"\x00" * (limit + 1), compression=None, max_size=None) == 1009
    # a compression bomb: 4 MB of zeros deflate to a few kB; the limit holds after decompression
    assert _closed_code(base + "/audio", b"\x00" * (4 << 20), max_size=None) == 1009
    assert _closed_code(base + "/frames", b"\x00" * (limit + 1), compression=None, max_size=None) == 1009
    # absurd or malformed stream options are refused per connection
    for query in ("rate=3999999", "rate=abc", "rate=0", "format=mp3"):
        with connect(f"{base}/audio?{query}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1008, query
    # the server lives on
    assert _one_stream(live, b"\x10\x00" * 1600) == num_frames(0.1, 30.0)
    assert st.error is None and live.state == "idle"
