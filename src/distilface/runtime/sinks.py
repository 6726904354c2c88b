"""Live outputs of `distilface stream`: newline-delimited JSON, a WebSocket server for browsers,
OSC in the VMC protocol, Live Link Face UDP packets (Unreal's Live Link), a Live Link Face CSV file.

Every output gets, from the live loop (`distilface.runtime.live`), per stream:

    start(info)                  a stream begins (`StreamInfo`: names, fps, lookahead, ...)
    frame(frame)                 each `Frame`, in order; must not block: network outputs queue or drop
    end(info, frames, reason)    the stream is over

and `close()` once at the end. The JSON of a frame (NDJSON line, WebSocket text message):

    {"type": "frame", "stream": 0, "frame": 12, "time_s": 0.4, "audio_s": 0.68,
     "sent_unix_s": 1763771234.5678, "latency_ms": 2.31, "lookahead_ms": 272.69,
     "blendshapes": {"eyeBlinkLeft": 0.012, ...}}

frame: counter from 0 per stream. time_s: the frame's time in the audio (frame / fps). audio_s:
audio received when it was computed. sent_unix_s: wall clock (time.time()) when the loop handed
it to the outputs. latency_ms: from the arrival of the audio chunk that completed the frame to
then (queueing + model). lookahead_ms: audio after time_s the frame waited for (the model's future
context, plus smoothing's offset), a latency no implementation can remove.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from distilface.fileio import FILE_MODE, check_output

logger = logging.getLogger(__name__)

JSON_DECIMALS = 6  # blendshape values in JSON: 1e-6 is far below anything visible
VMC_PORT = 39539  # the VMC protocol's default (what VSeeFace, VMagicMirror, Warudo listen on)
VMC_BLEND_VAL = "/VMC/Ext/Blend/Val"  # (string name, float value), one per blendshape
VMC_BLEND_APPLY = "/VMC/Ext/Blend/Apply"  # (no arguments): show the values sent since the last one
OSC_NAME_STYLES = ("perfect-sync", "arkit", "vrm0", "vrm1")  # vrm*: the VRM presets, not the 52 (distilface.vrm)
LIVE_LINK_PORT = 11111  # where Unreal's Live Link Face source listens (the iPhone app's default target)
LIVE_LINK_VERSION = 6  # the packet version the app sends and Unreal's AppleARKitFaceSupport reads


@dataclass(frozen=True)
class StreamInfo:
    stream: int  # index of the stream since the loop started
    source: str
    names: tuple[str, ...]
    fps: float
    rate_hz: int  # of the incoming audio
    lookahead_ms: float

    def message(self) -> dict[str, Any]:
        return {"type": "start", "stream": self.stream, "source": self.source, "fps": self.fps,
                "rate_hz": self.rate_hz, "lookahead_ms": round(self.lookahead_ms, 3), "names": list(self.names)}


@dataclass
class Frame:
    stream: int
    index: int  # from 0 per stream
    time_s: float  # index / fps
    audio_s: float  # audio received when it was computed
    sent_unix_s: float
    latency_ms: float  # arrival of the completing chunk -> handed to the outputs
    lookahead_ms: float
    names: tuple[str, ...]
    values: np.ndarray  # (outputs,) float32
    _json: str | None = field(default=None, repr=False)

    def json(self) -> str:
        """The frame as one line of JSON (module doc), encoded once for every output."""
        if self._json is None:
            self._json = json.dumps({
                "type": "frame", "stream": self.stream, "frame": self.index, "time_s": round(self.time_s, 6),
                "audio_s": round(self.audio_s, 6), "sent_unix_s": round(self.sent_unix_s, 6),
                "latency_ms": round(self.latency_ms, 3), "lookahead_ms": round(self.lookahead_ms, 3),
                "blendshapes": {n: round(float(v), JSON_DECIMALS) for n, v in zip(self.names, self.values)}},
                separators=(",", ":"))
        return self._json


class Output:
    """Base of the outputs: every hook does nothing."""

    def prepare(self, names: tuple[str, ...], fps: float) -> None:
        """Once, before anything starts: the model's curve names and the frame rate. Raises
        ValueError if such frames cannot be written."""

    def start(self, info: StreamInfo) -> None:
        pass

    def frame(self, frame: Frame) -> None:
        pass

    def end(self, info: StreamInfo, frames: int, reason: str) -> None:
        pass

    async def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}


# -- NDJSON ------------------------------------------------------------------------------------

class NdjsonOutput(Output):
    """One JSON frame per line on a text stream (stdout), flushed per frame. A closed pipe raises
    BrokenPipeError, which ends the stream (as `| head` expects)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lines = 0

    def frame(self, frame: Frame) -> None:
        self.out.write(frame.json() + "\n")
        self.out.flush()
        self.lines += 1

    def stats(self) -> dict[str, Any]:
        return {"lines": self.lines}


