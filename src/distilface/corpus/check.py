"""`corpus check`: how accurate are a corpus's phone timings? Measured against forced alignment.

For a sample of utterances per source (engine or recipe), the audio is force-aligned with
pocketsphinx (`align.align_phones`) and the aligner's phones are matched to the manifest's phones.
The two phone sequences may differ (each engine has its own lexicon and CMUdict is not it), so they
are matched with an edit-distance alignment, and only boundaries whose phones match on both sides,
in both sequences, are compared:

    manifest:  ... p1 | p2 ...      error = aligner boundary - manifest boundary (ms)
    aligner:   ... p1 | p2 ...      (positive: the aligner puts the boundary later)

Boundaries are reported in three groups: `phone` (two speech phones), `bilabial_onset` (the subset
whose right phone is /p b m/, the onsets that close the lips), and `silence` (speech <-> 'sil'; the
start and end of pauses, which engines and aligners place by different conventions).

The aligner's boundaries sit on a 10 ms frame grid, so even perfect timings show errors up to
5 ms; a median absolute error <= `TARGET_MEDIAN_MS` counts as a pass.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from distilface.phones import BILABIALS, SILENCE, PhoneSegment

log = logging.getLogger(__name__)

TARGET_MEDIAN_MS = 15.0
GROUPS = ("phone", "bilabial_onset", "silence")
_SUB_COST, _INDEL_COST, _SIL_INDEL_COST = 1.0, 1.0, 0.5  # silence comes and goes cheaply


def match_phones(ref: list[str], hyp: list[str]) -> list[tuple[int, int]]:
    """Edit-distance alignment of two phone label sequences -> index pairs (i, j) of equal labels.

    Substitutions and insertions/deletions cost 1, inserting or deleting 'sil' costs 0.5 (pauses
    are optional in both sequences). Ties prefer the diagonal, so results are deterministic.
    """
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1))
    indel_ref = [(_SIL_INDEL_COST if p == SILENCE else _INDEL_COST) for p in ref]
    indel_hyp = [(_SIL_INDEL_COST if p == SILENCE else _INDEL_COST) for p in hyp]
    cost[1:, 0] = np.cumsum(indel_ref)
    cost[0, 1:] = np.cumsum(indel_hyp)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = cost[i - 1, j - 1] + (0.0 if ref[i - 1] == hyp[j - 1] else _SUB_COST)
            cost[i, j] = min(diag, cost[i - 1, j] + indel_ref[i - 1],
                             cost[i, j - 1] + indel_hyp[j - 1])
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        same = ref[i - 1] == hyp[j - 1]
        if np.isclose(cost[i, j], cost[i - 1, j - 1] + (0.0 if same else _SUB_COST)):
            if same:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif np.isclose(cost[i, j], cost[i - 1, j] + indel_ref[i - 1]):
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def boundary_errors(ref: list[PhoneSegment], hyp: list[PhoneSegment]) -> dict[str, list[float]]:
    """Signed boundary errors (hyp - ref, ms) of the boundaries that match on both sides.

    A boundary between ref[i] and ref[i+1] is compared with the one between hyp[j] and hyp[j+1]
    when (i, j) and (i+1, j+1) are both matched pairs. Returns {group: [errors]} for `GROUPS`.
    """
    pairs = match_phones([s.phone for s in ref], [s.phone for s in hyp])
    out: dict[str, list[float]] = {g: [] for g in GROUPS}
    for (i, j), (i2, j2) in zip(pairs, pairs[1:]):
        if i2 != i + 1 or j2 != j + 1:
            continue
        left, right = ref[i].phone, ref[i2].phone
        error_ms = (hyp[j].end_s - ref[i].end_s) * 1000.0
        if SILENCE in (left, right):
            if left != right:
                out["silence"].append(error_ms)
            continue
        out["phone"].append(error_ms)
        if right in BILABIALS:
            out["bilabial_onset"].append(error_ms)
    return out


def summarize(errors_ms: list[float]) -> dict[str, Any]:
    """n, median and 95th percentile of |error| (numpy's linear interpolation), mean signed error."""
    if not errors_ms:
        return {"n_boundaries": 0, "median_ms": None, "p95_ms": None, "mean_signed_ms": None}
    e = np.asarray(errors_ms, dtype=np.float64)
    return {"n_boundaries": int(len(e)),
            "median_ms": round(float(np.median(np.abs(e))), 2),
            "p95_ms": round(float(np.percentile(np.abs(e), 95)), 2),
            "mean_signed_ms": round(float(np.mean(e)), 2)}


def _check_one(job: tuple[str, str, str, str, str]) -> dict[str, Any]:
    """Worker: align one utterance -> {'id', 'errors': {group: [...]}} or {'id', 'error': why}."""
    utt_id, audio_path, phones_path, text, source = job
    from distilface.audio import AudioError, load_audio
    from distilface.corpus.align import AlignmentError, align_phones
    from distilface.corpus.ingest import RECIPE_LEXICONS
    from distilface.phones import read_phones

    try:
        ref = read_phones(phones_path)
        hyp = align_phones(load_audio(audio_path), text, RECIPE_LEXICONS.get(source))
    except (AlignmentError, AudioError, ValueError, OSError) as e:
        return {"id": utt_id, "error": f"{type(e).__name__}: {e}"}
    return {"id": utt_id, "errors": boundary_errors(ref, hyp)}


def _sample(utterances: list, per_source: int, seed: int) -> dict[str, list]:
    """Up to `per_source` utterances per source, clean (augmentation None) ones first."""
    by_source: dict[str, list] = defaultdict(list)
    for u in utterances:
        if u.phones and u.text.strip():
            by_source[u.source].append(u)
    chosen = {}
    for source in sorted(by_source):
        rng = random.Random(f"{seed}:{source}")
        clean = sorted((u for u in by_source[source] if u.augmentation is None), key=lambda u: u.id)
        other = sorted((u for u in by_source[source] if u.augmentation is not None),
                       key=lambda u: u.id)
        rng.shuffle(clean)
        rng.shuffle(other)
        chosen[source] = (clean + other)[:per_source]
    return chosen


def check_corpus(manifest_path: str | Path, per_source: int = 30, seed: int = 0,
                 workers: int = 2) -> dict[str, Any]:
    """Measure the phone timings of a corpus against pocketsphinx forced alignment.

    Only English utterances with phones and text are checked (the aligner is en-us). Returns a
    JSON-able dict: {"manifest", "per_source", "seed", "target_median_ms", "sources": {source: {
    "n_utterances", "n_aligned", "n_failed", "failures": [{"id", "reason"}], "augmented_used",
    "phone"|"bilabial_onset"|"silence": {"n_boundaries", "median_ms", "p95_ms", "mean_signed_ms"},
    "pass"}}, "skipped_languages": {language: n}}.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from tqdm import tqdm

    from distilface.manifest import read_manifest, resolve

    manifest_path = Path(manifest_path)
    utterances = read_manifest(manifest_path)
    skipped: dict[str, int] = defaultdict(int)
    english = []
    for u in utterances:
        if u.language.split("-")[0].lower() == "en":
            english.append(u)
        else:
            skipped[u.language] += 1
    chosen = _sample(english, per_source, seed)
    jobs, job_source = [], {}
    for source, utts in chosen.items():
        for u in utts:
            jobs.append((u.id, str(resolve(manifest_path, u.audio)),
                         str(resolve(manifest_path, u.phones)), u.text, source))
            job_source[u.id] = source

    results: list[dict[str, Any]] = []
    progress = tqdm(total=len(jobs), desc="corpus check", unit="utt")
    if workers <= 1:
        for job in jobs:
            results.append(_check_one(job))
            progress.update()
    else:  # spawn: never fork a parent that may hold torch threads or a decoder
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for result in pool.map(_check_one, jobs, chunksize=4):
                results.append(result)
                progress.update()
    progress.close()

    sources: dict[str, Any] = {}
    for source, utts in chosen.items():
        mine = [r for r in results if job_source[r["id"]] == source]
        errors: dict[str, list[float]] = {g: [] for g in GROUPS}
        failures = []
        for r in mine:
            if "error" in r:
                failures.append({"id": r["id"], "reason": r["error"]})
            else:
                for g in GROUPS:
                    errors[g].extend(r["errors"][g])
        stats = {g: summarize(errors[g]) for g in GROUPS}
        median = stats["phone"]["median_ms"]
        sources[source] = {
            "n_utterances": len(utts),
            "n_aligned": len(mine) - len(failures),
            "n_failed": len(failures),
            "failures": failures,
            "augmented_used": sum(u.augmentation is not None for u in utts),
            **stats,
            "pass": median is not None and median <= TARGET_MEDIAN_MS,
        }
    return {"manifest": str(manifest_path), "per_source": per_source, "seed": seed,
            "target_median_ms": TARGET_MEDIAN_MS, "sources": sources,
            "skipped_languages": dict(skipped)}


def format_markdown(result: dict[str, Any]) -> str:
    """A short markdown report of `check_corpus`'s result: one table row per source."""
    lines = [
        "# Corpus timing check",
        "",
        f"Manifest: `{result['manifest']}`; up to {result['per_source']} utterances per source "
        f"(seed {result['seed']}); reference: pocketsphinx forced alignment (10 ms frames). "
        f"Errors are |aligner - manifest| boundary times; signed mean > 0: the aligner is later. "
        f"Target: median <= {result['target_median_ms']:g} ms on phone boundaries.",
        "",
        "| source | utts | failed | phone bnd | median ms | p95 ms | mean signed ms "
        "| /p b m/ bnd | median ms | p95 ms | sil bnd | median ms | p95 ms | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    for source, s in result["sources"].items():
        p, b, q = s["phone"], s["bilabial_onset"], s["silence"]
        lines.append("| " + " | ".join(cell(v) for v in (
            source, s["n_utterances"], s["n_failed"], p["n_boundaries"], p["median_ms"],
            p["p95_ms"], p["mean_signed_ms"], b["n_boundaries"], b["median_ms"], b["p95_ms"],
            q["n_boundaries"], q["median_ms"], q["p95_ms"])) + f" | {'yes' if s['pass'] else 'NO'} |")
    failures = [(src, f) for src, s in result["sources"].items() for f in s["failures"]]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {src} `{f['id']}`: {f['reason']}" for src, f in failures]
    if result.get("skipped_languages"):
        lines += ["", "Not checked (no aligner for the language): " + ", ".join(
            f"{lang}: {n}" for lang, n in sorted(result["skipped_languages"].items()))]
    return "\n".join(lines) + "\n"


def write_check_report(result: dict[str, Any], json_path: str | Path,
                       markdown_path: str | Path | None = None) -> None:
    """Write the result as JSON and (optionally) as markdown, atomically."""
    from distilface.fileio import atomic_write, write_json

    write_json(json_path, result)
    if markdown_path is not None:
        with atomic_write(markdown_path, "w") as f:
            f.write(format_markdown(result))
