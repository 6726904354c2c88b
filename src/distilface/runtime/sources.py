"""Live audio inputs of `distilface stream`: microphone, raw PCM on stdin, a file at real-time pace,
audio over a WebSocket.

A source turns its input into *events* and awaits `emit(event)` for each, in order:

    StreamStart(rate_hz, label)      a stream begins: the audio after it is at rate_hz
    AudioChunk(samples, arrival_s)   (n,) float32 mono samples, arrival_s = time.perf_counter()
                                     when they arrived (latency is measured from there)
    StreamEnd(reason)                the stream is over (audio after its end is taken as silence)

`emit` may wait (the live loop's queue is bounded): a source that can wait (stdin, a file, a
WebSocket sender, through TCP) is slowed down by it; the microphone cannot wait, so its callback
hands blocks over through a bounded queue of its own and drops (and counts) what does not fit.
`run(emit)` returns when the input is exhausted and is cancelled to stop it. A WebSocket input
gives one stream per connection (`WsAudioInput.handle`), one connection at a time.

PCM formats (stdin, WebSocket): "s16le" (signed 16-bit little-endian, the `arecord`/`ffmpeg -f
s16le` default) or "f32le" (float32 little-endian, what a browser's Web Audio gives), mono.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from distilface.audio import MAX_SAMPLE_MAGNITUDE, SAMPLE_RATE_HZ, AudioError, check_rate

logger = logging.getLogger(__name__)

PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
S16_FULL_SCALE = 32768.0  # int16 sample -> [-1, 1)
CHUNK_MS = 20.0  # audio per read (stdin), per block (microphone), per paced chunk (file)


@dataclass(frozen=True)
class StreamStart:
    rate_hz: int
    label: str


@dataclass(frozen=True)
class AudioChunk:
    samples: np.ndarray  # (n,) float32 at the stream's rate
    arrival_s: float  # time.perf_counter() when the samples arrived


@dataclass(frozen=True)
class StreamEnd:
    reason: str


Event = StreamStart | AudioChunk | StreamEnd
Emit = Callable[[Event], Awaitable[None]]


def chunk_samples(rate_hz: int, chunk_ms: float) -> int:
    """Samples in `chunk_ms` of audio at `rate_hz` (at least one)."""
    return max(round(rate_hz * chunk_ms / 1000), 1)


class PcmDecoder:
    """Bytes of mono PCM in `fmt` -> (n,) float32 samples. Carries a partial sample from one call to
    the next (a pipe or a message may split a sample); non-finite f32 samples and any beyond
    `MAX_SAMPLE_MAGNITUDE` become 0 (counted), since one NaN would poison every frame whose window
    holds it."""

    def __init__(self, fmt: str = "s16le") -> None:
        if fmt not in PCM_FORMATS:
            raise ValueError(f"PCM format {fmt!r}: expected one of {', '.join(PCM_FORMATS)}")
        self.fmt = fmt
        self.dtype = PCM_FORMATS[fmt]
        self._rest = b""  # bytes of an incomplete sample
        self.bad_samples = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete sample held for the next call."""
        return len(self._rest)

    def __call__(self, data: bytes) -> np.ndarray:
        data = self._rest + bytes(data)
        whole = len(data) - len(data) % self.dtype.itemsize
        self._rest = data[whole:]
        x = np.frombuffer(data[:whole], self.dtype)
        if self.fmt == "s16le":
            return (x.astype(np.float32) / S16_FULL_SCALE).astype(np.float32)
        x = x.astype(np.float32)
        bad = ~(np.abs(x) <= MAX_SAMPLE_MAGNITUDE)  # NaN, inf and absurd values (which make NaN frames)
        if bad.any():
            self.bad_samples += int(bad.sum())
            logger.warning("%d non-finite or absurd PCM samples set to 0", int(bad.sum()))
            x[bad] = 0.0
        return x


def encode_pcm(audio: np.ndarray, fmt: str = "s16le") -> bytes:
    """(n,) float audio in [-1, 1] -> PCM bytes (the inverse of `PcmDecoder`, clipped for s16le)."""
    x = np.asarray(audio, np.float32)
    if fmt == "s16le":
        return np.clip(np.round(x * S16_FULL_SCALE), -32768, 32767).astype("<i2").tobytes()
    if fmt == "f32le":
        return x.astype("<f4").tobytes()
    raise ValueError(f"PCM format {fmt!r}: expected one of {', '.join(PCM_FORMATS)}")


def decode_pcm(data: bytes, fmt: str = "s16le") -> np.ndarray:
    """Whole PCM bytes -> (n,) float32 (what the stream sees for `encode_pcm`'s output)."""
    return PcmDecoder(fmt)(data)


# -- stdin -------------------------------------------------------------------------------------

