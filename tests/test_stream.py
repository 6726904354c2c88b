"""`distilface stream`: live frames equal offline `animate_audio` (stdin PCM, WebSocket audio, a
file, a microphone), NDJSON / OSC / CSV / WebSocket outputs carry the right values, slow and
vanishing clients never block the stream, real-time pacing, under-runs, loopback latency.
Everything over real sockets on 127.0.0.1 at free ports, with a tiny random student."""

import asyncio
import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from distilface.animate import animate_audio
from distilface.audio import resample, write_audio
from distilface.formats import LLF_BLENDSHAPES, LLF_HEADER
from distilface.runtime.live import LiveStream, RealtimeClock, StreamConfig, StreamThread, loopback_latency
from distilface.runtime.sinks import VMC_BLEND_APPLY, VMC_BLEND_VAL, vmc_name
from distilface.runtime.sources import MicSource, PcmDecoder, decode_pcm, encode_pcm
from distilface.student import StudentConfig, build_student
from distilface.vrm import VrmMapper

TOL = 1e-4  # streaming == offline (measured ~1e-7) plus JSON's 6 decimals
FPS = 30.0


def tiny():
    torch.manual_seed(0)
    return build_student(StudentConfig(channels=16, context_groups=8)).eval()


MODEL = tiny()
NAMES = tuple(MODEL.cfg.names)