# -- Live Link Face CSV ------------------------------------------------------------------------

class CsvOutput(Output):
    """Frames as a Live Link Face recording (`distilface.formats`: Timecode, BlendShapeCount, the 52
    blendshapes in LLF order, 9 zero head/eye rotations), a row per frame, flushed per row. The
    first stream writes `path`; a later one (the next WebSocket sender) `<stem>-<n><suffix>`.

    Rows go to `<name>.<random>.part` beside it (flushed per row: it can be followed live), renamed
    to the name when the stream ends, so an earlier recording of that name stays whole until a new
    one is complete. `finite_input` (a file): a stream stopped before the input's end is not
    complete, so the old file stays and the part is left for the user (named in the log)."""

    def __init__(self, path: str | Path, finite_input: bool = False) -> None:
        self.path = Path(path)
        self.finite_input = finite_input
        self._file: TextIO | None = None
        self._part: Path | None = None
        self._target: Path | None = None
        self._stream_rows = 0  # of the stream being written
        self._fps = 30.0
        self._order: np.ndarray | None = None  # LLF column -> index into the frame's values
        self.files: list[str] = []
        self.rows = 0

    def _path_for(self, n: int) -> Path:
        return self.path if n == 0 else self.path.with_name(f"{self.path.stem}-{n}{self.path.suffix}")

    def prepare(self, names: tuple[str, ...], fps: float) -> None:
        from distilface.formats import LLF_BLENDSHAPES

        arkit = [n[0].lower() + n[1:] for n in LLF_BLENDSHAPES]
        missing = [n for n in arkit if n not in names]
        if missing:
            raise ValueError("CSV output (Live Link Face) needs the 52 ARKit blendshapes; "
                             f"missing {', '.join(missing[:5])}")
        self._order = np.array([names.index(n) for n in arkit])

    def start(self, info: StreamInfo) -> None:
        from distilface.formats import LLF_HEADER

        self.prepare(info.names, info.fps)
        self._fps = info.fps
        import tempfile

        path = self._path_for(len(self.files))
        check_output(path)
        fd, part = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".part", dir=path.parent)
        self._file = open(fd, "w", newline="")
        self._part, self._target = Path(part), path
        self._file.write(",".join(LLF_HEADER) + "\n")
        self._stream_rows = 0
        self.files.append(str(path))

    def frame(self, frame: Frame) -> None:
        from distilface.formats import LLF_BLENDSHAPE_COUNT, LLF_ROTATIONS, llf_timecode

        if self._file is None or self._order is None:
            return
        values = ",".join(f"{v:.6f}" for v in frame.values[self._order])
        self._file.write(f"{llf_timecode(frame.index, self._fps)},{LLF_BLENDSHAPE_COUNT},{values},"
                         + ",".join(["0"] * len(LLF_ROTATIONS)) + "\n")
        self._file.flush()
        self.rows += 1
        self._stream_rows += 1

    def end(self, info: StreamInfo, frames: int, reason: str) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if self.finite_input and reason == "stopped":
            logger.warning("csv: stopped before the end of the input: %s left as it was; the %d rows so far "
                           "are in %s", self._target, self._stream_rows, self._part)
            self.files[-1] = str(self._part)
            return
        os.chmod(self._part, FILE_MODE)  # mkstemp's 0600 -> the umask's usual mode
        os.replace(self._part, self._target)

    async def close(self) -> None:
        self.end(None, 0, "stopped")  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        return {"files": self.files, "rows": self.rows}


# -- OSC (VMC protocol) ------------------------------------------------------------------------

def vmc_name(name: str, style: str = "perfect-sync") -> str:
    """ARKit name -> the blendshape clip name sent. perfect-sync: "JawOpen" (the clip names of VRM
    "perfect sync" models, which VMC receivers look up); any other style: the name as is ("jawOpen";
    the VRM styles send preset names, which `OscOutput` maps the values to first)."""
    if style not in OSC_NAME_STYLES:
        raise ValueError(f"OSC name style {style!r}: expected one of {', '.join(OSC_NAME_STYLES)}")
    return name[0].upper() + name[1:] if style == "perfect-sync" and name else name


