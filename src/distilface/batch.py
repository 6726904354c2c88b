"""Many audio files -> curves in one run: `distilface animate FOLDER|FILES... -o OUT_FOLDER`.

What a game's dialogue pipeline does with hundreds or thousands of voice lines. The model loads
once per worker; each file streams through `animate_file` exactly as a single `animate` would
(so its curves are the same, bit for bit); every output is written atomically, mirroring the
input folders under OUT_FOLDER with the format's extension (`lines/en/hello.wav` ->
`OUT/en/hello.json`).

    plan          inputs -> jobs (audio, output); clashes (a.wav and a.flac -> a.json) refused
                  before anything runs
    resume        OUT/animate-batch.jsonl has a line per finished file: a file whose last line
                  says ok, for the same input (size, mtime), the same settings (model file, fps,
                  format, smoothing, grid, runtime) and whose output is still there at the size
                  written, is skipped; anything else runs again (failed files included)
    run           one process, or `jobs` worker processes (each loads the model once; one
                  thread each); a file that fails is logged with its error and the rest go on
    report        OUT/animate-batch.json: counts, audio seconds, real-time factor, failures

A run that is killed loses at most the files in flight: the log is appended and flushed after
each file (a torn last line is ignored), the outputs are whole or absent.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from distilface.fileio import check_output, write_json

logger = logging.getLogger(__name__)

# Suffixes a folder walk picks up (files named on the command line are taken whatever theirs).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff",
                            ".wma", ".webm", ".caf", ".g722"})
LOG_NAME = "animate-batch.jsonl"
REPORT_NAME = "animate-batch.json"
LOG_VERSION = 1


@dataclass(frozen=True)
class Job:
    audio: Path
    outs: tuple[Path, ...]  # one per format, in the order of Settings.fmts
    rel: str  # the first output's path under the output folder: the key of its log lines


@dataclass(frozen=True)
class Settings:
    """Everything besides the input that decides an output's bytes."""
    model: str  # the model file's name, size and mtime (not its hash: that would read it per run)
    fps: float
    fmts: tuple[str, ...]
    smooth: tuple[float, float, float] | None
    frame_grid: int | None
    runtime: str

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def model_fingerprint(model_path: str | Path) -> str:
    st = Path(model_path).stat()
    return f"{Path(model_path).name}:{st.st_size}:{st.st_mtime_ns}"


def parse_formats(text: str) -> tuple[str, ...]:
    """"csv,glb" -> ("csv", "glb"): the formats a batch writes for each file ("oculus", "vrm": their JSON)."""
    from distilface.formats import FORMAT_ALIASES, FORMATS

    fmts = tuple(dict.fromkeys(f"{f}-json" if f in FORMAT_ALIASES else f for f in
                               (part.strip() for part in text.split(",")) if f))
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"--format {text!r}: use one or more of {', '.join(FORMATS)}, comma-separated")
    return fmts


def is_batch(inputs: list[str]) -> bool:
    """Several inputs, or one folder: a batch (`-o` is then a folder)."""
    return len(inputs) > 1 or Path(inputs[0]).is_dir()


def output_name(audio: Path, fmt: str) -> str:
    """`hello.wav` -> `hello.json`: the audio's last suffix swapped for the format's."""
    stem = audio.name[: -len(audio.suffix)] if audio.suffix else audio.name
    from distilface.formats import SUFFIXES

    return stem + SUFFIXES[fmt]


def plan(inputs: Iterable[str | Path], out_dir: str | Path, fmts: str | tuple[str, ...]) -> list[Job]:
    """The jobs for `inputs` (folders walked for AUDIO_SUFFIXES, hidden entries and the output
    folder skipped; files taken as given), in input order, folders sorted; each writes one file per
    format in `fmts`. Raises, naming the path, for a missing input, a folder without audio, or two
    inputs that would write one output."""
    fmts = (fmts,) if isinstance(fmts, str) else tuple(fmts)
    out_dir = Path(out_dir)
    out_resolved = out_dir.resolve()
    jobs: list[Job] = []
    seen: dict[str, Path] = {}
    for given in inputs:
        src = Path(given)
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such file or folder")
        if src.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(src):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                     and (here / d).resolve() != out_resolved)
                found += [here / f for f in sorted(filenames)
                          if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES]
            if not found:
                raise ValueError(f"{src}: no audio files in this folder ({', '.join(sorted(AUDIO_SUFFIXES))})")
            pairs = [(a, a.parent.relative_to(src)) for a in found]
        else:
            pairs = [(src, Path())]
        for audio, folder in pairs:
            rels = [(folder / output_name(audio, f)).as_posix() for f in fmts]
            if rels[0] in seen and seen[rels[0]].resolve() == audio.resolve():
                continue  # the same file named twice
            for rel in rels:
                if rel in seen:
                    raise ValueError(f"{seen[rel]} and {audio} would both write {out_dir / rel}; "
                                     f"rename one or animate them into different folders")
                seen[rel] = audio
            jobs.append(Job(audio, tuple(out_dir / rel for rel in rels), rels[0]))
    return jobs


def _input_fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def read_log(path: Path) -> dict[str, dict]:
    """The last line per output of a batch log; lines that do not parse (a run killed while
    writing one) are skipped."""
    last: dict[str, dict] = {}
    if not path.exists():
        return last
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("version") == LOG_VERSION and "out" in row:
                last[row["out"]] = row
    return last


