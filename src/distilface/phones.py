"""The project's phone set and phone-timing files.

Phone set: the 39 ARPAbet phones of CMUdict, lower case, without stress, plus `sil` for silence
and pauses. Every engine, aligner and recipe maps its own symbols into this set (see the mapping
tables next to each engine), so teachers and metrics see one vocabulary.

Timing file (`*.phones.tsv`), version 1:

    # distilface-phones v1 phoneset=arpabet39
    start_s<TAB>end_s<TAB>phone

Segments are sorted, contiguous, and cover the whole utterance (silence included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distilface.fileio import atomic_write

PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh",
    "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh",
    "uw", "v", "w", "y", "z", "zh",
)
SILENCE = "sil"
PHONE_SET: frozenset[str] = frozenset(PHONES) | {SILENCE}
VOWELS: frozenset[str] = frozenset(
    {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"})
BILABIALS: frozenset[str] = frozenset({"p", "b", "m"})
# Open vowels for the open-vowel accuracy metric: the lips must be apart during these.
OPEN_VOWELS: frozenset[str] = frozenset({"aa", "ae", "ah", "ao", "aw", "ay"})
STOPS: frozenset[str] = frozenset({"p", "b", "t", "d", "k", "g"})

FILE_HEADER = "# distilface-phones v1 phoneset=arpabet39"


@dataclass(frozen=True)
class PhoneSegment:
    phone: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def validate(segments: list[PhoneSegment], where: str = "") -> None:
    """Raise ValueError unless segments use the phone set, are ordered and contiguous."""
    prefix = f"{where}: " if where else ""
    for i, seg in enumerate(segments):
        if seg.phone not in PHONE_SET:
            raise ValueError(f"{prefix}segment {i}: phone {seg.phone!r} is not in arpabet39")
        if not seg.end_s > seg.start_s:
            raise ValueError(f"{prefix}segment {i}: end {seg.end_s} <= start {seg.start_s}")
        if i and abs(seg.start_s - segments[i - 1].end_s) > 1e-6:
            raise ValueError(f"{prefix}segment {i}: gap or overlap at {seg.start_s:.6f}s")


def merge_adjacent_silence(segments: list[PhoneSegment]) -> list[PhoneSegment]:
    out: list[PhoneSegment] = []
    for seg in segments:
        if out and seg.phone == SILENCE and out[-1].phone == SILENCE:
            out[-1] = PhoneSegment(SILENCE, out[-1].start_s, seg.end_s)
        else:
            out.append(seg)
    return out


def write_phones(path: str | Path, segments: list[PhoneSegment]) -> None:
    validate(segments, str(path))
    with atomic_write(path, "w") as f:
        f.write(FILE_HEADER + "\n")
        for seg in segments:
            f.write(f"{seg.start_s:.6f}\t{seg.end_s:.6f}\t{seg.phone}\n")


def read_phones(path: str | Path) -> list[PhoneSegment]:
    path = Path(path)
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith("# distilface-phones v1"):
        raise ValueError(f"{path}: not a distilface phone-timing file (missing v1 header)")
    segments = []
    for line_no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{line_no}: expected start_s<TAB>end_s<TAB>phone")
        segments.append(PhoneSegment(parts[2], float(parts[0]), float(parts[1])))
    validate(segments, str(path))
    return segments


def phone_at_times(segments: list[PhoneSegment], times_s) -> list[str]:
    """Phone label at each time (seconds); times outside the segments are silence."""
    import bisect

    starts = [s.start_s for s in segments]
    out = []
    for t in times_s:
        i = bisect.bisect_right(starts, t) - 1
        out.append(segments[i].phone if 0 <= i and t < segments[i].end_s else SILENCE)
    return out
