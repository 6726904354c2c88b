"""Sentences to speak: read from text a Debian package ships, chosen for phone coverage.

English, German and Spanish text comes from the `fortunes`, `fortunes-de` and `fortunes-es`
packages (the offensive `off/` sections are never read). English sentences are kept only when
every word is in CMUdict (shipped inside pocketsphinx), so that forced alignment in `corpus check`
can score them, and they are ordered by greedy diphone coverage with extra weight on /p b m/, so
that even a small corpus sees every phone and many bilabial contexts.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections import Counter
from pathlib import Path

from distilface.phones import BILABIALS

FORTUNE_DIRS: dict[str, Path] = {
    "en": Path("/usr/share/games/fortunes"),
    "de": Path("/usr/share/games/fortunes/de"),
    "es": Path("/usr/share/games/fortunes/es"),
}
MIN_WORDS = 4
MAX_WORDS = 16  # keeps utterances under ~6 s: one sentence per alignment, readable plots
_ALLOWED = {
    "en": re.compile(r"^[A-Za-z' ,.;:!?\-]+$"),
    "de": re.compile(r"^[A-Za-zÄÖÜäöüß' ,.;:!?\-]+$"),
    "es": re.compile(r"^[A-Za-zÁÉÍÓÚÜÑáéíóúüñ¿¡' ,.;:!?\-]+$"),
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-zÄÖÜäöüßÁÉÍÓÚÜÑáéíóúüñ']+")


def _fortune_files(language: str) -> list[Path]:
    root = FORTUNE_DIRS[language]
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: text source for '{language}' is missing (apt-get install fortunes"
            f"{'' if language == 'en' else '-' + language})")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.suffix in (".dat", ".u8") and not p.is_symlink())


def read_sentences(language: str = "en") -> list[str]:
    """All usable sentences of one language, deduplicated, in a stable order."""
    seen: set[str] = set()
    out: list[str] = []
    allowed = _ALLOWED[language]
    for path in _fortune_files(language):
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for cookie in raw.split("\n%\n"):
            # Quotes end with an attribution line ("-- Author"); it is not part of the text.
            body = " ".join(line.strip() for line in cookie.splitlines()
                            if line.strip() and not line.strip().startswith("--"))
            for sentence in _SENTENCE_END.split(body):
                sentence = sentence.strip().strip('"').strip()
                n_words = len(sentence.split())
                if not (MIN_WORDS <= n_words <= MAX_WORDS) or not allowed.match(sentence):
                    continue
                if not sentence[0].isupper() or sentence.lower() in seen:
                    continue
                seen.add(sentence.lower())
                out.append(sentence)
    return out


@functools.lru_cache(maxsize=1)
def cmudict() -> dict[str, tuple[str, ...]]:
    """CMUdict from the pocketsphinx wheel: word -> arpabet39 phones (stress removed)."""
    from pocketsphinx import get_model_path

    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    entries: dict[str, tuple[str, ...]] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or "(" in parts[0]:  # keep the first pronunciation only
                continue
            entries[parts[0]] = tuple(re.sub(r"\d", "", p).lower() for p in parts[1:])
    return entries


def english_phones(sentence: str) -> tuple[str, ...] | None:
    """Phones of an English sentence by CMUdict, or None if a word is missing."""
    d = cmudict()
    phones: list[str] = []
    for word in _WORD.findall(sentence.lower()):
        word = word.strip("'")
        if word not in d:
            return None
        phones.extend(d[word])
    return tuple(phones)


def select_for_coverage(sentences: list[str], phone_seqs: list[tuple[str, ...]],
                        count: int) -> list[str]:
    """Greedy (lazy) selection maximising new diphones; diphones with /p b m/ weigh double.

    The gain of a sentence only falls as others are picked (it is submodular), so a stale heap
    entry is an upper bound and lazy re-evaluation picks the true best each step.
    """
    covered: Counter[tuple[str, str]] = Counter()

    def gain(i: int) -> float:
        diphones = set(zip(phone_seqs[i], phone_seqs[i][1:]))
        g = sum((2.0 if (a in BILABIALS or b in BILABIALS) else 1.0) / (1 + covered[(a, b)])
                for a, b in diphones)
        return g / max(len(phone_seqs[i]), 1) ** 0.5

    heap = [(-gain(i), i) for i in range(len(sentences))]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap and len(chosen) < count:
        neg, i = heapq.heappop(heap)
        fresh = gain(i)
        if heap and fresh < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-fresh, i))
            continue
        chosen.append(i)
        covered.update(set(zip(phone_seqs[i], phone_seqs[i][1:])))
    return [sentences[i] for i in chosen]


@functools.lru_cache(maxsize=8)
def corpus_sentences(language: str = "en", count: int | None = None) -> tuple[str, ...]:
    """Sentences for synthesis, best coverage first. English: CMUdict-only, coverage-ordered."""
    sentences = read_sentences(language)
    if language != "en":
        return tuple(sentences[:count] if count else sentences)
    keep = [(s, p) for s in sentences if (p := english_phones(s))]
    if not keep:
        raise RuntimeError("no English sentence with all words in CMUdict")
    return tuple(select_for_coverage([s for s, _ in keep], [p for _, p in keep],
                                     count or len(keep)))