def noise(seconds, rate=16000, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def frames_of(messages, names=NAMES):
    """JSON frames -> (frames, outputs) in `names` order."""
    return np.array([[m["blendshapes"][n] for n in names] for m in messages], np.float32)


def offline(audio, fps=FPS):
    return animate_audio(MODEL, audio, fps).values


def run_live(cfg, **kw):
    with StreamThread(LiveStream(MODEL, cfg, **kw)) as st:
        return st.join(30)


def ws_url(live, path):
    return f"ws://127.0.0.1:{live.ws_port}{path}"


class Viewer(threading.Thread):
    """A well-behaved frames client: reads every message until the end of stream `until`
    (None: the first end it sees; an earlier stream may still be ending when it connects)."""

    def __init__(self, url, until=None):
        super().__init__(daemon=True)
        self.url, self.until = url, until
        self.messages = []
        self.registered = threading.Event()  # the hello came: the server lists this viewer
        self.start()
        assert self.registered.wait(10)

    def run(self):
        with connect(self.url, max_size=None) as ws:
            for text in ws:
                msg = json.loads(text)
                self.messages.append(msg)
                self.registered.set()
                if msg["type"] == "end" and self.until in (None, msg["stream"]):
                    return

    def frames(self, stream=0):
        return [m for m in self.messages if m["type"] == "frame" and m["stream"] == stream]


def raw_ws(port, path="/frames", rcvbuf=None):
    """A WebSocket client by hand: handshake done, then it does only what the test does."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: not one byte of the frames beyond the handshake
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


# -- equality with offline -------------------------------------------------------------------

@pytest.mark.parametrize("fmt,rate", [("s16le", 16000), ("f32le", 44100)])
def test_stdin_pcm_equals_offline(fmt, rate):
    x = noise(1.5, rate)
    pcm = encode_pcm(x, fmt)
    out = io.StringIO()
    stats = run_live(StreamConfig(input="stdin", outputs=("ndjson",), rate_hz=rate, pcm_format=fmt),
                     stdin=io.BytesIO(pcm), stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    want = offline(resample(decode_pcm(pcm, fmt), rate, 16000))
    assert [m["frame"] for m in lines] == list(range(len(want))) and stats["frames"] == len(want)
    np.testing.assert_allclose(frames_of(lines), want, atol=TOL, rtol=0)


def test_ws_audio_equals_offline_with_stalled_and_vanishing_viewers():
    cfg = StreamConfig(input="ws", outputs=("ws",), fps=60.0, ws_port=0, ws_queue_messages=64, drain_s=0.2)
    assert cfg.host == "127.0.0.1"  # the default binds loopback only
    live = LiveStream(MODEL, cfg)
    x = noise(4.0, seed=1)
    pcm = encode_pcm(x)
    with StreamThread(live) as st:
        assert live.bound_host == "127.0.0.1"
        good = Viewer(ws_url(live, "/frames"))
        stalled = raw_ws(live.ws_port, rcvbuf=4096)  # never reads a byte
        leaver = raw_ws(live.ws_port, "/")

        def leave():  # reads a little of the stream, then vanishes without a close frame
            got = 0
            while 0 <= got < 20_000:
                data = leaver.recv(4096)
                got += len(data) if data else -10**9
            leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            leaver.close()  # linger 0: a reset, as a crashed client
        threading.Thread(target=leave, daemon=True).start()
        with connect(ws_url(live, "/audio")) as sender:
            t0 = time.perf_counter()
            for lo in range(0, len(pcm), 640):  # 20 ms messages at 4x real time: 240 frames/s out
                time.sleep(max(t0 + (lo + 640) / 2 / 16000 / 4 - time.perf_counter(), 0))
                sender.send(pcm[lo: lo + 640])
        good.join(30)
        assert not good.is_alive()
        # the stream still serves: a second sender, a new viewer
        again = Viewer(ws_url(live, "/frames"), until=1)
        with connect(ws_url(live, "/audio")) as sender:
            sender.send(encode_pcm(x[:8000]))
        again.join(30)
        stats = st.stop()
        stalled.close()
    want = offline(decode_pcm(pcm), 60.0)
    got = good.frames(0)
    assert [m["frame"] for m in got] == list(range(len(want)))  # all, in order, no duplicates
    np.testing.assert_allclose(frames_of(got), want, atol=TOL, rtol=0)
    types_seen = [m["type"] for m in good.messages]
    assert types_seen[:2] == ["hello", "start"] and types_seen[-1] == "end"
    assert good.messages[-1]["frames"] == len(want)
    assert len(again.frames(1)) == len(offline(decode_pcm(encode_pcm(x[:8000])), 60.0))
    assert stats["streams"] == 2
    # the stalled viewer lost frames (its queue and socket buffers are far smaller than 240 frames)
    assert stats["outputs"]["ws"]["dropped"] > 0
    assert stats["outputs"]["ws"]["connected"] == 4


def test_ws_oversize_and_second_sender_are_refused_server_lives_on():
    cfg = StreamConfig(input="ws", outputs=("ws",), ws_port=0, ws_max_message_bytes=4096)
    live = LiveStream(MODEL, cfg)
    x = noise(0.5, seed=2)
    with StreamThread(live) as st:
        with connect(ws_url(live, "/audio")) as first:
            first.send(encode_pcm(x[:1000]))
            with connect(ws_url(live, "/audio")) as second:  # one sender at a time
                with pytest.raises(ConnectionClosed) as busy:
                    second.recv(timeout=10)
                assert busy.value.rcvd.code == 1013
            first.send(b"\x00" * 8192)  # over max_size
            with pytest.raises(ConnectionClosed) as big:
                first.recv(timeout=10)
            assert big.value.rcvd.code == 1009
        with pytest.raises(InvalidStatus, match="404"):  # unknown endpoints are refused at the handshake
            with connect(ws_url(live, "/nope")):
                pass
        viewer = Viewer(ws_url(live, "/frames"), until=1)
        with connect(ws_url(live, "/audio")) as sender:
            pcm = encode_pcm(x)
            for lo in range(0, len(pcm), 4096):
                sender.send(pcm[lo: lo + 4096])
        viewer.join(30)
        stats = st.stop()
    assert stats["streams"] == 2 and stats["input"]["refused"] == 1 and stats["input"]["closed_with_error"] == 1
    np.testing.assert_allclose(frames_of(viewer.frames(1)), offline(decode_pcm(encode_pcm(x))), atol=TOL, rtol=0)


# -- outputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["perfect-sync", "vrm0", "vrm1"])
def test_osc_vmc_bundles_carry_every_blendshape_and_apply(style):
    """The 52 curves, or the 7 VRM presets fitted to them (distilface.vrm), then Apply, per frame."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    received = []  # ("val", name, value) / ("apply",) in arrival order
    d = Dispatcher()
    d.map(VMC_BLEND_VAL, lambda addr, name, value: received.append(("val", name, value)))
    d.map(VMC_BLEND_APPLY, lambda addr: received.append(("apply",)))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), d)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    x = noise(0.8, seed=3)
    out = io.StringIO()
    try:
        stats = run_live(StreamConfig(input="stdin", outputs=("osc", "ndjson"), osc_port=server.server_address[1],
                                      osc_names=style), stdin=io.BytesIO(encode_pcm(x)), stdout=out)
        want = offline(decode_pcm(encode_pcm(x)))
        deadline = time.time() + 10
        while sum(r[0] == "apply" for r in received) < len(want) and time.time() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
    assert stats["outputs"]["osc"] == {"sent": len(want), "dropped": 0}
    frames, current = [], {}
    for r in received:
        if r[0] == "val":
            current[r[1]] = r[2]
        else:
            frames.append(current)
            current = {}
    assert len(frames) == len(want)
    if style == "perfect-sync":
        sent_names = [vmc_name(n) for n in NAMES]
        assert sent_names[NAMES.index("jawOpen")] == "JawOpen"
    else:
        vrm = VrmMapper(NAMES, style[-1])
        sent_names = list(vrm.names)
        assert sent_names[0] == {"vrm0": "A", "vrm1": "aa"}[style]
        want = vrm(want)
        assert want[:, :5].max() > 0.05  # the random student opens the mouth somewhere
    for f in frames:
        assert sorted(f) == sorted(sent_names)  # every blendshape, then Apply
    got = np.array([[f[n] for n in sent_names] for f in frames])
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)  # float32 on the wire