class StdinSource:
    """Raw mono PCM from a binary file object (default: stdin) at `rate_hz`, one stream until EOF.

    A daemon thread reads (a read blocks until data is there) and waits on `emit`, so a fast
    producer (a file piped in) is slowed down to the stream's pace instead of filling memory."""

    def __init__(self, file: BinaryIO | None = None, rate_hz: int = SAMPLE_RATE_HZ, fmt: str = "s16le",
                 chunk_ms: float = CHUNK_MS) -> None:
        import sys

        self.file = file if file is not None else sys.stdin.buffer
        self.rate_hz = check_rate(rate_hz, "stdin")
        self.decoder = PcmDecoder(fmt)
        self.read_bytes = chunk_samples(self.rate_hz, chunk_ms) * self.decoder.dtype.itemsize

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        read = getattr(self.file, "read1", self.file.read)  # read1: what is there, without waiting for more

        def put(event: Event) -> None:
            asyncio.run_coroutine_threadsafe(emit(event), loop).result()

        def finish(error: BaseException | None) -> None:
            if not done.done():
                done.set_exception(error) if error else done.set_result(None)

        def reader() -> None:
            error = None
            try:
                put(StreamStart(self.rate_hz, "stdin"))
                while data := read(self.read_bytes):
                    arrival_s = time.perf_counter()
                    x = self.decoder(data)
                    if len(x):
                        put(AudioChunk(x, arrival_s))
                if self.decoder.pending_bytes:
                    logger.warning("stdin: input ended inside a %s sample: its %d bytes dropped",
                                   self.decoder.fmt, self.decoder.pending_bytes)
                put(StreamEnd("end of input"))
            except (concurrent.futures.CancelledError, RuntimeError):  # the loop stopped or closed
                return
            except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
                error = e
            try:
                loop.call_soon_threadsafe(finish, error)
            except RuntimeError:  # loop closed
                pass

        threading.Thread(target=reader, name="distilface-stdin", daemon=True).start()
        await done


# -- a file at real-time pace ------------------------------------------------------------------

class FileSource:
    """An audio file (anything `animate_file` reads) as one stream at the file's own rate (the stream
    resamples), in chunks of `chunk_ms`, read block by block: any length in bounded memory.
    realtime: each chunk is emitted when its last sample would have been played, so the stream
    runs as long as the audio; otherwise as fast as the stream takes it. The file is checked when
    the source is made (`scan_file`: AudioError naming it before anything starts, warnings for
    silence and clipping, and conditioned as by `animate`: `AudioStats.condition`)."""

    def __init__(self, path: str | Path, realtime: bool = True, chunk_ms: float = CHUNK_MS) -> None:
        from distilface.animate import log_conditioning, scan_file

        self.path = Path(path)
        self.rate_hz, self.audio_stats = scan_file(self.path)
        log_conditioning(self.path, self.audio_stats, logger)
        self.realtime = bool(realtime)
        self.chunk_ms = float(chunk_ms)
        self.chunk_samples = chunk_samples(self.rate_hz, chunk_ms)

    @property
    def duration_s(self) -> float:
        return self.audio_stats.samples / self.rate_hz

    async def run(self, emit: Emit) -> None:
        import contextlib

        from distilface.animate import file_blocks

        loop = asyncio.get_running_loop()
        await emit(StreamStart(self.rate_hz, f"file {self.path.name}"))
        t0, sent = loop.time(), 0
        with contextlib.ExitStack() as stack:
            _, blocks = file_blocks(self.path, self.chunk_ms / 1000, stack, self.audio_stats)
            for chunk in blocks:
                sent += len(chunk)
                if self.realtime:
                    # absolute deadlines: sleeping late once does not delay the rest
                    await asyncio.sleep(max(t0 + sent / self.rate_hz - loop.time(), 0.0))
                else:
                    await asyncio.sleep(0)  # let the outputs run between chunks
                await emit(AudioChunk(chunk, time.perf_counter()))
        await emit(StreamEnd("end of file"))


# -- microphone --------------------------------------------------------------------------------

def import_sounddevice() -> Any:
    """The `sounddevice` module, or AudioError saying what to install (PortAudio or the package)."""
    try:
        import sounddevice
    except ImportError:
        raise AudioError("--input mic needs the sounddevice package: pip install sounddevice") from None
    except OSError as e:  # sounddevice loads libportaudio at import
        raise AudioError(f"--input mic needs the PortAudio library ({e}): on Debian/Ubuntu "
                         "apt-get install libportaudio2") from None
    return sounddevice


def parse_device(device: str | None) -> int | str | None:
    """--device: an index ("3") or part of a device name ("USB"), None for the default input."""
    if device is None or device == "":
        return None
    return int(device) if device.strip().isdigit() else device