class VmcBundler:
    """Frame values -> one OSC bundle (bytes): `/VMC/Ext/Blend/Val name value` per blendshape,
    then `/VMC/Ext/Blend/Apply`. The messages are built once with python-osc; per frame only the
    float32 values (the last 4 bytes of each message) change."""

    def __init__(self, names: tuple[str, ...], style: str = "perfect-sync") -> None:
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        def message(address: str, *args: tuple[Any, str]) -> bytes:
            m = OscMessageBuilder(address)
            for value, tag in args:
                m.add_arg(value, tag)
            return m.build().dgram

        self.names = tuple(names)
        self._val_prefix = [message(VMC_BLEND_VAL, (vmc_name(n, style), "s"), (0.0, "f"))[:-4] for n in self.names]
        apply = message(VMC_BLEND_APPLY)
        self._header = OscBundleBuilder(IMMEDIATELY).build().dgram  # "#bundle\0" + time tag
        self._apply = struct.pack(">i", len(apply)) + apply
        self._sizes = [struct.pack(">i", len(p) + 4) for p in self._val_prefix]

    def __call__(self, values: np.ndarray) -> bytes:
        parts = [self._header]
        for size, prefix, v in zip(self._sizes, self._val_prefix, np.asarray(values, np.float32).tolist()):
            parts += (size, prefix, struct.pack(">f", v))
        parts.append(self._apply)
        return b"".join(parts)


class UdpOutput(Output):
    """One datagram per frame to host:port. UDP never waits for a receiver: a datagram the socket
    cannot take now, or an error from a missing receiver, is dropped and counted (`dropped`)."""

    kind = "udp"  # names the output in the log

    def __init__(self, host: str, port: int) -> None:
        if not 1 <= port <= 65535:  # 0 binds to any port, but no datagram can be sent to it
            raise ValueError(f"--{self.kind}-port {port}: not a port to send to (1-65535)")
        try:
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as e:
            raise ValueError(f"--{self.kind}-host {host!r}: cannot resolve ({e.args[-1] if e.args else e})") from None
        self.address = addr
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = 0
        self.dropped = 0

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.address)
            self.sent += 1
        except OSError as e:  # BlockingIOError (buffer full), ConnectionRefusedError (ICMP from before)
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("%s %s: datagram dropped (%s); counting further drops", self.kind, self.address, e)

    async def close(self) -> None:
        self.sock.close()

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "dropped": self.dropped}


class OscOutput(UdpOutput):
    """VMC-protocol OSC over UDP to host:port, one bundle per frame: the model's curves, or with
    style vrm0 / vrm1 the VRM vowel and blink presets fitted to them (distilface.vrm)."""

    kind = "osc"

    def __init__(self, host: str = "127.0.0.1", port: int = VMC_PORT, style: str = "perfect-sync") -> None:
        vmc_name("x", style)
        super().__init__(host, port)
        self.style = style
        self._names: tuple[str, ...] | None = None  # the stream's curve names the bundler was built for
        self._bundle: VmcBundler | None = None
        self._vrm: Callable[[np.ndarray], np.ndarray] | None = None

    def start(self, info: StreamInfo) -> None:
        if self._names == info.names:
            return
        self._names = info.names
        if self.style.startswith("vrm"):
            from distilface.vrm import VrmMapper

            self._vrm = VrmMapper(info.names, self.style[len("vrm"):])
            self._bundle = VmcBundler(self._vrm.names, self.style)
        else:
            self._bundle = VmcBundler(info.names, self.style)

    def frame(self, frame: Frame) -> None:
        assert self._bundle is not None
        self.send(self._bundle(frame.values if self._vrm is None else self._vrm(frame.values)))


# -- Live Link Face over UDP (Unreal) ---------------------------------------------------------