def test_cli_livelink_packets_decode_as_live_link_face(tmp_path):
    """`--output livelink`: one UDP packet per frame, decoded by PyLiveLinkFace (a third-party
    implementation of the iPhone app's protocol) and by the layout Unreal reads: version 6, the
    subject, timecode frames one apart at 30/1 fps, 61 values: the ARKit 52 as the NDJSON frames
    give them (float32), then 9 zero rotations."""
    from pylivelinkface import FaceBlendShape, PyLiveLinkFace

    from distilface.checkpoint import save_checkpoint
    from distilface.rig.arkit import ARKIT_52

    save_checkpoint(tmp_path / "tiny.pt", MODEL)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.2)
    pcm = encode_pcm(noise(1.0, seed=6))
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "stream", "--input", "stdin", "--model",
                           str(tmp_path / "tiny.pt"), "--output", "livelink", "--output", "ndjson",
                           "--livelink-port", str(rx.getsockname()[1]), "--livelink-subject", "Talker"],
                          input=pcm, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    packets = []
    try:
        while True:
            packets.append(rx.recv(2048))
    except socket.timeout:
        pass
    rx.close()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    want = np.array([[m["blendshapes"][n] for n in ARKIT_52] for m in lines], np.float32)
    assert len(packets) == len(lines) > 20
    times = []
    for packet, w in zip(packets, want):
        ok, face = PyLiveLinkFace.decode(packet)
        assert ok and face.name == "Talker" and face.fps == 30 and face._denominator == 1
        values = np.array([face.get_blendshape(FaceBlendShape(i)) for i in range(61)], np.float32)
        np.testing.assert_allclose(values[:52], w, atol=1e-6, rtol=0)  # JSON's 6 decimals
        assert values[52:].tolist() == [0.0] * 9
        assert values[17] == pytest.approx(w[ARKIT_52.index("jawOpen")], abs=1e-6)  # JawOpen = 17 in Unreal
        # Unreal's reading: uint8 version, int32 + bytes device id, int32 + bytes subject, frame time
        assert packet[0] == 6
        n_id = int.from_bytes(packet[1:5], "big")
        at = 5 + n_id + 4 + len("Talker")
        frame, sub, num, den, count = struct.unpack(">ifiiB", packet[at: at + 17])
        assert (num, den, count, len(packet)) == (30, 1, 61, at + 17 + 61 * 4)
        assert 0 <= sub < 1 and 0 <= frame < 24 * 3600 * 30
        times.append(frame + sub)
    np.testing.assert_allclose(np.diff(times), 1.0, atol=1e-3)  # one timecode frame apart
    assert len({p[1: 5 + int.from_bytes(p[1:5], "big")] for p in packets}) == 1  # one device id


