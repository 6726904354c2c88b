"""`run_peers`: every installed peer on the evaluation test sets, scored like our models.

The test sets and their audio are exactly `distilface eval`'s (`evaluate.build_test_set`, the
same seeded sample for the same `max_utterances` and seed, the same augmentation seeds). Each
peer animates each utterance; its viseme output reaches the rig two ways (`peers.visemes`):
the blend (weights as morph targets) gives PBM accuracy, open-vowel accuracy and jitter, the
decision (the tool's one picked viseme per frame at full weight) gives PBM and open-vowel
accuracy of its closed / open choice. The teacher and the shipped default student are scored on
the same utterances as reference rows (their decision: the top viseme of `distilface.formats`'
Oculus export).

Speed: the tool's own processing time summed over the set, per second of audio (Node drivers
time their processing loop inside Node; start-up and file writing are not counted). Everything
runs on one CPU thread. It is wall-clock time: on a busy machine it reads high.

Outputs in `out_dir`: `peers.json` (everything) and `peers.md` (the table and what each peer got).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.curves import Curves, num_frames
from distilface.evaluate import TEST_SETS, SkipSet, _augment_seed, _jsonable, _one_thread, build_test_set
from distilface.fileio import atomic_write, write_json
from distilface.manifest import resolve
from distilface.metrics import CLOSED_GAP_MM, OPEN_GAP_MM, LipSyncScores, score_curves
from distilface.peers.base import Peer, PeerInput
from distilface.peers.visemes import (VisemeTrack, blend_curves, decisions_from_curves, one_hot, pose_gaps_mm,
                                      track_curves)
from distilface.phones import PhoneSegment, read_phones

log = logging.getLogger(__name__)

PEERS_VERSION = 1
TEACHER = "teacher"


def all_peers() -> list[Peer]:
    """Every peer this package knows, in report order (installed or not)."""
    from distilface.peers.headaudio import README_DELAY_MS, HeadAudio
    from distilface.peers.openfacefx import OpenFaceFXEnergy, OpenFaceFXNaive
    from distilface.peers.pylipsync import PyLipSync
    from distilface.peers.wawa import Wawa

    return [PyLipSync(), HeadAudio(), HeadAudio(audio_delay_ms=README_DELAY_MS), Wawa(), OpenFaceFXEnergy(),
            OpenFaceFXNaive()]


class _Tally:
    def __init__(self) -> None:
        self.blend = LipSyncScores()
        self.decision = LipSyncScores()
        self.frames = 0
        self.utterances = 0
        self.process_s = 0.0
        self.audio_s = 0.0

    def add(self, blend: Curves, decided: Curves, phones: list[PhoneSegment], rig, process_s: float,
            audio_s: float) -> None:
        self.blend.add(score_curves(blend, phones, rig))
        self.decision.add(score_curves(decided, phones, rig))
        self.frames += blend.num_frames
        self.utterances += 1
        self.process_s += process_s
        self.audio_s += audio_s

    def summary(self) -> dict[str, Any]:
        return {"utterances": self.utterances, "frames": self.frames, **self.blend.summary(),
                "pbm_accuracy_decision": self.decision.pbm_accuracy,
                "open_vowel_accuracy_decision": self.decision.open_vowel_accuracy,
                "cpu_ms_per_audio_s": 1000.0 * self.process_s / self.audio_s if self.audio_s else None}


def _prepare(ts, seed: int, progress: bool) -> tuple[list[dict], list[str]]:
    """Each utterance's degraded audio (what the models hear), clean audio (the teacher's) and phones."""
    from distilface.corpus.augment import apply_chain

    prepared, failures = [], []
    for u in tqdm(ts.utterances, desc=f"load {ts.name}", unit="utt", disable=not progress):
        try:
            clean = load_audio(resolve(ts.manifest, u.audio))
            phones = read_phones(resolve(ts.manifest, u.phones))
            audio = clean
            if ts.chain:  # as evaluate: timings are kept, the clean phones describe the degraded audio
                audio, _ = apply_chain(clean, phones, ts.chain, seed=_augment_seed(seed, ts.name, u.id))
        except Exception as e:  # one bad file or a missing optional dependency
            failures.append(f"{u.id}: {type(e).__name__}: {e}")
            log.warning("%s: %s", ts.name, failures[-1])
            continue
        prepared.append({"id": u.id, "audio": np.asarray(audio, dtype=np.float32), "clean": clean,
                         "phones": phones, "text": u.text, "language": u.language})
    return prepared, failures


def _score_peer(peer: Peer, prepared: list[dict], fps: float, rig) -> dict[str, Any]:
    tracks: list[VisemeTrack] = peer.run([PeerInput(p["audio"], p["text"], p["language"]) for p in prepared])
    if len(tracks) != len(prepared):
        raise RuntimeError(f"{peer.name}: {len(tracks)} tracks for {len(prepared)} utterances")
    tally = _Tally()
    for p, track in zip(prepared, tracks):
        audio_s = len(p["audio"]) / SAMPLE_RATE_HZ
        blend, decided = track_curves(track, fps, num_frames(audio_s, fps))
        tally.add(blend, decided, p["phones"], rig, track.process_s, audio_s)
    return tally.summary()


def _references(fps: float) -> dict[str, Any]:
    """name -> callable(prepared utterance) -> (Curves, seconds): the teacher and the default student."""
    from distilface.teacher import build_teacher

    teacher = build_teacher("aligned")

    def run_teacher(p):
        t0 = time.perf_counter()
        curves = teacher.animate(p["clean"], fps, phones=p["phones"], text=p["text"] or None, utterance_id=p["id"])
        return curves, time.perf_counter() - t0

    refs = {TEACHER: run_teacher}
    from distilface.models import registry, resolve_model

    name = registry().get("default")
    if name is None:
        return refs
    from distilface.animate import animate_audio
    from distilface.checkpoint import load_student

    model, _ = load_student(resolve_model(name))

    def run_student(p):
        with _one_thread():
            t0 = time.perf_counter()
            curves = animate_audio(model, p["audio"], fps)
            return curves, time.perf_counter() - t0

    refs[name] = run_student
    return refs


def _score_reference(run, prepared: list[dict], fps: float, rig) -> dict[str, Any]:
    tally = _Tally()
    for p in prepared:
        curves, seconds = run(p)
        decided = blend_curves(one_hot(decisions_from_curves(curves)), fps)
        tally.add(curves, decided, p["phones"], rig, seconds, len(p["audio"]) / SAMPLE_RATE_HZ)
    return tally.summary()


def run_peers(out_dir: str | Path, test_sets: tuple[str, ...] | list[str] = TEST_SETS, max_utterances: int = 50,
              seed: int = 0, *, peers: list[str] | None = None, fps: float = 30.0,
              corpus: str | Path = "runs/corpus-20h/manifest.jsonl",
              real: str | Path = "runs/asterisk-en/manifest.jsonl", cache_dir: str | Path | None = None,
              references: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run every installed peer (or those named in `peers`) on the test sets; write the report.

    Test sets, sampling (`max_utterances` per set, `seed`), `corpus`, `real` and `cache_dir`
    (default `<out_dir>/../eval-cache`) mean what they mean for `distilface.evaluate.evaluate`.
    `references`: also score the aligned teacher and the shipped default student on the same
    utterances. A peer that is not installed, a test set that cannot be built, or a peer that
    fails on a set is reported as skipped with its reason. Returns the report also written to
    `out_dir/peers.json` (and `peers.md`). Raises ValueError for unknown sets or peer names.
    """
    from distilface.rig.mesh import load_rig

    unknown = [s for s in test_sets if s not in TEST_SETS]
    if unknown:
        raise ValueError(f"unknown test sets {unknown} (available: {', '.join(TEST_SETS)})")
    if max_utterances < 1 or not fps > 0:
        raise ValueError("run_peers: max_utterances must be >= 1 and fps > 0")
    known = all_peers()
    if peers is not None:
        names = {p.name for p in known}
        bad = [n for n in peers if n not in names]
        if bad:
            raise ValueError(f"unknown peers {bad} (known: {', '.join(sorted(names))})")
        known = [p for p in known if p.name in peers]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / "eval-cache"
    rig = load_rig()

    peer_info: dict[str, Any] = {}
    runnable: list[Peer] = []
    for peer in known:
        reason = peer.unavailable()
        info = {"package": peer.package, "inputs": peer.inputs, "timing": peer.timing,
                "languages": list(peer.languages) if peer.languages else None}
        if reason:
            log.warning("peer %s skipped: %s", peer.name, reason)
            peer_info[peer.name] = {"status": "skipped", "reason": reason, **info}
        else:
            peer_info[peer.name] = {"status": "ok", "version": peer.version(), **info}
            runnable.append(peer)
    refs = _references(fps) if references else {}

    sets: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for set_name in test_sets:
        try:
            ts = build_test_set(set_name, corpus=Path(corpus), real=Path(real), cache_dir=cache,
                                max_utterances=max_utterances, seed=seed)
            prepared, failures = _prepare(ts, seed, progress)
            if not prepared:
                raise SkipSet(f"no utterance could be prepared ({len(failures)} failed)")
        except SkipSet as e:
            log.warning("test set %s skipped: %s", set_name, e)
            sets[set_name] = {"status": "skipped", "reason": str(e)}
            continue
        languages = sorted({p["language"] for p in prepared})
        sets[set_name] = {"status": "ok", "description": ts.description, "manifest": str(ts.manifest),
                          "utterances": len(prepared), "failed_utterances": failures, "augmentation": ts.chain,
                          "languages": languages, "audio_s": sum(len(p["audio"]) for p in prepared) / SAMPLE_RATE_HZ,
                          "skipped_peers": {}}
        for name, run in tqdm(refs.items(), desc=f"references {set_name}", disable=not progress):
            rows.append({"model": name, "kind": "reference", "test_set": set_name,
                         **_score_reference(run, prepared, fps, rig)})
        for peer in tqdm(runnable, desc=f"peers {set_name}", disable=not progress):
            if peer.languages and any(lang not in peer.languages for lang in languages):
                sets[set_name]["skipped_peers"][peer.name] = f"animates {', '.join(peer.languages)} only"
                continue
            try:
                rows.append({"model": peer.name, "kind": "peer", "test_set": set_name,
                             **_score_peer(peer, prepared, fps, rig)})
            except Exception as e:  # a tool failure skips this peer on this set only
                log.warning("peer %s failed on %s: %s: %s", peer.name, set_name, type(e).__name__, e)
                sets[set_name]["skipped_peers"][peer.name] = f"failed: {type(e).__name__}: {e}"

    gaps = pose_gaps_mm(rig)
    report = _jsonable({
        "version": PEERS_VERSION, "fps": fps, "seed": seed, "max_utterances": max_utterances,
        "mapping": {"pose_gap_mm": gaps,
                    "closed_visemes": [v for v, g in gaps.items() if g < CLOSED_GAP_MM],
                    "open_visemes": [v for v, g in gaps.items() if g > OPEN_GAP_MM]},
        "peers": peer_info, "references": list(refs), "test_sets": sets, "rows": rows})
    write_json(out / "peers.json", report)
    with atomic_write(out / "peers.md", "w") as f:
        f.write(format_markdown(report))
    return report