class LiveLinkPacker:
    """Frame values -> one Live Link Face packet, as Epic's iPhone app sends them to Unreal's Live
    Link (AppleARKitFaceSupport), every number big-endian:

        uint8 version (6) | int32 length + UTF-8 device id | int32 length + UTF-8 subject name |
        int32 frame number, float32 sub-frame, int32 fps numerator, int32 fps denominator |
        uint8 count (61) | 61 float32: the 52 ARKit blendshapes in Apple's order, then head yaw,
        pitch, roll and both eyes' yaw, pitch, roll (zeros: the students animate no pose)

    The frame time is a timecode: frames since local midnight at the stream's rate, counted from
    the wall clock at the stream's start plus the frame's time in the audio, so frames are evenly
    spaced however they are computed."""

    def __init__(self, names: tuple[str, ...], fps: float, subject: str, device_id: str) -> None:
        from fractions import Fraction

        from distilface.formats import LLF_ROTATIONS
        from distilface.rig.arkit import ARKIT_52

        missing = [n for n in ARKIT_52 if n not in names]
        if missing:
            raise ValueError("livelink output needs the 52 ARKit blendshapes; missing " + ", ".join(missing[:5]))
        self.names = tuple(names)
        self._order = np.array([names.index(n) for n in ARKIT_52])
        self._pose = np.zeros(len(LLF_ROTATIONS), np.float32)
        # timecode rates: whole (30/1) or NTSC (29.97 -> 30000/1001, 23.976 -> 24000/1001)
        rate = next((Fraction(round(fps * d), d) for d in (1, 1001) if abs(round(fps * d) / d - fps) < 1e-4),
                    Fraction(fps).limit_denominator(1000))
        self.fps = float(rate)
        head = [struct.pack(">B", LIVE_LINK_VERSION)]
        for text in (device_id, subject):
            data = text.encode()
            head.append(struct.pack(">i", len(data)) + data)
        self._head = b"".join(head)
        self._rate = struct.pack(">ii", rate.numerator, rate.denominator)
        self._count = struct.pack(">B", len(ARKIT_52) + len(LLF_ROTATIONS))
        self.start_frames = 0.0  # the stream's start, in frames since local midnight

    def start(self, unix_s: float) -> None:
        import time

        t = time.localtime(unix_s)
        since_midnight_s = t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (unix_s % 1.0)
        self.start_frames = since_midnight_s * self.fps

    def __call__(self, index: int, values: np.ndarray) -> bytes:
        at = self.start_frames + index
        whole = int(at)
        curves = np.concatenate([np.asarray(values, np.float32)[self._order], self._pose]).astype(">f4")
        return b"".join((self._head, struct.pack(">if", whole, at - whole), self._rate, self._count,
                         curves.tobytes()))


class LiveLinkOutput(UdpOutput):
    """Live Link Face packets (the app's ARKit mode, version 6) over UDP to host:port, one per
    frame. An Unreal editor with the Live Link and Apple ARKit Face Support plugins listens on UDP
    11111 and lists `subject` in its Live Link panel, as it lists a phone."""

    kind = "livelink"

    def __init__(self, host: str = "127.0.0.1", port: int = LIVE_LINK_PORT, subject: str = "DistilFace") -> None:
        import uuid

        if not subject or len(subject.encode()) > 255:
            raise ValueError(f"--livelink-subject {subject!r}: 1 to 255 bytes")
        super().__init__(host, port)
        self.subject = subject
        self.device_id = str(uuid.uuid4()).upper()  # one per run, as the app has one per phone
        self._pack: LiveLinkPacker | None = None

    def prepare(self, names: tuple[str, ...], fps: float) -> None:
        LiveLinkPacker(names, fps, self.subject, self.device_id)  # raises for curves it cannot send

    def start(self, info: StreamInfo) -> None:
        import time

        if self._pack is None or self._pack.names != info.names:
            self._pack = LiveLinkPacker(info.names, info.fps, self.subject, self.device_id)
        self._pack.start(time.time())

    def frame(self, frame: Frame) -> None:
        assert self._pack is not None
        self.send(self._pack(frame.index, frame.values))


# -- WebSocket for browsers --------------------------------------------------------------------

class _Viewer:
    """One connected frames client: its bounded queue of JSON texts and what it lost."""

    def __init__(self, ws: Any, queue_messages: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_messages)
        self.dropped = 0
        self.sent = 0
        self.sending = False  # a message is being written (the socket may be full)

    @property
    def behind(self) -> bool:
        return self.sending or not self.queue.empty()

    def offer(self, text: str) -> None:
        """Queue `text`; when full, drop the oldest message: a slow client sees the newest frames."""
        if self.queue.full():
            self.queue.get_nowait()
            self.queue.task_done()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("ws viewer %s: slow, %d frames dropped", _peer(self.ws), self.dropped)
        self.queue.put_nowait(text)


def _peer(ws: Any) -> str:
    addr = getattr(ws, "remote_address", None)
    return f"{addr[0]}:{addr[1]}" if addr else "?"