def is_done(job: Job, row: dict | None, settings_key: str) -> bool:
    if row is None or row.get("status") != "ok" or row.get("settings") != settings_key:
        return False
    try:
        return (row.get("input") == _input_fingerprint(job.audio)
                and [p.stat().st_size for p in job.outs] == row.get("out_bytes"))
    except OSError:  # the input or the output is gone
        return False


# -- the work of one file, in this process or a worker ------------------------------------------------
_model: Any = None


def _load(model_path: str, settings: Settings, threads: int | None) -> None:
    global _model
    from distilface.animate import configure_torch, load_model

    configure_torch(threads)
    _model = load_model(model_path, settings.smooth, frame_grid=settings.frame_grid, runtime=settings.runtime)


def _animate_one(job: Job, settings: Settings, block_s: float) -> dict[str, Any]:
    """One file -> its output; never raises for the file's own problems (they are the row's error)."""
    from distilface.animate import animate_file
    from distilface.formats import write_curves

    t0 = time.perf_counter()
    row: dict[str, Any] = {"version": LOG_VERSION, "out": job.rel, "audio": str(job.audio)}
    try:
        row["input"] = _input_fingerprint(job.audio)
        for out in job.outs:
            check_output(out, inputs=(job.audio,))
        curves = animate_file(_model, job.audio, fps=settings.fps, block_s=block_s, progress=False)
        for out, fmt in zip(job.outs, settings.fmts):
            write_curves(curves, out, fmt, sound_file=str(job.audio))
        row.update(status="ok", frames=len(curves.values), audio_s=round(len(curves.values) / curves.fps, 3),
                   out_bytes=[p.stat().st_size for p in job.outs])
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the others; the log names it
        row.update(status="failed", error=f"{type(e).__name__}: {e}")
    row["wall_s"] = round(time.perf_counter() - t0, 4)
    return row


def animate_batch(inputs: list[str], out_dir: str | Path, model_path: str | Path, *, fps: float = 30.0,
                  fmt: str | None = None, block_s: float = 60.0, smooth: tuple[float, float, float] | None = None,
                  frame_grid: int | None = None, runtime: str = "auto", jobs: int = 1, progress: bool = True,
                  threads: int | None = None) -> dict[str, Any]:
    """`distilface animate` on many files (module doc). Returns the report (also written to
    OUT/animate-batch.json); its "failed" counts the files that did not animate."""
    from tqdm import tqdm

    fmts = parse_formats(fmt or "json")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: is a file; several inputs need an output folder")
    todo = plan(inputs, out_dir, fmts)
    check_output(out_dir / REPORT_NAME)  # creates the folder; fails now if it cannot be written
    settings = Settings(model_fingerprint(model_path), float(fps), fmts, smooth, frame_grid, runtime)
    key = settings.key()
    log_path = out_dir / LOG_NAME
    previous = read_log(log_path)
    run = [j for j in todo if not is_done(j, previous.get(j.rel), key)]
    skipped = len(todo) - len(run)
    if skipped:
        logger.info("%d of %d files already animated with these settings: skipped", skipped, len(todo))
    if run:  # a bad model fails here, before any file; workers load it again for themselves
        _load(str(model_path), settings, threads if jobs == 1 else 1)
    jobs = min(jobs, max(len(run), 1))
    rows: list[dict] = []
    t0 = time.perf_counter()
    with open(log_path, "a") as log, tqdm(total=len(run), unit="file", desc="animate", disable=not progress) as bar:
        def finished(row: dict) -> None:
            row["settings"] = key
            log.write(json.dumps(row) + "\n")
            log.flush()
            rows.append(row)
            bar.update(1)
            if row["status"] != "ok":
                logger.warning("%s: %s", row["audio"], row["error"])
                bar.set_postfix(failed=sum(r["status"] != "ok" for r in rows))

        if jobs == 1:
            for job in run:
                finished(_animate_one(job, settings, block_s))
        else:
            # spawn, not fork: a forked torch or OpenMP runtime can hang in the child
            ctx = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_load,
                                                          initargs=(str(model_path), settings, 1))
            try:
                futures = [pool.submit(_animate_one, job, settings, block_s) for job in run]
                for fut in concurrent.futures.as_completed(futures):
                    finished(fut.result())
            finally:
                # On Ctrl-C (or any error) only the files in flight finish; without cancelling, the
                # pool would animate every queued file, unlogged, before letting go
                pool.shutdown(wait=True, cancel_futures=True)
    wall_s = time.perf_counter() - t0
    ok = [r for r in rows if r["status"] == "ok"]
    audio_s = sum(r["audio_s"] for r in ok)
    failures = [{"audio": r["audio"], "error": r["error"]} for r in rows if r["status"] != "ok"]
    report = {"version": LOG_VERSION, "files": len(todo), "animated": len(ok), "skipped": skipped,
              "failed": len(failures), "audio_s": round(audio_s, 3), "wall_s": round(wall_s, 3),
              "realtime_factor": round(audio_s / wall_s, 1) if ok and wall_s > 0 else None, "jobs": jobs,
              "settings": {**asdict(settings), "key": key}, "out": str(out_dir), "failures": failures}
    write_json(out_dir / REPORT_NAME, report)
    return report
