"""`distilface stream`: live audio in, animation frames out, in real time.

    source (sources.py) --events--> bounded queue --> LiveStream --Frame--> outputs (sinks.py)
                                                       model in a worker thread

One asyncio loop runs the inputs, the WebSocket server and the outputs; the model
(`StreamingAnimator`, any chunk size, any rate) runs on one worker thread so that network I/O goes
on while it computes. `LiveStream` is the loop object and holds its state explicitly: `state`
("idle" between streams, "live", "closed"), the current stream's animator, `StreamInfo`, frame
counter and real-time clock (`RealtimeClock`, which logs under-runs).

Bounded everywhere: the event queue between sources and model (`queue_chunks`: a source that can
wait is slowed down, the microphone drops blocks and counts them), one queue per WebSocket viewer
(`ws_queue_messages`: a stalled viewer loses its oldest frames, counted), incoming WebSocket
messages (`ws_max_message_bytes`, larger ones close that connection with 1009), UDP that never
waits. Servers bind to `host`, 127.0.0.1 unless told otherwise.

The WebSocket server (one port, `ws_port`) has two endpoints: `/audio` takes PCM in (input `ws`),
`/` and `/frames` send frames out (output `ws`). `loopback_latency` measures the whole path.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import statistics
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ, check_rate
from distilface.fileio import check_output
from distilface.runtime.priority import PRIORITIES, set_priority
from distilface.runtime.sinks import (LIVE_LINK_PORT, OSC_NAME_STYLES, VMC_PORT, CsvOutput, Frame, LiveLinkOutput,
                                      NdjsonOutput, OscOutput, Output, StreamInfo, WsFramesOutput)
from distilface.runtime.sources import (CHUNK_MS, PCM_FORMATS, AudioChunk, Event, FileSource, MicSource,
                                        StdinSource, StreamEnd, StreamStart, WsAudioInput, chunk_samples, encode_pcm)
from distilface.runtime.streaming import Smoothed, StreamingAnimator, as_backend

logger = logging.getLogger(__name__)

WS_PORT = 8765
AUDIO_PATH = "/audio"
FRAMES_PATHS = ("/", "/frames")
INPUT_KINDS = ("mic", "stdin", "wav", "ws")  # wav takes a path: "wav:speech.wav"
OUTPUT_KINDS = ("ndjson", "ws", "osc", "livelink", "csv")  # csv takes a path: "csv:out.csv"
LATENCY_WINDOW = 10_000  # latest frames whose latency the summary covers


def _split(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    return kind, arg


@dataclass(frozen=True)
class StreamConfig:
    """What `distilface stream` runs (every field is a command-line option)."""

    input: str = "mic"  # mic | stdin | wav:PATH (any file load_audio reads) | ws
    outputs: tuple[str, ...] = ("ndjson",)  # any of ndjson | ws | osc | livelink | csv:PATH
    fps: float = 30.0
    host: str = "127.0.0.1"  # the WebSocket server binds here
    ws_port: int = WS_PORT  # 0: a free port (LiveStream.ws_port)
    osc_host: str = "127.0.0.1"  # where OSC bundles go
    osc_port: int = VMC_PORT
    osc_names: str = "perfect-sync"  # perfect-sync ("JawOpen") | arkit ("jawOpen") | vrm0 ("A") | vrm1 ("aa")
    livelink_host: str = "127.0.0.1"  # where Live Link Face packets go (an Unreal editor)
    livelink_port: int = LIVE_LINK_PORT
    livelink_subject: str = "DistilFace"  # the subject name Unreal's Live Link panel shows
    rate_hz: int = SAMPLE_RATE_HZ  # of stdin / WebSocket PCM (a WebSocket sender may say ?rate=)
    pcm_format: str = "s16le"  # s16le | f32le
    device: str | None = None  # microphone: index or part of its name; None: the default input
    realtime: bool = True  # wav: play at real-time pace (False: as fast as the model goes)
    chunk_ms: float = CHUNK_MS  # stdin reads, microphone blocks, wav chunks
    queue_chunks: int = 256  # audio chunks between the inputs and the model
    ws_max_message_bytes: int = 1 << 16  # largest WebSocket message taken (2 s of 16 kHz s16le)
    ws_queue_messages: int = 64  # per viewer, about 2 s at 30 fps
    ws_send_buffer_bytes: int = 1 << 15  # kernel send buffer per viewer (bounds how stale a slow one gets)
    ws_origins: tuple[str, ...] | None = None  # browser Origins allowed (None: any)
    wait_viewers: int = 0  # start the input once this many frames viewers are connected
    underrun_ms: float = 100.0  # audio this much later than real time is logged as an under-run
    drain_s: float = 1.0  # at the end, how long viewers may take to get their queued frames
    priority: str = "normal"  # normal | high | realtime: of the loop and model threads (runtime/priority.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs))
        kind, arg = _split(self.input)
        if kind not in INPUT_KINDS or (kind == "wav") != bool(arg):
            raise ValueError(f"--input {self.input!r}: expected mic, stdin, wav:PATH or ws")
        if not self.outputs:
            raise ValueError("stream: give at least one --output")
        for out in self.outputs:
            kind, arg = _split(out)
            if kind not in OUTPUT_KINDS or (kind == "csv") != bool(arg):
                raise ValueError(f"--output {out!r}: expected ndjson, ws, osc, livelink or csv:PATH")
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"--output given twice: {', '.join(self.outputs)}")
        if not self.fps > 0:
            raise ValueError(f"--fps must be positive, got {self.fps}")
        check_rate(self.rate_hz, "--rate")
        if self.pcm_format not in PCM_FORMATS:
            raise ValueError(f"--pcm-format {self.pcm_format!r}: expected {' or '.join(PCM_FORMATS)}")
        if self.osc_names not in OSC_NAME_STYLES:
            raise ValueError(f"--osc-names {self.osc_names!r}: expected one of {', '.join(OSC_NAME_STYLES)}")
        for name in ("ws_port", "osc_port", "livelink_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} {getattr(self, name)} is not a port")
        if self.priority not in PRIORITIES:
            raise ValueError(f"--priority {self.priority!r}: expected {', '.join(PRIORITIES)}")
        if not self.chunk_ms > 0 or min(self.queue_chunks, self.ws_max_message_bytes, self.ws_queue_messages) < 1:
            raise ValueError("stream: chunk_ms, queue_chunks, ws_max_message_bytes and ws_queue_messages "
                             "must be positive")

    @property
    def input_kind(self) -> str:
        return _split(self.input)[0]

    @property
    def uses_ws(self) -> bool:
        return self.input_kind == "ws" or "ws" in self.outputs


def make_source(cfg: StreamConfig, stdin: Any = None) -> Any:
    """The input `cfg.input` names (a file is read now, a microphone opened at `run`)."""
    kind, arg = _split(cfg.input)
    if kind == "stdin":
        return StdinSource(stdin, cfg.rate_hz, cfg.pcm_format, cfg.chunk_ms)
    if kind == "wav":
        return FileSource(arg, cfg.realtime, cfg.chunk_ms)
    if kind == "mic":
        return MicSource(cfg.device, cfg.chunk_ms)
    return WsAudioInput(cfg.rate_hz, cfg.pcm_format)


def make_outputs(cfg: StreamConfig, stdout: TextIO | None = None) -> list[Output]:
    import sys

    outs: list[Output] = []
    for spec in cfg.outputs:
        kind, arg = _split(spec)
        if kind == "ndjson":
            outs.append(NdjsonOutput(stdout if stdout is not None else sys.stdout))
        elif kind == "csv":
            inputs = (_split(cfg.input)[1],) if cfg.input_kind == "wav" else ()
            check_output(arg, inputs=inputs)  # not the file being read; a folder that can be written
            outs.append(CsvOutput(arg, finite_input=cfg.input_kind == "wav"))
        elif kind == "osc":
            outs.append(OscOutput(cfg.osc_host, cfg.osc_port, cfg.osc_names))
        elif kind == "livelink":
            outs.append(LiveLinkOutput(cfg.livelink_host, cfg.livelink_port, cfg.livelink_subject))
        else:
            outs.append(WsFramesOutput(cfg.ws_queue_messages, cfg.ws_send_buffer_bytes))
    return outs


def prepare_model(model: Any) -> Any:
    """A `StreamingAnimator` model whose backend is built once (a torch student's stream geometry is
    measured from the built model: not per stream). Smoothed models keep their smoothing."""
    if hasattr(model, "student") and hasattr(model, "weights"):
        return Smoothed(as_backend(model.student), tuple(model.weights), int(model.offset))
    return as_backend(model)


@dataclass
class RealtimeClock:
    """Is live audio arriving as fast as it plays? `origin_s` is the perf_counter time at which
    sample 0 would have had to arrive for every sample so far to be on time. Audio arriving more
    than `late_s` after its due time is an under-run (the sender paused, the network stalled): it
    is counted and the clock restarts from it. Audio arriving early (a file piped in) moves the
    origin back, so a later pause is still seen."""

    rate_hz: int
    late_s: float
    origin_s: float | None = None
    samples: int = 0
    underruns: int = 0

    def arrived(self, samples: int, arrival_s: float) -> float:
        """Record `samples` that arrived at `arrival_s`; -> how late they were (s) if an under-run, else 0."""
        self.samples += samples
        due = arrival_s - self.samples / self.rate_hz  # the origin these samples imply
        if self.origin_s is None:
            self.origin_s = due
            return 0.0
        late = due - self.origin_s
        if late > self.late_s:
            self.underruns += 1
            self.origin_s = due
            return late
        self.origin_s = min(self.origin_s, due)
        return 0.0


_DONE = object()  # the inputs have finished


class LiveStream:
    """The streaming loop: events from one input -> model -> frames to every output (module doc).

    model: a torch student, `EnsembleSmoothed` one, `OrtModel` or `Smoothed` one. source, outputs:
    default from `cfg` (`make_source`, `make_outputs`, stdin/stdout from the arguments). `run()`
    (async) returns the stats when the input ends or `stop()` is called (from any thread).
    """

    def __init__(self, model: Any, cfg: StreamConfig, *, source: Any = None, outputs: list[Output] | None = None,
                 stdin: Any = None, stdout: TextIO | None = None, announce: TextIO | None = None) -> None:
        self.cfg = cfg
        self.announce = announce  # where to say the server's address once bound (the CLI: stderr)
        self.model = prepare_model(model)
        probe = StreamingAnimator(self.model, cfg.fps)
        self.names: tuple[str, ...] = probe.names
        self.lookahead_samples: int = probe.lookahead_samples  # at 16 kHz
        self.outputs = outputs if outputs is not None else make_outputs(cfg, stdout)
        for out in self.outputs:
            out.prepare(self.names, cfg.fps)  # fails before anything starts
        self.source = source if source is not None else make_source(cfg, stdin)
        self.ws_input = self.source if isinstance(self.source, WsAudioInput) else None
        self.ws_output = next((o for o in self.outputs if isinstance(o, WsFramesOutput)), None)
        self.ready = threading.Event()  # set once servers are bound and the model is warm
        self.ws_port: int | None = None
        self.bound_host: str | None = None
        # state
        self.state = "idle"  # idle | live | closed
        self.streams = 0  # started so far
        self.frames_total = 0
        self.underruns = 0
        self.priority = "normal"  # the loop thread's scheduling once run() set it, in words
        self._animator: StreamingAnimator | None = None
        self._info: StreamInfo | None = None
        self._frames = 0  # of the current stream
        self._samples = 0  # received in the current stream, at its rate
        self._clock: RealtimeClock | None = None
        self._latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_early = False
        self.interrupted = False  # the last stream ended by stop() before its input's end
        self.stopped_by_signal = 0  # SIGINT / SIGTERM that stopped the stream (run_stream)
        self._closing = False
        self._queue: asyncio.Queue | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distilface-model")
        self._server: Any = None
        self._endpoints = ""

    @property
    def samples_received(self) -> int:
        """Samples of the current (or last) stream handed to the model so far, at its rate."""
        return self._samples

    @property
    def lookahead_ms(self) -> float:
        return self.lookahead_samples * 1000 / SAMPLE_RATE_HZ

    # -- control -------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the current stream (its last frames still go out) and return from `run`. Thread-safe."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            self._stop_early = True
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # loop already closed: nothing left to stop
            pass

    async def _offer(self, event: Event | object) -> None:
        """What the sources call with each event; waits while the queue is full."""
        if not self._closing:
            await self._queue.put(event)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_early:
            self._stop.set()
        self._queue = asyncio.Queue(self.cfg.queue_chunks)
        source_task = consumer = None
        try:
            # Before any thread is started from here (the model's, the input's): they inherit it.
            # A refusal still closes the outputs' sockets (finally).
            self.priority = set_priority(self.cfg.priority)
            logger.info("stream threads at %s", self.priority)
            if self.cfg.uses_ws:
                await self._serve()
            await self._loop.run_in_executor(self._pool, self._warm_up)
            self.ready.set()
            if self.announce is not None and self.ws_port is not None:
                print(f"distilface stream: listening on {self._endpoints}", file=self.announce, flush=True)
            stop_wait = asyncio.create_task(self._stop.wait())
            if self.cfg.wait_viewers and self.ws_output is not None:
                logger.info("waiting for %d viewer(s) on ws://%s:%s/frames", self.cfg.wait_viewers,
                            self.bound_host, self.ws_port)
                while self.ws_output.viewers < self.cfg.wait_viewers and not self._stop.is_set():
                    await asyncio.sleep(0.02)
            source_task = asyncio.create_task(self._run_source())
            consumer = asyncio.create_task(self._consume())
            await asyncio.wait({consumer, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not consumer.done():  # stop(): end the input, the consumer finishes the stream
                source_task.cancel()
            await consumer
            (ended,) = await asyncio.gather(source_task, return_exceptions=True)
            if isinstance(ended, Exception):  # the input failed (CancelledError is no Exception)
                raise ended
        finally:
            await self._shut_down(source_task, consumer)
        return self.stats()

    def _warm_up(self) -> None:
        """One short stream through the model, so the first live frame does not pay for first-call setup."""
        s = StreamingAnimator(self.model, self.cfg.fps)
        s.push(np.zeros(self.lookahead_samples + 2 * SAMPLE_RATE_HZ // max(int(self.cfg.fps), 1), np.float32))
        s.flush()

    async def _run_source(self) -> None:
        try:
            await self.source.run(self._offer)
        finally:
            await self._offer(_DONE)

    async def _consume(self) -> None:
        while True:
            event = await self._queue.get()
            if event is _DONE:
                break
            if isinstance(event, StreamStart):
                if self.state == "live":
                    await self._end("new stream")
                self._begin(event)
            elif isinstance(event, AudioChunk):
                if self.state == "live":
                    await self._audio(event)
            elif isinstance(event, StreamEnd) and self.state == "live":
                await self._end(event.reason)
        if self.state == "live":  # the input stopped before it said it ended (stop(), Ctrl-C)
            self.interrupted = True
            await self._end("stopped")

    def _begin(self, event: StreamStart) -> None:
        self._animator = StreamingAnimator(self.model, self.cfg.fps, event.rate_hz)
        self._info = StreamInfo(self.streams, event.label, self.names, self.cfg.fps, event.rate_hz, self.lookahead_ms)
        self._clock = RealtimeClock(event.rate_hz, self.cfg.underrun_ms / 1000)
        self.streams += 1
        self._frames = self._samples = 0
        self.state = "live"
        logger.info("stream %d from %s: %g Hz in, %g fps out, %.1f ms lookahead", self._info.stream, event.label,
                    event.rate_hz, self.cfg.fps, self.lookahead_ms)
        for out in self.outputs:
            out.start(self._info)

    async def _audio(self, chunk: AudioChunk) -> None:
        late_s = self._clock.arrived(len(chunk.samples), chunk.arrival_s)
        if late_s:
            self.underruns += 1
            logger.warning("under-run: audio %.0f ms late at %.2f s of stream %d (%d so far)", late_s * 1000,
                           self._samples / self._info.rate_hz, self._info.stream, self.underruns)
        self._samples += len(chunk.samples)
        rows = await self._loop.run_in_executor(self._pool, self._animator.push, chunk.samples)
        self._dispatch(rows, chunk.arrival_s)

    async def _end(self, reason: str) -> None:
        rows = await self._loop.run_in_executor(self._pool, self._animator.flush)
        self._dispatch(rows, time.perf_counter())
        for out in self.outputs:
            out.end(self._info, self._frames, reason)
        logger.info("stream %d ended (%s): %d frames", self._info.stream, reason, self._frames)
        self.state = "idle"

    def _dispatch(self, rows: np.ndarray, arrival_s: float) -> None:
        """Frames of one push to every output, stamped now."""
        if not len(rows):
            return
        info = self._info
        sent_unix_s, latency_ms = time.time(), (time.perf_counter() - arrival_s) * 1000
        audio_s = self._samples / info.rate_hz
        for row in rows:
            frame = Frame(info.stream, self._frames, self._frames / info.fps, audio_s, sent_unix_s, latency_ms,
                          info.lookahead_ms, info.names, row)
            for out in self.outputs:
                out.frame(frame)
            self._frames += 1
            self.frames_total += 1
            self._latencies_ms.append(latency_ms)

    # -- WebSocket server ----------------------------------------------------------------------
    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        paths = ([AUDIO_PATH] if self.ws_input else []) + (list(FRAMES_PATHS) if self.ws_output else [])

        def check_path(connection: Any, request: Any) -> Any:
            path = urlsplit(request.path).path
            if path not in paths:
                return connection.respond(HTTPStatus.NOT_FOUND,
                                          f"no endpoint {path}; this server has {', '.join(paths)}\n")
            return None

        try:
            self._server = await serve(
                self._route, self.cfg.host, self.cfg.ws_port, process_request=check_path,
                max_size=self.cfg.ws_max_message_bytes, max_queue=16, close_timeout=1.0,
                # clients outside browsers send no Origin (None): always allowed
                origins=[*self.cfg.ws_origins, None] if self.cfg.ws_origins is not None else None)
        except OSError as e:  # a host that does not resolve, a port in use or not ours to bind
            raise OSError(f"--host {self.cfg.host} --ws-port {self.cfg.ws_port}: cannot listen there "
                          f"({e.strerror or e})") from None
        sock = self._server.sockets[0].getsockname()
        self.bound_host, self.ws_port = sock[0], sock[1]
        host = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        text = ", ".join(f"ws://{host}:{self.ws_port}{p}" for p in paths if p != "/")
        logger.info("ws server: %s", text)
        self._endpoints = text

    async def _route(self, ws: Any) -> None:
        path = urlsplit(ws.request.path).path
        if path == AUDIO_PATH and self.ws_input is not None:
            await self.ws_input.handle(ws)
        elif self.ws_output is not None:
            await self.ws_output.handle(ws)

    # -- the end -------------------------------------------------------------------------------
    async def _shut_down(self, source_task: asyncio.Task | None, consumer: asyncio.Task | None) -> None:
        self.state = "closed"
        self._closing = True
        while not self._queue.empty():  # wakes any source waiting to put: its next offer is a no-op
            self._queue.get_nowait()
        for task in (source_task, consumer):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (source_task, consumer) if t is not None), return_exceptions=True)
        if self.ws_output is not None:
            await self.ws_output.drain(self.cfg.drain_s)
        for out in self.outputs:
            await out.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._pool.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        lat = sorted(self._latencies_ms)
        out: dict[str, Any] = {
            "streams": self.streams, "frames": self.frames_total, "underruns": self.underruns,
            "lookahead_ms": round(self.lookahead_ms, 3),
            "latency_ms": {"median": round(statistics.median(lat), 3) if lat else None,
                           "p99": round(_quantile(lat, 0.99), 3) if lat else None,
                           "max": round(lat[-1], 3) if lat else None},
            "outputs": {spec: o.stats() for spec, o in zip(self.cfg.outputs, self.outputs)},
            "interrupted": self.interrupted, "priority": self.priority}
        if self.ws_port is not None:
            out["ws"] = f"{self.bound_host}:{self.ws_port}"
        for key in ("dropped_blocks", "overflows", "refused", "closed_with_error"):
            if hasattr(self.source, key):
                out.setdefault("input", {})[key] = getattr(self.source, key)
        return out


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(max(int(np.ceil(q * len(sorted_values))) - 1, 0), len(sorted_values) - 1)]


def run_stream(model: Any, cfg: StreamConfig, stdin: Any = None, stdout: TextIO | None = None) -> dict[str, Any]:
    """`distilface stream`: run until the input ends or SIGINT / SIGTERM (which end the current
    stream cleanly: its last frames go out, files are closed). -> stats."""
    import signal
    import sys

    live = LiveStream(model, cfg, stdin=stdin, stdout=stdout, announce=sys.stderr)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            live.stopped_by_signal = int(sig)  # the CLI's exit status: 128 + it, as the shell's
            live.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
                pass
        stats = await live.run()
        if live.stopped_by_signal:
            stats["signal"] = live.stopped_by_signal
        return stats

    return asyncio.run(main())


class StreamThread:
    """A `LiveStream` on its own thread and event loop, for tests and `loopback_latency`:

        with StreamThread(LiveStream(model, cfg)) as st:   # returns once servers are bound
            ... st.live.ws_port ...
        st.result                                          # stats (stop() + join on exit)
    """

    def __init__(self, live: LiveStream) -> None:
        self.live = live
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="distilface-live", daemon=True)

    def _main(self) -> None:
        try:
            self.result = asyncio.run(self.live.run())
        except BaseException as e:  # noqa: BLE001 - re-raised by join()
            self.error = e
        finally:
            self.live.ready.set()

    def start(self, timeout_s: float = 60.0) -> "StreamThread":
        self._thread.start()
        if not self.live.ready.wait(timeout_s):
            raise TimeoutError(f"live stream not ready after {timeout_s} s")
        if self.error is not None:
            raise self.error
        return self

    def join(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait for the stream to finish by itself (a finite input) -> stats."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"live stream still running after {timeout_s} s")
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        self.live.stop()
        return self.join(timeout_s)

    def __enter__(self) -> "StreamThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self._thread.is_alive():
            self.stop()


# -- latency over loopback ---------------------------------------------------------------------

def loopback_latency(model: Any, seconds: float = 10.0, fps: float = 30.0, smooth: Any = None,
                     chunk_ms: float = 10.0, host: str = "127.0.0.1",
                     audio: np.ndarray | None = None, priority: str = "normal") -> dict[str, Any]:
    """End-to-end latency of the live server over real sockets, in this process.

    Starts `LiveStream` (input ws, output ws) on `host` at a free port on its own thread, connects a
    frames viewer and an audio sender (websockets' sync client, one thread each), and sends
    `seconds` of speech (the bundled example, looped; or `audio`, 16 kHz) as s16le in chunks of
    `chunk_ms`, each sent when its last sample would have been captured (real-time pace).

    Per frame k it measures the wall time from sending the chunk that holds the last sample the
    frame needs (sample round(k * 16000 / fps) + lookahead - 1: the frame's time plus the model's
    future context, plus smoothing's offset with `smooth`) to the viewer receiving the frame: the
    latency the server adds (transport both ways, queueing, model, JSON). It leaves out what no
    server can remove, reported beside it: `future_ms` (audio after the frame's time it must
    wait for) and `chunk_ms` (audio the sender collects before sending). The delay from a sound to
    its frame on screen is about future_ms + chunk_ms + the measured latency. Frames completed only
    by the end of the stream are left out.

    priority: the server's threads' (`StreamConfig.priority`); the sender and viewer stay as they are.
    model: a torch student, `OrtModel`, a smoothed one, or a checkpoint path / shipped name.
    smooth: smoothing weights (tuple, or text as for --smooth). -> {"frames", "median_ms",
    "p99_ms", "max_ms", "mean_ms", "future_ms", "chunk_ms", "fps", "seconds", "smooth", "dropped",
    "underruns", "priority", "server_ms": the server's own share, from a chunk's arrival to its
    frames' dispatch ({"median", "p99", "max"}, as `stream` reports it)}.
    """
    from websockets.sync.client import connect

    from distilface.runtime.streaming import parse_weights

    if isinstance(model, (str, Path)) or model is None:
        from distilface.animate import load_model
        from distilface.models import resolve_model

        model = load_model(resolve_model(None if model is None else str(model)), ort_threads=1)
    weights = parse_weights(smooth) if isinstance(smooth, str) else (None if smooth is None else tuple(smooth))
    if weights is not None:
        if hasattr(model, "smoothed"):
            model = model.smoothed(weights)
        else:
            from distilface.smoothing import EnsembleSmoothed

            model = EnsembleSmoothed(model, weights)
    if audio is None:
        from distilface.audio import EXAMPLE_AUDIO, load_audio
        from distilface.runtime.bench import looped

        audio = looped(load_audio(EXAMPLE_AUDIO), max(seconds, 1 / SAMPLE_RATE_HZ))
    x = np.asarray(audio, np.float32)
    cfg = StreamConfig(input="ws", outputs=("ws",), fps=fps, host=host, ws_port=0, chunk_ms=chunk_ms,
                       ws_queue_messages=1024, priority=priority)
    live = LiveStream(model, cfg)
    n_chunk = chunk_samples(SAMPLE_RATE_HZ, chunk_ms)
    starts = range(0, len(x), n_chunk)
    sent_s = np.zeros(len(starts))
    received: dict[int, float] = {}
    payload = [encode_pcm(x[lo: lo + n_chunk]) for lo in starts]
    with StreamThread(live) as st:
        url = f"ws://{host}:{live.ws_port}"
        with connect(url + FRAMES_PATHS[1], compression=None, max_size=None) as viewer:
            registered = threading.Event()  # the hello arrives once the server lists the viewer

            def watch() -> None:
                import json

                for text in viewer:
                    t = time.perf_counter()
                    msg = json.loads(text)
                    if msg["type"] == "hello":
                        registered.set()
                    elif msg["type"] == "frame":
                        received[msg["frame"]] = t
                    elif msg["type"] == "end":
                        return

            watcher = threading.Thread(target=watch, name="loopback-viewer", daemon=True)
            watcher.start()
            if not registered.wait(30.0):
                raise TimeoutError("loopback: the frames viewer got no hello")
            with connect(url + AUDIO_PATH, compression=None) as sender:
                t0 = time.perf_counter()
                for j, lo in enumerate(starts):
                    due = t0 + (lo + n_chunk) / SAMPLE_RATE_HZ  # its last sample has been captured
                    while (wait := due - time.perf_counter()) > 0:
                        time.sleep(wait)
                    sent_s[j] = time.perf_counter()
                    sender.send(payload[j])
            watcher.join(30.0)
        stats = st.stop()
    lookahead = live.lookahead_samples
    lat = []
    for k, t in sorted(received.items()):
        last = round(k * SAMPLE_RATE_HZ / fps) + lookahead - 1  # the last sample frame k needs
        if last < len(x):
            lat.append(float(t - sent_s[last // n_chunk]) * 1000)
    lat.sort()
    return {"frames": len(lat), "median_ms": statistics.median(lat) if lat else float("nan"),
            "p99_ms": _quantile(lat, 0.99), "max_ms": lat[-1] if lat else float("nan"),
            "mean_ms": statistics.fmean(lat) if lat else float("nan"),
            "future_ms": lookahead * 1000 / SAMPLE_RATE_HZ, "chunk_ms": n_chunk * 1000 / SAMPLE_RATE_HZ,
            "fps": fps, "seconds": len(x) / SAMPLE_RATE_HZ, "smooth": list(weights) if weights else None,
            "dropped": stats["outputs"]["ws"]["dropped"], "underruns": stats["underruns"],
            "priority": stats["priority"], "server_ms": stats["latency_ms"]}