class WsFramesOutput(Output):
    """Frames as JSON text messages to every WebSocket client of the live server's frames endpoint
    (`/` or `/frames`). A client first gets {"type": "hello", "names", "fps", "stream"}, then per
    stream {"type": "start", ...} (`StreamInfo.message`), the frames, {"type": "end", "stream",
    "frames", "reason"}.

    Each client has a queue of `queue_messages`; `frame()` only puts into the queues, a task per
    client sends. A client that stalls fills its queue and loses the oldest messages (counted in
    `dropped`); one that disconnects is forgotten. Neither slows the stream or the other clients.
    The kernel's send buffer of a client's socket is set to `send_buffer_bytes` (Linux doubles it)
    instead of growing to megabytes: what a slow client gets is then at most about that much plus
    its queue behind the stream, and its queue fills (and drops) soon enough to notice.
    """

    def __init__(self, queue_messages: int = 64, send_buffer_bytes: int | None = 1 << 15) -> None:
        if queue_messages < 1:
            raise ValueError(f"ws queue must hold at least 1 message, got {queue_messages}")
        self.queue_messages = int(queue_messages)
        self.send_buffer_bytes = send_buffer_bytes
        self._viewers: set[_Viewer] = set()
        self._info: StreamInfo | None = None
        self._names: tuple[str, ...] = ()  # from prepare(), for the hello of a viewer that comes early
        self._fps = 0.0
        self.connected = 0
        self.dropped = 0  # by clients that have left
        self.sent = 0

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def prepare(self, names: tuple[str, ...], fps: float) -> None:
        self._names, self._fps = tuple(names), float(fps)

    def _broadcast(self, text: str) -> None:
        for v in self._viewers:
            v.offer(text)

    def start(self, info: StreamInfo) -> None:
        self._info, self._names, self._fps = info, info.names, info.fps
        self._broadcast(json.dumps(info.message()))

    def frame(self, frame: Frame) -> None:
        if self._viewers:
            self._broadcast(frame.json())

    def end(self, info: StreamInfo, frames: int, reason: str) -> None:
        self._broadcast(json.dumps({"type": "end", "stream": info.stream, "frames": frames, "reason": reason}))
        self._info = None

    async def _send(self, viewer: _Viewer) -> None:
        while True:
            text = await viewer.queue.get()
            viewer.sending = True
            try:
                await viewer.ws.send(text)
                viewer.sent += 1
            finally:
                viewer.sending = False
                viewer.queue.task_done()

    async def handle(self, ws: Any) -> None:
        """One frames client (websockets `ServerConnection`), until it goes."""
        from websockets.exceptions import ConnectionClosed

        sock = ws.transport.get_extra_info("socket") if self.send_buffer_bytes else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(self.send_buffer_bytes))
        viewer = _Viewer(ws, self.queue_messages)
        viewer.offer(json.dumps({"type": "hello", "names": list(self._names), "fps": self._fps,
                                 "stream": None if self._info is None else self._info.stream}))
        if self._info is not None:  # joined mid-stream
            viewer.offer(json.dumps(self._info.message()))
        self._viewers.add(viewer)
        self.connected += 1
        sender = asyncio.create_task(self._send(viewer))
        try:
            async for _ in ws:  # a viewer has nothing to say; reading keeps pings and close working
                pass
        except ConnectionClosed:
            pass
        finally:
            self._viewers.discard(viewer)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.dropped += viewer.dropped
            self.sent += viewer.sent
            if viewer.dropped:
                logger.warning("ws viewer %s left: %d frames dropped", _peer(ws), viewer.dropped)

    async def drain(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every client's queue has been sent."""
        joins = [v.queue.join() for v in self._viewers]
        if joins:
            try:
                await asyncio.wait_for(asyncio.gather(*joins), timeout_s)
            except asyncio.TimeoutError:
                behind = sum(v.behind for v in self._viewers)
                logger.info("ws: %d viewer(s) still behind at shutdown", behind)

    async def close(self) -> None:
        """Cut the viewers still behind after `drain`: a stalled client cannot take a close frame
        either, and a graceful close would wait for it up to the ping timeout."""
        for v in self._viewers:
            if v.behind:
                v.ws.transport.abort()

    def stats(self) -> dict[str, Any]:
        live = list(self._viewers)
        return {"viewers": len(live), "connected": self.connected,
                "dropped": self.dropped + sum(v.dropped for v in live),
                "sent": self.sent + sum(v.sent for v in live)}
