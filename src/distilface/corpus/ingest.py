"""`corpus ingest`: real speech with transcripts -> 16 kHz audio + forced-aligned phones + manifest.

Input layouts (`ingest_folder`, searched recursively):
- LibriSpeech: `<spk>-<chapter>.trans.txt` with lines "UTTID TEXT" next to `UTTID.flac`;
  speaker = first field of UTTID.
- pairs: `x.wav` + `x.txt` (any format `load_audio` reads: wav, flac, ogg, mp3, g722, m4a ...);
  speaker = the parent folder's name.

Output (`out_dir`):
    audio/<id>.wav              16 kHz mono PCM16
    phones/<id>.phones.tsv      forced alignment (arpabet39 + sil)
    manifest.jsonl              one Utterance per aligned file, split field set
    failures.jsonl              {"id", "reason", "key"} per file that could not be used

Utterances that fail (unreadable, corrupt or over-long audio, NaN samples, unknown words, decode
failure) are skipped with a warning line naming the file and listed in failures.jsonl, not fatal;
a run in which no utterance at all could be ingested fails (ValueError) after writing both files.
Audio is stored conditioned as `animate` feeds it to a student (`audio.AudioStats.condition`: a
DC offset beyond `DC_OFFSET_MAX` removed, float audio beyond full scale scaled to peak 1).
Resumable: an utterance whose phones file exists is not redone, and a failure is not retried
while its audio file and transcript are unchanged (`key`). Every file is written atomically and
the phones file last, so its presence marks a finished utterance.

Recipes (`ingest_recipe`):
- 'asterisk-en': the Asterisk core English prompts (Debian asterisk-core-sounds-en-g722, one US
  female speaker, CC-BY-SA-3.0). Split: FIXED by a stable hash of the normalised transcript
  (sha1 % 100: < 80 train, < 90 val, else test), so identical texts share a split and the split
  never changes between machines or runs. The test split is for evaluation only: never train or
  tune on it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from distilface.manifest import SPLITS, Utterance, write_manifest

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".aiff", ".aif",
                    ".g722", ".sln16", ".au")
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}  # stable-hash split of speakers or prompts

ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ASTERISK_SOURCE = "asterisk-en"
ASTERISK_VOICE = "asterisk-en/female1"

_NOTE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")  # non-speech notes in transcripts
SplitFn = Callable[[str, str], str]  # (utterance id, speaker) -> "train" | "val" | "test"


@dataclass
class _Item:
    id: str
    audio_path: str
    text: str
    voice: str
    split: str
    source: str
    language: str
    src: str  # where it came from, for the manifest's extra field
    lexicon: dict[str, str] | None = None  # extra pronunciations for align_phones

    @property
    def key(self) -> str:
        """Changes when the audio file or the transcript changes (failures are then retried)."""
        try:
            st = Path(self.audio_path).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        return hashlib.sha1(f"{stamp}\n{self.text}".encode()).hexdigest()[:16]


def hash_split(name: str) -> str:
    """Stable train/val/test assignment of a name (speaker, prompt): sha1 % 100 vs SPLIT_PERCENT."""
    bucket = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 100
    edge = 0
    for split in SPLITS:
        edge += SPLIT_PERCENT[split]
        if bucket < edge:
            return split
    raise AssertionError("SPLIT_PERCENT must sum to 100")


def _default_split(utt_id: str, speaker: str) -> str:
    return hash_split(speaker)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "utt"


# ----------------------------------------------------------------------------- discovery

def _find_items(src_dir: Path, language: str, source: str, split_fn: SplitFn,
                lexicon: dict[str, str] | None) -> tuple[list[_Item], list[dict[str, str]]]:
    items: list[_Item] = []
    problems: list[dict[str, str]] = []

    def add(utt_id: str, audio: Path | None, text: str, speaker: str, src: str) -> None:
        if audio is None:
            problems.append({"id": utt_id, "reason": f"{src}: no audio file for this transcript"})
            return
        split = split_fn(utt_id, speaker)
        if split not in SPLITS:
            raise ValueError(f"split_fn returned {split!r} for {utt_id}; expected one of {SPLITS}")
        items.append(_Item(utt_id, str(audio), text.strip(), f"{source}/{speaker}", split,
                           source, language, src, lexicon))

    def audio_for(folder: Path, stem: str) -> Path | None:
        for ext in AUDIO_EXTENSIONS:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
        return None

    for trans in sorted(src_dir.rglob("*.trans.txt")):  # LibriSpeech
        for line_no, line in enumerate(trans.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            rel = f"{trans.relative_to(src_dir)}:{line_no}"
            add(_safe_id(utt), audio_for(trans.parent, utt), text, utt.split("-")[0], rel)
    librispeech_dirs = {t.parent for t in src_dir.rglob("*.trans.txt")}
    for txt in sorted(src_dir.rglob("*.txt")):  # pairs
        if txt.name.endswith(".trans.txt") or txt.parent in librispeech_dirs:
            continue
        rel = txt.relative_to(src_dir).with_suffix("")
        utt_id = _safe_id("-".join(rel.parts))
        speaker = txt.parent.name if txt.parent != src_dir else src_dir.name
        add(utt_id, audio_for(txt.parent, txt.stem), txt.read_text(errors="replace"),
            speaker, str(txt.relative_to(src_dir)))
    ids = [i.id for i in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{src_dir}: utterance ids occur twice: {', '.join(duplicates[:5])}")
    return items, problems


# ----------------------------------------------------------------------------- work

def _paths(out_dir: Path, utt_id: str) -> tuple[Path, Path]:
    return out_dir / "audio" / f"{utt_id}.wav", out_dir / "phones" / f"{utt_id}.phones.tsv"


def _ingest_one(job: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """Worker: load, align, write one utterance -> {'id', 'duration_s'} or {'id', 'reason'}."""
    item_dict, out_dir = job
    item = _Item(**item_dict)
    from distilface.audio import MAX_WHOLE_FILE_S, SAMPLE_RATE_HZ, AudioError, load_audio, write_audio
    from distilface.corpus.align import AlignmentError, align_phones
    from distilface.phones import write_phones

    audio_path, phones_path = _paths(Path(out_dir), item.id)
    try:
        if not item.text:
            raise AlignmentError("empty transcript")
        audio = load_audio(item.audio_path, max_s=MAX_WHOLE_FILE_S, conditioned=True)
        phones = align_phones(audio, item.text, item.lexicon)
    except (AudioError, AlignmentError) as e:
        return {"id": item.id, "reason": str(e)}
    except Exception as e:  # one bad file must not stop a long ingest
        log.exception("unexpected failure on %s", item.id)
        return {"id": item.id, "reason": f"{type(e).__name__}: {e}"}
    write_audio(audio_path, audio)
    write_phones(phones_path, phones)  # last: marks the utterance finished
    return {"id": item.id, "duration_s": len(audio) / SAMPLE_RATE_HZ}


def _duration_s(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


def _ingest(items: list[_Item], problems: list[dict[str, str]], out_dir: Path,
            workers: int) -> Path:
    from tqdm import tqdm

    from distilface.fileio import read_jsonl, write_jsonl

    out_dir.mkdir(parents=True, exist_ok=True)
    failures_path = out_dir / "failures.jsonl"
    old_failures = {r["id"]: r for r in read_jsonl(failures_path)} if failures_path.exists() else {}
    durations: dict[str, float] = {}
    failures: list[dict[str, str]] = [{**p, "key": ""} for p in problems]
    for p in problems:
        log.warning("skipped %s: %s", p["id"], p["reason"])
    todo: list[_Item] = []
    for item in items:
        audio_path, phones_path = _paths(out_dir, item.id)
        if phones_path.exists() and audio_path.exists():
            durations[item.id] = _duration_s(audio_path)
        elif item.id in old_failures and old_failures[item.id].get("key") == item.key:
            failures.append(old_failures[item.id])
        else:
            todo.append(item)
    log.info("ingest: %d utterances, %d done before, %d failed before, %d to do",
             len(items), len(durations), len(failures) - len(problems), len(todo))

    jobs = [(asdict(item), str(out_dir)) for item in todo]
    keys = {item.id: item.key for item in todo}
    sources = {item.id: item.audio_path for item in todo}
    progress = tqdm(total=len(jobs), desc="ingest", unit="utt")
    results: list[dict[str, Any]] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_ingest_one(job))
            progress.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for result in pool.map(_ingest_one, jobs, chunksize=2):
                results.append(result)
                progress.update()
    progress.close()
    for r in results:
        if "reason" in r:
            failures.append({"id": r["id"], "reason": r["reason"], "key": keys[r["id"]]})
            named = r["reason"] if r["reason"].startswith(sources[r["id"]]) else f"{sources[r['id']]}: {r['reason']}"
            log.warning("skipped %s", named)
        else:
            durations[r["id"]] = r["duration_s"]

    utterances = []
    for item in items:
        if item.id not in durations:
            continue
        audio_path, phones_path = _paths(out_dir, item.id)
        utterances.append(Utterance(
            id=item.id, audio=audio_path.relative_to(out_dir).as_posix(),
            phones=phones_path.relative_to(out_dir).as_posix(),
            duration_s=round(durations[item.id], 6), voice=item.voice, language=item.language,
            source=item.source, split=item.split, text=item.text, augmentation=None,
            extra={"src": item.src}))
    manifest_path = out_dir / "manifest.jsonl"
    write_manifest(manifest_path, utterances)
    write_jsonl(failures_path, failures)
    log.info("ingest: %d aligned, %d failed -> %s", len(utterances), len(failures), manifest_path)
    if not utterances:
        raise ValueError(f"{out_dir}: no utterance could be ingested ({len(failures)} failed; "
                         f"reasons in {failures_path})")
    return manifest_path


def ingest_folder(src_dir: str | Path, out_dir: str | Path, *, language: str = "en",
                  split_fn: SplitFn | None = None, workers: int = 2,
                  source: str | None = None, lexicon: dict[str, str] | None = None) -> Path:
    """Ingest a folder of transcribed speech (LibriSpeech layout or x.wav + x.txt pairs).

    `split_fn(utt_id, speaker) -> split`; the default splits by speaker with `hash_split`
    (80/10/10). `source` names the corpus in the manifest (default: the folder's name); voices
    are "<source>/<speaker>". `lexicon` adds pronunciations for words CMUdict lacks (see
    `align.align_phones`). Only English can be aligned. Returns the manifest's path.
    Raises ValueError for an unsupported language or a folder without transcripts.
    """
    if language.split("-")[0].lower() != "en":
        raise ValueError(f"language {language!r}: only English ('en') can be force-aligned")
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise ValueError(f"{src_dir}: not a folder")
    items, problems = _find_items(src_dir, language, source or src_dir.resolve().name,
                                  split_fn or _default_split, lexicon)
    if not items and not problems:
        raise ValueError(f"{src_dir}: no transcripts found (*.trans.txt or x.txt next to x.wav)")
    return _ingest(items, problems, Path(out_dir), workers)


# ----------------------------------------------------------------------------- recipes

def read_asterisk_transcripts(path: Path = ASTERISK_TRANSCRIPTS) -> dict[str, str]:
    """core-sounds-en.txt.gz -> {prompt name: transcript}; ';' lines are comments.

    Notes in brackets, parentheses or angle brackets are removed ("at [@]" -> "at"); prompts
    that are only a note ("[this is a simple beep tone]", "(1 second of silence)") map to "".
    """
    out: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            out[name.strip()] = re.sub(r"\s+", " ", _NOTE.sub(" ", text)).strip()
    return out


def _asterisk_items() -> tuple[list[_Item], list[dict[str, str]]]:
    from distilface.corpus.align import normalize_text

    if not ASTERISK_TRANSCRIPTS.exists():
        raise FileNotFoundError(f"{ASTERISK_TRANSCRIPTS}: apt-get install asterisk-core-sounds-en "
                                "asterisk-core-sounds-en-g722")
    items, problems = [], []
    for name, text in sorted(read_asterisk_transcripts().items()):
        utt_id = "asterisk-en-" + _safe_id(name.replace("/", "__"))
        audio = ASTERISK_SOUNDS_DIR / f"{name}.g722"
        if not text:
            problems.append({"id": utt_id, "reason": "no speech in the transcript (only a note)"})
        elif not audio.is_file():
            problems.append({"id": utt_id, "reason": f"{audio}: no such prompt installed"})
        else:
            split = hash_split("asterisk-en:" + " ".join(normalize_text(text)))
            items.append(_Item(utt_id, str(audio), text, ASTERISK_VOICE, split, ASTERISK_SOURCE,
                               "en", name, ASTERISK_LEXICON))
    return items, problems


# Words of the Asterisk transcripts that CMUdict lacks (arpabet39). Misspellings in the transcript
# ("exclaimation", "witheld") get the pronunciation of the word the speaker actually said.
ASTERISK_LEXICON: dict[str, str] = {
    "unmute": "ah n m y uw t", "unmuted": "ah n m y uw t ih d", "umute": "ah n m y uw t",
    "undelete": "ah n d ih l iy t", "undeleted": "ah n d ih l iy t ih d",
    "rerecord": "r iy r ih k ao r d", "pbx": "p iy b iy eh k s", "iax": "ay ey eh k s",
    "ivr": "ay v iy aa r", "3d": "th r iy d iy", "www": "d ah b ah l y uw d ah b ah l y uw d ah b "
    "ah l y uw", "touchtone": "t ah ch t ow n", "lowercase": "l ow er k ey s",
    "uppercase": "ah p er k ey s", "xray": "eh k s r ey", "forevermore": "f er eh v er m ao r",
    "prepend": "p r iy p eh n d", "prepending": "p r iy p eh n d ih ng",
    "semicolon": "s eh m iy k ow l ah n", "caret": "k ae r ah t", "backtick": "b ae k t ih k",
    "decending": "d ih s eh n d ih ng", "represenatives": "r eh p r ah z eh n t ah t ih v z",
    "indentified": "ay d eh n t ah f ay d", "witheld": "w ih th hh eh l d",
    "exclaimation": "eh k s k l ah m ey sh ah n", "fourtieth": "f ao r t iy ih th",
    "digium": "d ih jh iy ah m", "dahdi": "d aa d iy", "mgcp": "eh m jh iy s iy p iy",
    "unistim": "y uw n ih s t ih m",
}

# Extra pronunciations by manifest source, for tools that re-align a recipe's audio (corpus check).
RECIPE_LEXICONS: dict[str, dict[str, str]] = {ASTERISK_SOURCE: ASTERISK_LEXICON}

RECIPES: dict[str, Callable[[], tuple[list[_Item], list[dict[str, str]]]]] = {
    "asterisk-en": _asterisk_items,
}


def ingest_recipe(name: str, out_dir: str | Path, workers: int = 2) -> Path:
    """Ingest a named corpus installed from Debian packages (see RECIPES). Returns the manifest."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    items, problems = RECIPES[name]()
    return _ingest(items, problems, Path(out_dir), workers)
