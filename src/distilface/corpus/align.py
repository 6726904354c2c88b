"""Phone-level forced alignment and phone recognition with pocketsphinx (en-us model, CMUdict).

Forced alignment is two passes over the same audio: a word-level pass constrained to the text
(`set_align_text`, choosing among CMUdict's alternative pronunciations and optional pauses), then a
phone-level pass over the chosen words (`set_alignment`). Frames are 10 ms, so boundaries are
quantised to 10 ms.

Things that make pocketsphinx fail, and what this module does about them:
- synthetic speech: the default beams prune the right path; wide beams (`BEAMS`) keep it.
- digital silence (exact zeros, as TTS engines write): log-energy features go to -inf and the
  search drops out after the first word. A fixed, seeded noise floor at -66 dBFS is added.
- long utterances (30+ s): alignment fails. When audio longer than `MAX_WHOLE_S` with several
  sentences fails as a whole, it is word-aligned once, cut at the pauses between sentences, and
  phone-aligned sentence by sentence.
- the phone pass sometimes fails where the word pass succeeded: it is retried with other noise.

One decoder per process, created lazily (creating one costs ~0.1-0.5 s and the dictionary ~20 MB);
the module is therefore not thread-safe, but safe across processes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.phones import PHONE_SET, SILENCE, PhoneSegment, merge_adjacent_silence

log = logging.getLogger(__name__)

FRAME_RATE_HZ = 100  # pocketsphinx's default -frate
FRAME_S = 1.0 / FRAME_RATE_HZ
if SAMPLE_RATE_HZ % FRAME_RATE_HZ:
    raise ValueError("SAMPLE_RATE_HZ must be a multiple of the aligner frame rate")
BEAMS: dict[str, float] = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
# bestpath rescoring can hand the phone pass word segments too short for their phones
# ("impossible duration"), which fails it; the forward-pass segmentation never does.
ALIGN_SETTINGS: dict[str, Any] = {**BEAMS, "bestpath": False}
# Settings pocketsphinx recommends for phone recognition (allphone search with the phone LM).
ALLPHONE_SETTINGS: dict[str, Any] = {"beam": 1e-20, "pbeam": 1e-20, "lw": 2.0, "backtrace": False}
NOISE_FLOOR_RMS = 5e-4  # -66 dBFS; far below any real recording's noise floor
NOISE_SEED = 0
MAX_WHOLE_S = 20.0  # longer audio with several sentences is aligned one sentence at a time
MIN_AUDIO_S = 0.1
ALIGN_ATTEMPTS = 3

# pocketsphinx fillers and silence -> 'sil'
_FILLER_PHONES = {"SIL", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+NOISE+", "+UM+", "+UH+"}
_SIBILANTS = {"S", "Z", "SH", "ZH", "CH", "JH"}
_VOICELESS = {"P", "T", "K", "F", "TH"}


class AlignmentError(RuntimeError):
    """Alignment was impossible; the message says why (unknown words, decode failure, ...)."""


# ----------------------------------------------------------------------------- text

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;:])\s+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-"})


def number_to_words(n: int) -> str:
    """Cardinal number in words, 0 <= n < 10**12 ("twenty one", "one hundred five")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return (number_to_words(n // scale) + " " + name
                    + ("" if rest == 0 else " " + number_to_words(rest)))
    raise AssertionError(n)


def _number_token(token: str) -> str | None:
    """'42' -> 'forty two', '3.5' -> 'three point five', '1,000' -> 'one thousand'; else None."""
    plain = token.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", token) else token
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?", plain)
    if not m or len(m.group(1)) > 12:
        return None
    words = number_to_words(int(m.group(1)))
    if m.group(2):
        words += " point " + " ".join(_ONES[int(d)] for d in m.group(2))
    return words


def normalize_text(text: str, lookup=None) -> list[str]:
    """Text -> lower-case words for CMUdict lookup.

    Case and punctuation go; numbers become words; hyphens and slashes split words; apostrophes
    inside words stay ("don't", "party's"); dotted abbreviations stay when `lookup` knows them
    ("a.m."). `lookup(word) -> bool` tells whether the dictionary has a word.
    """
    text = text.translate(_QUOTES)
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    words: list[str] = []
    for raw in text.lower().split():
        token = raw.strip("\"'()[]{}<>,;:!?*#~`")
        if lookup is not None and token and lookup(token):  # "a.m.", "o'clock", "mr."
            words.append(token)
            continue
        token = token.rstrip(".")
        if _number_token(token) is not None:  # "3.5", "1,000"
            words.extend(_number_token(token).split())
            continue
        for part in re.split(r"[^a-z0-9']+", token):
            part = part.strip("'")
            if not part:
                continue
            spoken = _number_token(part)
            # Ordinals ("1st") and mixed tokens stay as they are: the dictionary check names them.
            words.extend(spoken.split() if spoken is not None else [part])
    return words


def split_sentences(text: str) -> list[str]:
    """Split at sentence punctuation followed by white space; empty pieces dropped."""
    return [s for s in (p.strip() for p in _SENTENCE_SPLIT.split(text)) if normalize_text(s)]


# ----------------------------------------------------------------------------- decoders

_decoders: dict[str, Any] = {}


def _decoder(kind: str = "align"):
    """The process's pocketsphinx decoder of one kind ('align' or 'allphone'), made on first use."""
    if kind not in _decoders:
        from pocketsphinx import Decoder, get_model_path

        if kind == "align":
            _decoders[kind] = Decoder(lm=None, loglevel="FATAL", **ALIGN_SETTINGS)
        elif kind == "allphone":
            phone_lm = f"{get_model_path()}/en-us/en-us-phone.lm.bin"
            _decoders[kind] = Decoder(lm=None, allphone=phone_lm, loglevel="FATAL",
                                      **ALLPHONE_SETTINGS)
        else:
            raise ValueError(kind)
    return _decoders[kind]


def _pcm16(audio_16k: np.ndarray, seed: int = NOISE_SEED) -> bytes:
    audio = np.asarray(audio_16k, dtype=np.float64)
    if audio.ndim != 1:
        raise AlignmentError(f"expected mono audio (samples,), got shape {audio.shape}")
    if len(audio) < MIN_AUDIO_S * SAMPLE_RATE_HZ:
        raise AlignmentError(f"audio too short ({len(audio) / SAMPLE_RATE_HZ:.3f} s)")
    if not np.all(np.isfinite(audio)):
        raise AlignmentError("audio contains NaN or infinite samples")
    noise = np.random.default_rng(seed).normal(0.0, NOISE_FLOOR_RMS, len(audio))
    return (np.clip(audio + noise, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def _run(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _lookup(decoder, word: str) -> bool:
    return decoder.lookup_word(word) is not None


def _ensure_words(decoder, words: list[str], lexicon: dict[str, str] | None = None) -> None:
    """Add words from `lexicon` and derivable ones (possessives of known words) to the
    decoder's dictionary; raise AlignmentError naming the rest."""
    unknown = []
    for word in dict.fromkeys(words):
        if _lookup(decoder, word):
            continue
        if lexicon and word in lexicon:
            phones = lexicon[word].upper().split()
            bad = [p for p in phones if p.lower() not in PHONE_SET or p == "SIL"]
            if not phones or bad:
                raise AlignmentError(f"lexicon entry {word!r}: phones {bad or phones} are not "
                                     "arpabet39")
            decoder.add_word(word, " ".join(phones), True)
            continue
        base = word[:-2] if word.endswith("'s") else None
        base_pron = decoder.lookup_word(base) if base else None
        if base_pron:
            last = base_pron.split()[-1]
            suffix = "IH Z" if last in _SIBILANTS else "S" if last in _VOICELESS else "Z"
            decoder.add_word(word, f"{base_pron} {suffix}", True)
        else:
            unknown.append(word)
    if unknown:
        raise AlignmentError("words not in the pronunciation dictionary: " + ", ".join(unknown))


def _to_phone(name: str) -> str:
    if name in _FILLER_PHONES or name.startswith("+"):
        return SILENCE
    phone = name.lower()
    if phone not in PHONE_SET:
        raise AlignmentError(f"aligner returned unknown phone {name!r}")
    return phone


def _frames_to_segments(items: list[tuple[str, int, int]], duration_s: float,
                        offset_s: float = 0.0) -> list[PhoneSegment]:
    """(phone, start_frame, n_frames) -> contiguous segments covering [offset, offset+duration]."""
    segments: list[PhoneSegment] = []
    end_s = offset_s + duration_s
    for i, (phone, start_frame, n_frames) in enumerate(items):
        start = offset_s if i == 0 else offset_s + start_frame * FRAME_S
        stop = end_s if i == len(items) - 1 else offset_s + (start_frame + n_frames) * FRAME_S
        stop = min(stop, end_s)
        if stop - start <= 1e-9:
            continue
        if segments and abs(segments[-1].end_s - start) > 1e-9:
            start = segments[-1].end_s  # keep contiguity through zero-length pieces
        segments.append(PhoneSegment(phone, start, stop))
    if segments:  # the audio may end mid-frame: the last segment reaches the last sample
        last = segments[-1]
        segments[-1] = PhoneSegment(last.phone, last.start_s, end_s)
    return merge_adjacent_silence(segments)


def _align_piece(audio: np.ndarray, words: list[str], offset_s: float) -> list[PhoneSegment]:
    """Two-pass alignment of one sentence; retried with other noise seeds, because the phone
    pass occasionally fails ("Alignment failed in frame N") where the word pass succeeded."""
    error = AlignmentError("not attempted")
    for attempt in range(ALIGN_ATTEMPTS):
        try:
            return _align_once(_pcm16(audio, NOISE_SEED + attempt), words,
                               len(audio) / SAMPLE_RATE_HZ, offset_s)
        except AlignmentError as e:
            error = e
            log.debug("alignment attempt %d failed: %s", attempt, e)
    raise error


def _align_once(pcm: bytes, words: list[str], duration_s: float,
                offset_s: float) -> list[PhoneSegment]:
    decoder = _decoder("align")
    try:
        decoder.set_align_text(" ".join(words))
        _run(decoder, pcm)
        hyp = decoder.hyp()
        if hyp is None or len(hyp.hypstr.split()) != len(words):
            got = len(hyp.hypstr.split()) if hyp is not None else 0
            raise AlignmentError(f"word alignment did not reach the end of the text "
                                 f"({got}/{len(words)} words)")
        decoder.set_alignment()
        _run(decoder, pcm)
        alignment = decoder.get_alignment()
    except AlignmentError:
        raise
    except RuntimeError as e:
        raise AlignmentError(f"pocketsphinx decode failed ({e})") from None
    if alignment is None:
        raise AlignmentError("pocketsphinx returned no phone alignment")
    items = [(_to_phone(p.name), p.start, p.duration) for p in alignment.phones()]
    if not items:
        raise AlignmentError("pocketsphinx returned an empty phone alignment")
    return _frames_to_segments(items, duration_s, offset_s)


def _sentence_cuts(pcm: bytes, sentences: list[list[str]]) -> list[int]:
    """Word-align all text once; return a sample index inside each pause between sentences."""
    decoder = _decoder("align")
    all_words = [w for s in sentences for w in s]
    try:
        decoder.set_align_text(" ".join(all_words))
        _run(decoder, pcm)
    except RuntimeError as e:
        raise AlignmentError(f"pocketsphinx decode failed on long audio ({e})") from None
    segs = [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()
            if s.word not in ("<s>", "</s>")]
    word_segs = [s for s in segs if not s[0].startswith(("<", "[", "+"))]
    if len(word_segs) != len(all_words):
        raise AlignmentError(f"word alignment of long audio matched {len(word_segs)}/"
                             f"{len(all_words)} words")
    cuts, n = [], 0
    samples_per_frame = SAMPLE_RATE_HZ // FRAME_RATE_HZ
    for sentence in sentences[:-1]:
        n += len(sentence)
        last_end, next_start = word_segs[n - 1][2] + 1, word_segs[n][1]
        cuts.append((last_end + next_start) // 2 * samples_per_frame)
    return cuts


def align_phones(audio_16k: np.ndarray, text: str,
                 lexicon: dict[str, str] | None = None) -> list[PhoneSegment]:
    """Forced-align `text` to `audio_16k` ((samples,) float at 16 kHz) -> phone segments.

    `lexicon` adds pronunciations for words CMUdict lacks: {"unmute": "ah n m y uw t"} (lower-case
    words, arpabet39 phones without stress); they stay in this process's dictionary.
    Returns arpabet39 + 'sil' segments, contiguous, from 0 to len(audio)/16000 s, boundaries on the
    10 ms frame grid (except the final end). Raises AlignmentError naming unknown words, or saying
    that the decoder failed (usually: audio and text do not match, or the audio is too long).
    """
    decoder = _decoder("align")
    words = normalize_text(text, lambda w: _lookup(decoder, w))
    if not words:
        raise AlignmentError(f"no words to align in {text!r}")
    _ensure_words(decoder, words, lexicon)
    audio_16k = np.asarray(audio_16k, dtype=np.float32)
    _pcm16(audio_16k)  # validates shape, length, finiteness
    sentences = [normalize_text(s, lambda w: _lookup(decoder, w)) for s in split_sentences(text)]
    duration_s = len(audio_16k) / SAMPLE_RATE_HZ
    try:
        return _align_piece(audio_16k, words, 0.0)
    except AlignmentError as e:
        if duration_s <= MAX_WHOLE_S or len(sentences) < 2:
            raise
        log.debug("whole-utterance alignment failed (%s); aligning sentence by sentence", e)
    cuts = _sentence_cuts(_pcm16(audio_16k), sentences)
    bounds = [0, *cuts, len(audio_16k)]
    segments: list[PhoneSegment] = []
    for sentence, a, b in zip(sentences, bounds[:-1], bounds[1:]):
        if b - a < MIN_AUDIO_S * SAMPLE_RATE_HZ:
            raise AlignmentError("sentence pieces of long audio are too short to align")
        segments.extend(_align_piece(audio_16k[a:b], sentence, a / SAMPLE_RATE_HZ))
    return merge_adjacent_silence(segments)


def recognize_phones(audio_16k: np.ndarray) -> list[PhoneSegment]:
    """Phone recognition without text (allphone search, en-us phone LM) -> contiguous segments.

    Much less accurate than forced alignment (phone error rates of 30-50% are usual); meant for
    rough timing of speech whose text is unknown. Raises AlignmentError if decoding fails.
    """
    decoder = _decoder("allphone")
    pcm = _pcm16(audio_16k)
    try:
        _run(decoder, pcm)
    except RuntimeError as e:
        raise AlignmentError(f"pocketsphinx phone recognition failed ({e})") from None
    items = [(_to_phone(s.word), s.start_frame, s.end_frame - s.start_frame + 1)
             for s in decoder.seg()]
    if not items:
        raise AlignmentError("pocketsphinx recognised no phones")
    return _frames_to_segments(items, len(audio_16k) / SAMPLE_RATE_HZ)
