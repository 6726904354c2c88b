"""`distilface bench soak`: a long stream through the real `distilface stream` server over loopback.

The server is the CLI in its own process (`distilface stream --input ws --output ws --ws-port 0`),
so its memory is measured alone (VmRSS from /proc, sampled every `sample_s`). Clients, all in
this process, on real sockets:

- a sender: the audio (the bundled example clip, looped) as s16le in 20 ms messages, paced at
  `speed` x real time (1: a live microphone; more: the same path, faster);
- a good viewer: reads every frame; must get frames 0..N-1 of the stream, each once, in order;
- a slow viewer: sleeps `slow_ms` per frame, so it falls behind; the server drops its oldest
  frames (counted) instead of waiting for it;
- a disconnecting viewer: reads `reconnect_frames` frames, drops the TCP connection without a
  closing handshake, connects again, for the whole run.

Pass: the good viewer's frames are exactly 0..N-1 (N = frames of the audio at `fps`), the server
lives through it, and its memory is flat: the median RSS of the last quarter of the run is within
`max_growth_mb` of the median of the second quarter (the first quarter is start-up; a run with
fewer than 8 samples compares its last sample with its first).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.curves import num_frames
from distilface.runtime.bench import save_figure, write_report


@dataclass(frozen=True)
class SoakConfig:
    audio_s: float = 1800.0  # 30 minutes
    speed: float = 10.0  # x real time the sender keeps to
    fps: float = 30.0
    model: str | None = None  # shipped name or checkpoint / .onnx (default: the shipped default)
    slow_ms: float = 50.0  # the slow viewer's pause per frame
    reconnect_frames: int = 200  # frames the disconnecting viewer reads per connection
    sample_s: float = 0.5  # RSS sampling period
    max_growth_mb: float = 10.0
    ws_queue: int = 64  # per viewer (the stream default)
    chunk_ms: float = 20.0


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _start_server(cfg: SoakConfig) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "distilface.cli", "stream", "--input", "ws", "--output", "ws",
           "--ws-port", "0", "--fps", str(cfg.fps), "--ws-queue", str(cfg.ws_queue), "--threads", "1"]
    if cfg.model:
        cmd += ["--model", cfg.model]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # "distilface stream: listening on ws://127.0.0.1:PORT/audio, ..."
        m = re.search(r"listening on ws://[^:]+:(\d+)/", line)
        if m:
            # keep draining stderr so the server never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"soak: the stream server did not start (exit {proc.wait()})")


class _Viewer(threading.Thread):
    """A frames client: `pause_s` per frame; `reconnect_every` frames it drops the connection."""

    def __init__(self, url: str, name: str, pause_s: float = 0.0, reconnect_every: int = 0) -> None:
        super().__init__(name=f"soak-{name}", daemon=True)
        self.url, self.label, self.pause_s, self.reconnect_every = url, name, pause_s, reconnect_every
        self.frames: list[int] = []
        self.connections = 0
        self.ended = threading.Event()
        self.registered = threading.Event()
        self.timeline: list[tuple[float, int]] = []  # (monotonic s, frames so far)

    def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        while not self.ended.is_set():
            try:
                # the slow viewer reads nothing while it sleeps, so the pongs to its own keepalive
                # pings sit unread and it would close itself with 1011 (a traceback on stderr); the
                # soak judges the server, which keeps its own keepalive to such a client
                ping_s = None if self.pause_s else 20.0
                with connect(self.url, compression=None, max_size=None, ping_interval=ping_s) as ws:
                    self.connections += 1
                    self._read(ws)
            except (ConnectionClosed, OSError):
                if not self.registered.is_set():
                    return  # the server is gone before we ever got in

    def _read(self, ws: Any) -> None:
        got = 0
        for text in ws:
            msg = json.loads(text)
            if msg["type"] == "hello":
                self.registered.set()
            elif msg["type"] == "frame":
                self.frames.append(msg["frame"])
                got += 1
                if len(self.frames) % 100 == 0:
                    self.timeline.append((time.monotonic(), len(self.frames)))
                if self.pause_s:
                    time.sleep(self.pause_s)
                if self.reconnect_every and got >= self.reconnect_every:
                    ws.socket.close()  # drop the TCP connection, no closing handshake
                    return
            elif msg["type"] == "end":
                self.ended.set()
                return


def soak(cfg: SoakConfig) -> dict[str, Any]:
    """Run the soak (module doc) -> results, with the RSS samples and each client's counts."""
    from websockets.sync.client import connect

    from distilface.audio import EXAMPLE_AUDIO, load_audio
    from distilface.runtime.bench import looped
    from distilface.runtime.sources import chunk_samples, encode_pcm

    clip = load_audio(EXAMPLE_AUDIO)
    n_chunk = chunk_samples(SAMPLE_RATE_HZ, cfg.chunk_ms)
    n_total = round(cfg.audio_s * SAMPLE_RATE_HZ)
    proc, port = _start_server(cfg)
    rss: list[tuple[float, float]] = []
    stop_sampling = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop_sampling.is_set():
            v = _rss_mb(proc.pid)
            if v is not None:
                rss.append((time.monotonic() - t0, v))
            stop_sampling.wait(cfg.sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    url = f"ws://127.0.0.1:{port}"
    good = _Viewer(url + "/frames", "good")
    slow = _Viewer(url + "/frames", "slow", pause_s=cfg.slow_ms / 1000)
    flaky = _Viewer(url + "/frames", "disconnecting", reconnect_every=cfg.reconnect_frames)
    try:
        for v in (good, slow, flaky):
            v.start()
            if not v.registered.wait(60):
                raise RuntimeError(f"soak: viewer {v.label} got no hello")
        from tqdm import tqdm

        block = looped(clip, 60.0)  # one minute of speech, reused: the sender's memory stays small
        sent = 0
        # no keepalive pings from the sender: while the server holds it back (its audio queue is
        # full), it reads nothing from this socket, pongs included, and the ping would time out
        with connect(url + "/audio", compression=None, ping_interval=None) as sender, \
                tqdm(total=round(cfg.audio_s), desc="soak", unit="audio s") as bar:
            start = time.monotonic()
            while sent < n_total:
                n = min(n_chunk, n_total - sent)
                lo = sent % len(block)
                chunk = block[lo: lo + n]
                if len(chunk) < n:
                    chunk = np.concatenate([chunk, block[: n - len(chunk)]])
                due = start + (sent + n) / SAMPLE_RATE_HZ / cfg.speed
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                sender.send(encode_pcm(chunk))
                sent += n
                if sent % SAMPLE_RATE_HZ < n:
                    bar.update(1)
        if not good.ended.wait(120):
            raise RuntimeError("soak: the good viewer never saw the end of the stream")
        wall_s = time.monotonic() - start
        time.sleep(2 * cfg.sample_s)
    finally:
        stop_sampling.set()
        for v in (slow, flaky):
            v.ended.set()
        alive = proc.poll() is None
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    want = num_frames(n_total / SAMPLE_RATE_HZ, cfg.fps)
    frames = np.asarray(good.frames)
    in_order = bool(len(frames) == want and np.array_equal(frames, np.arange(want)))
    t = np.asarray([r[0] for r in rss])
    mb = np.asarray([r[1] for r in rss])
    if len(t) >= 8:
        q = t[-1] / 4
        second = float(np.median(mb[(t >= q) & (t < 2 * q)]))
        last = float(np.median(mb[t >= 3 * q]))
    elif len(t):  # a short run: too few samples for quarters, first against last
        second, last = float(mb[0]), float(mb[-1])
    else:
        second = last = float("nan")
    return {
        "config": asdict(cfg), "wall_s": wall_s, "frames_expected": want, "server_alive_at_end": alive,
        "good": {"frames": len(frames), "in_order_no_loss": in_order,
                 "duplicates": int(len(frames) - len(np.unique(frames)))},
        "slow": {"frames": len(slow.frames), "missing": want - len(set(slow.frames)),
                 "in_order": bool(np.all(np.diff(slow.frames) > 0)) if len(slow.frames) > 1 else True},
        "disconnecting": {"frames": len(flaky.frames), "connections": flaky.connections,
                          "in_order": bool(np.all(np.diff(flaky.frames) > 0)) if len(flaky.frames) > 1 else True},
        "rss_mb": {"second_quarter_median": second, "last_quarter_median": last, "growth": last - second,
                   "max": float(mb.max()) if len(mb) else float("nan"), "samples": [list(r) for r in rss]},
        "timelines": {v.label: v.timeline for v in (good, slow, flaky)},
        "passed": bool(in_order and alive and last - second <= cfg.max_growth_mb),
    }


def format_summary(r: dict[str, Any]) -> str:
    c, m = r["config"], r["rss_mb"]
    return "\n".join([
        f"| soak | value |", "|---|---|",
        f"| audio | {c['audio_s']:.0f} s at {c['speed']:g}x real time ({r['wall_s']:.0f} s wall) |",
        f"| frames expected | {r['frames_expected']} |",
        f"| good viewer | {r['good']['frames']} frames, in order without loss: {r['good']['in_order_no_loss']}, "
        f"duplicates {r['good']['duplicates']} |",
        f"| slow viewer ({c['slow_ms']:g} ms per frame) | {r['slow']['frames']} frames, {r['slow']['missing']} "
        f"dropped by the server, in order: {r['slow']['in_order']} |",
        f"| disconnecting viewer | {r['disconnecting']['frames']} frames over "
        f"{r['disconnecting']['connections']} connections, in order: {r['disconnecting']['in_order']} |",
        f"| server RSS | {m['second_quarter_median']:.1f} MB (2nd quarter median) -> "
        f"{m['last_quarter_median']:.1f} MB (last quarter), growth {m['growth']:+.1f} MB, max {m['max']:.1f} MB |",
        f"| server alive at the end | {r['server_alive_at_end']} |",
        f"| passed | {r['passed']} |", ""])


def plot(r: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    s = np.asarray(r["rss_mb"]["samples"])
    if len(s):
        a.plot(s[:, 0], s[:, 1], lw=1)
    a.set_xlabel("wall s")
    a.set_ylabel("server RSS, MB")
    a.set_title("memory of `distilface stream`")
    t0 = min((tl[0][0] for tl in r["timelines"].values() if tl), default=0.0)
    for name, tl in r["timelines"].items():
        if tl:
            x = np.asarray(tl)
            b.plot(x[:, 0] - t0, x[:, 1], label=name)
    b.set_xlabel("wall s")
    b.set_ylabel("frames received")
    b.legend()
    b.set_title(f"{r['config']['audio_s']:.0f} s of audio at {r['config']['speed']:g}x real time")
    return save_figure(fig, path)


def write_results(r: dict[str, Any], out: str | Path) -> list[Path]:
    return write_report(r, out, format_summary(r), plot)