# -- report ---------------------------------------------------------------------------------------

COLUMNS = ("model", "test set", "utts", "PBM (blend)", "open-vowel (blend)", "jitter (mm/frame², {fps:g} fps)",
           "PBM (decision)", "open-vowel (decision)", "CPU ms per s of audio")


def _fmt(v: Any, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f} %"
    return f"{v:{kind}}"


def format_markdown(report: dict[str, Any]) -> str:
    fps = report["fps"]
    lines = [f"# Peers side by side ({fps:g} fps, up to {report['max_utterances']} utterances per set, "
             f"seed {report['seed']})", "",
             "| " + " | ".join(c.format(fps=fps) for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in report["rows"]:
        cells = [r["model"] + (" (reference)" if r["kind"] == "reference" else ""), r["test_set"],
                 str(r["utterances"]), _fmt(r["pbm_accuracy"], "pct"), _fmt(r["open_vowel_accuracy"], "pct"),
                 _fmt(r["jitter_mm_per_frame2"], ".3f"), _fmt(r["pbm_accuracy_decision"], "pct"),
                 _fmt(r["open_vowel_accuracy_decision"], "pct"), _fmt(r["cpu_ms_per_audio_s"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    m = report["mapping"]
    lines += ["", "Blend: the tool's viseme weights played as morph targets whose poses are the aligned "
              "teacher's viseme poses on our ARKit rig; decision: the one viseme the tool picked per frame, "
              f"at full weight (closed lips: {', '.join(m['closed_visemes'])}; open: "
              f"{', '.join(m['open_visemes'])}). CPU: one thread, the tool's own processing time.", "",
              "Peers:", ""]
    for name, p in report["peers"].items():
        if p["status"] == "ok":
            lines.append(f"- {name}: {p['package']} {p['version']}; input: {p['inputs']}; frames: {p['timing']}")
        else:
            lines.append(f"- {name}: {p['package']}: skipped: {p['reason']}")
    lines += ["", "Test sets:", ""]
    for name, ts in report["test_sets"].items():
        if ts["status"] != "ok":
            lines.append(f"- {name}: skipped: {ts['reason']}")
            continue
        failed = f"; {len(ts['failed_utterances'])} utterances failed" if ts["failed_utterances"] else ""
        lines.append(f"- {name}: {ts['description']} ({ts['utterances']} utterances, {ts['audio_s']:.0f} s{failed})")
        for peer, reason in ts["skipped_peers"].items():
            lines.append(f"  - {peer} skipped: {reason}")
    return "\n".join(lines) + "\n"
