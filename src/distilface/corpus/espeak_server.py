"""libespeak-ng in a small process of its own that forks a fresh child for every utterance.

espeak-ng 1.51 keeps synthesis state in globals that no API call resets (espeak-ng issue #68):
the same text and voice come out different depending on what the process said before, in the
samples and by up to tens of ms in pauses and phone lengths. In a corpus that made the
audio depend on the order in which workers happened to take utterances, so a resumed, re-run or
sharded corpus was not byte-identical. Here the library is initialised once and never speaks; each
request is spoken by a child forked from it, i.e. always from the same state. The server imports
nothing but the standard library, so a fork costs about 0.5 ms (a fork of a corpus worker, with
numpy, scipy and the augmentation code loaded, several ms, tens on a loaded machine).

Protocol, on stdin/stdout: a request is one JSON line {"text", "voice", "params": [[id, value]...]};
the answer is one JSON line {"samples": N, "events": [[sample, audio_ms, ipa], ...]} or
{"error": message}, then N int16 samples (native byte order). EOF on stdin ends the server (so it
ends with its client, however that ends); a broken request ends it too (the client starts a new
one). Ctrl-C is left to the client.

Run as `python -m distilface.corpus.espeak_server DATA_DIR` (see `espeak._Library`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys

ESPEAK_RATE_HZ = 22_050  # fixed by espeak-ng; checked against espeak_Initialize's return value

# --- libespeak-ng ABI (speak_lib.h, API revision 12) ---------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms, floor(sample * 1000 / rate)
        ("sample", ctypes.c_int),  # samples since the start of the message
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # phone name, UTF-8, not terminated when it fills 8 bytes
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))

_audio: list[bytes] = []
_events: list[tuple[int, int, str]] = []  # (sample, audio_position_ms, ipa)


def _on_audio(wav, n_samples, events) -> int:
    if wav and n_samples > 0:
        _audio.append(ctypes.string_at(wav, n_samples * ctypes.sizeof(ctypes.c_short)))
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
        ev = events[i]
        if ev.type == _EVENT_PHONEME:
            _events.append((ev.sample, ev.audio_position, bytes(ev.id).decode("utf-8", "replace")))
        i += 1
    return 0


def _load(data_dir: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(),
                                 _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA)
    if rate != ESPEAK_RATE_HZ:
        raise RuntimeError(f"espeak-ng: initialisation returned {rate}, expected {ESPEAK_RATE_HZ}")
    return lib


def _speak(lib: ctypes.CDLL, request: dict) -> bytes:
    """In the forked child: the answer (header line + samples) to one request."""
    ctypes.CDLL(None).srand(0)  # espeak-ng's breath/aspiration noise uses rand()
    if lib.espeak_SetVoiceByName(request["voice"].encode()) != 0:
        return json.dumps({"error": f"espeak-ng: unknown voice {request['voice']!r}"}).encode() + b"\n"
    for param, value in request["params"]:
        lib.espeak_SetParameter(int(param), int(value), 0)
    data = request["text"].encode("utf-8")
    err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if err != 0:
        return json.dumps({"error": f"espeak-ng: espeak_Synth failed with code {err}"}).encode() + b"\n"
    audio = b"".join(_audio)
    header = {"samples": len(audio) // ctypes.sizeof(ctypes.c_short), "events": _events}
    return json.dumps(header).encode() + b"\n" + audio


_EXIT_EOF = 3  # a child's exit code: stdin is closed, the server ends


def serve(data_dir: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C reaches the whole group
    try:
        lib = _load(data_dir)
    except (OSError, RuntimeError) as e:  # the client reports "the server ended"
        sys.exit(f"espeak-ng server: {e}")
    callback = _Callback(_on_audio)  # keep a reference: C holds the pointer
    lib.espeak_SetSynthCallback(callback)
    out_fd = sys.stdout.fileno()
    while True:
        # The child for the next request is forked ahead, while the client is still busy with the
        # last answer, so the fork is off the client's path. Only one request is ever in the pipe
        # (the client waits for each answer), so the child's buffered readline takes just its own.
        pid = os.fork()
        if pid == 0:  # the child reads one request, speaks it from the never-used state, exits
            status = 1
            try:
                line = sys.stdin.buffer.readline()
                answer = memoryview(_speak(lib, json.loads(line)) if line else b"")
                while answer:
                    answer = answer[os.write(out_fd, answer):]
                status = 0 if line else _EXIT_EOF
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == _EXIT_EOF:
            return
        if code != 0:  # the child died before answering in full: the stream is lost
            sys.exit(f"espeak-ng server: synthesis process failed (exit code {code})")


if __name__ == "__main__":
    serve(sys.argv[1])