class MicSource:
    """A microphone (PortAudio, through `sounddevice`) as one stream until cancelled.

    Opens the device at its default sample rate (the stream resamples); blocks of `chunk_ms`.
    PortAudio's callback thread cannot wait, so blocks go through a queue of `queue_blocks`; a
    block that does not fit is dropped and counted in `dropped_blocks` (an overrun: the stream is
    slower than real time), as are overflows PortAudio reports (`overflows`)."""

    def __init__(self, device: str | None = None, chunk_ms: float = CHUNK_MS, queue_blocks: int = 64) -> None:
        self.sd = import_sounddevice()
        self.device = parse_device(device)
        try:
            info = self.sd.query_devices(self.device, "input")
        except Exception as e:  # noqa: BLE001 - PortAudio errors have their own types
            which = "the default input device" if device is None else f"input device {device!r}"
            raise AudioError(f"microphone: {which}: {e} (`distilface stream --list-devices` lists them)") from None
        self.name = str(info["name"])
        self.rate_hz = int(round(float(info["default_samplerate"])))
        self.block_samples = chunk_samples(self.rate_hz, chunk_ms)
        self.queue_blocks = int(queue_blocks)
        self.dropped_blocks = 0
        self.overflows = 0

    def _offer(self, queue: asyncio.Queue, block: np.ndarray, arrival_s: float, status: Any) -> None:
        if status:
            self.overflows += bool(getattr(status, "input_overflow", False))
            logger.warning("microphone: %s", status)
        try:
            queue.put_nowait(AudioChunk(block, arrival_s))
        except asyncio.QueueFull:
            self.dropped_blocks += 1
            if self.dropped_blocks == 1 or self.dropped_blocks % 100 == 0:
                logger.warning("microphone: stream slower than real time, %d blocks dropped", self.dropped_blocks)

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(self.queue_blocks)

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            arrival_s = time.perf_counter()
            block = np.array(indata[:, 0], np.float32)  # PortAudio reuses its buffer: copy
            try:
                loop.call_soon_threadsafe(self._offer, queue, block, arrival_s, status)
            except RuntimeError:  # loop closed while the device still runs
                pass

        stream = self.sd.InputStream(samplerate=self.rate_hz, channels=1, dtype="float32",
                                     blocksize=self.block_samples, device=self.device, callback=callback)
        with stream:
            # The device's own buffering comes before `latency_ms` starts counting (docs/stream.md)
            logger.info("microphone %s: %d Hz, blocks of %d samples, PortAudio input latency %.1f ms", self.name,
                        self.rate_hz, self.block_samples, 1000 * float(stream.latency))
            await emit(StreamStart(self.rate_hz, f"mic {self.name}"))
            while True:
                await emit(await queue.get())


# -- WebSocket ---------------------------------------------------------------------------------

class WsAudioInput:
    """Audio over WebSocket (the `/audio` endpoint of the live server): binary messages of mono PCM;
    a connection is one stream, from its first message to its close. Query parameters override
    the defaults per connection: `/audio?rate=48000&format=f32le`. A second sender while one is
    live is refused (close 1013, try again later). Text messages are ignored (logged). Messages
    over the server's max_size close that connection (1009) and end its stream; the server runs on.
    """

    def __init__(self, rate_hz: int = SAMPLE_RATE_HZ, fmt: str = "s16le") -> None:
        PcmDecoder(fmt)  # checks the format now
        self.rate_hz = int(rate_hz)
        self.fmt = fmt
        self._emit: Emit | None = None
        self._running = asyncio.Event()  # run() has been called: senders may start
        self._busy = False
        self.refused = 0  # connections refused while another stream was live
        self.closed_with_error = 0  # connections that ended in a protocol error (e.g. 1009 too big)

    async def run(self, emit: Emit) -> None:
        """Hands `emit` to the connection handler and waits until cancelled (audio arrives there)."""
        self._emit = emit
        self._running.set()
        await asyncio.Future()

    def _options(self, path: str) -> tuple[int, str]:
        query = parse_qs(urlsplit(path).query)
        rate = check_rate(int(query.get("rate", [self.rate_hz])[0]), "rate")
        fmt = query.get("format", [self.fmt])[0]
        PcmDecoder(fmt)
        return rate, fmt

    async def handle(self, ws: Any) -> None:
        """One sender connection (websockets `ServerConnection`)."""
        from websockets.exceptions import ConnectionClosedError

        peer = "%s:%s" % tuple(ws.remote_address[:2]) if ws.remote_address else "?"
        await self._running.wait()  # a sender that comes while the stream starts up waits for it
        if self._busy:
            self.refused += 1
            await ws.close(1013, "busy: another audio stream is live")
            return
        try:
            rate, fmt = self._options(ws.request.path)
        except ValueError as e:
            await ws.close(1008, f"bad query: {e}"[:120])
            return
        self._busy = True
        emit, decoder, reason = self._emit, PcmDecoder(fmt), "sender closed"
        try:
            await emit(StreamStart(rate, f"ws {peer}"))
            async for message in ws:
                arrival_s = time.perf_counter()
                if isinstance(message, str):
                    logger.warning("ws audio %s: text message ignored (send binary %s PCM)", peer, fmt)
                    continue
                x = decoder(message)
                if len(x):
                    await emit(AudioChunk(x, arrival_s))
        except ConnectionClosedError as e:
            self.closed_with_error += 1
            reason = f"connection error: {e}"
            logger.warning("ws audio %s: %s", peer, e)
        finally:
            try:
                await emit(StreamEnd(reason))
            finally:
                self._busy = False  # after the end is queued: the next stream's start comes after it