def test_livelink_packer_rates_and_refusals():
    from distilface.runtime.sinks import LiveLinkPacker

    names = tuple(NAMES)
    for fps, rate in ((30.0, (30, 1)), (60.0, (60, 1)), (29.97, (30000, 1001)), (23.976, (24000, 1001)), (12.5, (25, 2))):
        packet = LiveLinkPacker(names, fps, "S", "D")(0, np.zeros(len(names), np.float32))
        assert struct.unpack(">ii", packet[1 + 4 + 1 + 4 + 1 + 8: 1 + 4 + 1 + 4 + 1 + 16]) == rate
    with pytest.raises(ValueError, match="livelink output needs the 52 ARKit blendshapes; missing jawOpen"):
        LiveLinkPacker(tuple(n for n in names if n != "jawOpen"), 30.0, "S", "D")
    from distilface.runtime.sinks import LiveLinkOutput

    with pytest.raises(ValueError, match="livelink-subject"):
        LiveLinkOutput(subject="")


def test_cli_ndjson_and_csv(tmp_path):
    from distilface.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "tiny.pt", MODEL)
    x = noise(1.2, seed=4)
    pcm = encode_pcm(x)
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "stream", "--input", "stdin", "--model",
                           str(tmp_path / "tiny.pt"), "--output", "ndjson", "--output", f"csv:{tmp_path / 'o.csv'}"],
                          input=pcm, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    want = offline(decode_pcm(pcm))
    assert [m["frame"] for m in lines] == list(range(len(want)))  # no gap, no duplicate
    for m in lines:
        assert list(m["blendshapes"]) == list(NAMES)
        assert m["type"] == "frame" and m["stream"] == 0 and m["time_s"] == pytest.approx(m["frame"] / FPS, abs=1e-6)
        assert m["audio_s"] >= min(m["time_s"] + m["lookahead_ms"] / 1000, len(x) / 16000) - 1e-6
        assert m["latency_ms"] >= 0 and abs(m["sent_unix_s"] - time.time()) < 600
    np.testing.assert_allclose(frames_of(lines), want, atol=TOL, rtol=0)
    rows = (tmp_path / "o.csv").read_text().splitlines()
    assert rows[0].split(",") == list(LLF_HEADER) and len(rows) == len(want) + 1
    llf = np.array([r.split(",")[2: 2 + len(LLF_BLENDSHAPES)] for r in rows[1:]], float)
    order = [NAMES.index(n[0].lower() + n[1:]) for n in LLF_BLENDSHAPES]
    np.testing.assert_allclose(llf, want[:, order], atol=1e-6, rtol=0)
    assert "stream:" in proc.stderr.decode()
    bad = subprocess.run([sys.executable, "-m", "distilface.cli", "stream", "--input", "tcp", "--model",
                          str(tmp_path / "tiny.pt")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--input" in bad.stderr and "Traceback" not in bad.stderr


# -- inputs ----------------------------------------------------------------------------------

def test_wav_realtime_pace_and_no_realtime(tmp_path):
    x = noise(1.0, seed=5)
    write_audio(tmp_path / "a.wav", x)
    want = offline(decode_pcm(encode_pcm(x)))  # the file is 16-bit PCM
    times = {}
    for realtime in (True, False):
        out = io.StringIO()
        with StreamThread(LiveStream(MODEL, StreamConfig(input=f"wav:{tmp_path / 'a.wav'}", realtime=realtime),
                                     stdout=out)) as st:
            t0 = time.perf_counter()
            st.join(30)
            times[realtime] = time.perf_counter() - t0
        np.testing.assert_allclose(frames_of([json.loads(line) for line in out.getvalue().splitlines()]), want,
                                   atol=TOL, rtol=0)
    assert times[True] >= 0.8 * 1.0  # real-time pace
    assert times[False] < times[True] / 2


def test_mic_through_a_fake_portaudio(monkeypatch):
    """The microphone path (callback thread -> bounded queue -> stream) with sounddevice replaced."""
    x = noise(1.0, 48000, seed=6)

    class InputStream:
        latency = 0.02  # seconds, as PortAudio reports a device's buffering

        def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
            assert samplerate == 48000 and channels == 1 and dtype == "float32" and blocksize == 960
            self.callback, self.blocksize = callback, blocksize

        def __enter__(self):
            def play():
                for lo in range(0, len(x), self.blocksize):
                    self.callback(x[lo: lo + self.blocksize, None].copy(), self.blocksize, None, None)
                    time.sleep(0.002)
            self.thread = threading.Thread(target=play, daemon=True)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.thread.join()

    fake = types.SimpleNamespace(InputStream=InputStream,
                                 query_devices=lambda device, kind: {"name": "fake", "default_samplerate": 48000.0})
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    out = io.StringIO()
    live = LiveStream(MODEL, StreamConfig(input="mic", device="fake"), stdout=out)
    with StreamThread(live) as st:
        deadline = time.time() + 20
        while live.samples_received < len(x) and time.time() < deadline:
            time.sleep(0.01)
        stats = st.stop()  # the end of the stream: its last frames go out
    want = offline(resample(x, 48000, 16000))
    np.testing.assert_allclose(frames_of([json.loads(line) for line in out.getvalue().splitlines()]), want,
                               atol=TOL, rtol=0)
    assert stats["input"]["dropped_blocks"] == 0
    # a block that does not fit the queue is dropped and counted, never waited for
    mic = MicSource("fake", queue_blocks=1)
    q = asyncio.Queue(1)
    mic._offer(q, x[:960], 0.0, None)
    mic._offer(q, x[:960], 0.0, None)
    assert mic.dropped_blocks == 1 and q.qsize() == 1


def test_missing_portaudio_is_one_clear_error(monkeypatch):
    from distilface.audio import AudioError
    from distilface.runtime.sources import import_sounddevice

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(AudioError, match="pip install sounddevice"):
        import_sounddevice()
    monkeypatch.delitem(sys.modules, "sounddevice")
    try:
        import sounddevice  # noqa: F401
    except OSError:  # no libportaudio on this machine: the message says what to install
        with pytest.raises(AudioError, match="libportaudio2"):
            import_sounddevice()


def test_pcm_decoder_keeps_split_samples():
    x = noise(0.01, seed=7)
    pcm = encode_pcm(x)
    dec = PcmDecoder("s16le")
    parts = [dec(pcm[i: i + 7]) for i in range(0, len(pcm), 7)]  # 7 bytes: samples split across reads
    np.testing.assert_array_equal(np.concatenate(parts), decode_pcm(pcm))
    np.testing.assert_allclose(decode_pcm(pcm), x, atol=1 / 32768)
    f32 = PcmDecoder("f32le")(np.array([0.5, np.nan, -1.0], "<f4").tobytes())
    np.testing.assert_array_equal(f32, [0.5, 0.0, -1.0])


# -- real time -------------------------------------------------------------------------------

def test_realtime_clock_counts_underruns():
    c = RealtimeClock(rate_hz=1000, late_s=0.1)
    assert c.arrived(100, 0.1) == 0 and c.origin_s == pytest.approx(0.0)
    assert c.arrived(100, 0.2) == 0  # on time
    assert c.arrived(100, 0.35) == 0  # 50 ms late: jitter, not an under-run
    assert c.arrived(100, 0.7) == pytest.approx(0.3)  # due at 0.4
    assert c.underruns == 1 and c.origin_s == pytest.approx(0.3)
    assert c.arrived(1000, 0.8) == 0 and c.origin_s == pytest.approx(-0.6)  # early: the origin moves back
    assert c.arrived(100, 0.95) == 0  # due at 0.9
    assert c.arrived(100, 1.2) == pytest.approx(0.2)  # due at 1.0
    assert c.underruns == 2


def test_a_paused_sender_is_an_underrun(caplog):
    live = LiveStream(MODEL, StreamConfig(input="ws", outputs=("ws",), ws_port=0, underrun_ms=200))
    x = noise(0.4, seed=8)
    with StreamThread(live) as st, caplog.at_level("WARNING", logger="distilface.runtime.live"):
        with connect(ws_url(live, "/audio")) as sender:
            t0 = time.perf_counter()
            for j, lo in enumerate(range(0, len(x), 320)):
                pause = 0.5 if lo >= 3200 else 0.0  # 500 ms of nothing after 200 ms of audio
                time.sleep(max(t0 + pause + (lo + 320) / 16000 - time.perf_counter(), 0))
                sender.send(encode_pcm(x[lo: lo + 320]))
        stats = st.stop()
    assert stats["underruns"] == 1
    assert any("under-run" in r.message for r in caplog.records)


@pytest.mark.parametrize("runtime", ["torch", "native"])
def test_loopback_latency_short_run(runtime):
    from distilface.runtime.native import NativeModel

    model = MODEL if runtime == "torch" else NativeModel.from_student(MODEL)
    r = loopback_latency(model, 1.0, FPS)
    lookahead = LiveStream(model, StreamConfig(input="ws", outputs=("ws",))).lookahead_samples
    assert r["future_ms"] == pytest.approx(lookahead / 16)
    # frames whose last needed sample was sent: k / 30 + lookahead < 1 s
    assert r["frames"] == sum(round(k * 16000 / FPS) + lookahead <= 16000 for k in range(30))
    assert 0 < r["median_ms"] <= r["p99_ms"] <= r["max_ms"] < 1000
    assert r["dropped"] == 0 and r["chunk_ms"] == 10.0


def test_config_is_checked():
    for bad in ({"input": "tcp"}, {"input": "wav"}, {"outputs": ("csv",)}, {"outputs": ("ndjson", "ndjson")},
                {"outputs": ()}, {"fps": 0}, {"pcm_format": "mp3"}, {"ws_port": 70000}):
        with pytest.raises(ValueError):
            StreamConfig(**bad)


def test_cli_streams_a_native_export(tmp_path):
    """`stream --model x.npz`: the real CLI on the C step, frames equal to offline torch."""
    from distilface.runtime.native import save_native

    save_native(MODEL, tmp_path / "tiny.npz")
    pcm = encode_pcm(noise(1.2, seed=6))
    proc = subprocess.run([sys.executable, "-m", "distilface.cli", "stream", "--input", "stdin", "--model",
                           str(tmp_path / "tiny.npz"), "--output", "ndjson"], input=pcm, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    want = offline(decode_pcm(pcm))
    assert [m["frame"] for m in lines] == list(range(len(want)))
    np.testing.assert_allclose(frames_of(lines), want, atol=TOL, rtol=0)
