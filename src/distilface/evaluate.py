"""Evaluate students (and the teacher) on held-out test sets against the aligned teacher.

For every model x test set: MSE against the teacher's curves, PBM accuracy (absolute and as a
share of the teacher's on the same set), open-vowel accuracy, jitter and its ratio to the
teacher's, and per model its size and CPU cost. Reference curves always come from the aligned
teacher on the clean phone timings: the degraded sets (noise, reverb, telephone) keep the timings
exactly (see `corpus/augment.py`), so on them the teacher row equals its clean labels and a
student is scored on how much of the clean animation it still recovers from the degraded audio.

Test sets (`TEST_SETS`):

    clean       synthetic test split (held-out voices), clean utterances, a seeded sample
    noisy10     the same utterances through EVAL_PRESETS["noisy10"] (room + pink noise, 10 dB SNR)
    noisy0      ... EVAL_PRESETS["noisy0"] (0 dB SNR)
    telephone   ... EVAL_PRESETS["telephone"] (8 kHz band, mu-law)
    real        the forced-aligned real speech test split (asterisk-en)
    de, es      small synthetic corpora in other languages, synthesised on first use into a cache
                folder (all splits: these voices are never in the English training data)

A test set that cannot be built (corpus missing, no test utterances, synthesis failed, an optional
dependency missing) is reported as skipped with its reason; it does not stop the others.

Outputs in `out_dir`: `eval.json` (everything), `eval.md` (one table row per model and test set)
and `plots/<model>-<set>.png` (lip trajectory, model vs teacher, on the first utterance of the set
that has a /p b m/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from distilface.audio import MAX_WHOLE_FILE_S, SAMPLE_RATE_HZ, load_audio
from distilface.curves import Curves
from distilface.fileio import atomic_write, write_json
# At import time, not lazily: a run that imports it hours later can meet a newer source tree
# (a paper-table scoring run did, and fell back to a different memory figure under the same column).
from distilface.info import MB, model_info, shared_macs_per_frame
from distilface.manifest import Utterance, read_manifest, resolve
from distilface.metrics import LipSyncScores, curve_mse, score_curves
from distilface.phones import BILABIALS, PhoneSegment, read_phones
from distilface.student import Student, count_parameters, frame_starts

log = logging.getLogger(__name__)

EVAL_VERSION = 1
TEST_SETS = ("clean", "noisy10", "noisy0", "telephone", "real", "de", "es")
DEGRADED_SETS = ("noisy10", "noisy0", "telephone")  # the clean utterances through EVAL_PRESETS
OTHER_LANGUAGES = ("de", "es")
OTHER_LANGUAGE_HOURS = 0.05  # per language: ~3 min, ~40 utterances from 4 espeak-ng voices
TEACHER = "teacher"  # display name used in plots for the reference curves

# CPU timing (one thread): per-window runs after warm-up, and the shared-encoder offline pass.
TIMING_WARMUP_RUNS = 5
OFFLINE_TIMING_S = 4.0  # audio length of the offline (forward_frames) timing
OFFLINE_TIMING_RUNS = 5


# -- test sets ----------------------------------------------------------------------------------

@dataclass
class TestSet:
    name: str
    manifest: Path
    utterances: list[Utterance]
    chain: list[dict] = field(default_factory=list)  # augmentation applied to the clean audio
    description: str = ""


class SkipSet(Exception):
    """A test set that cannot be evaluated here; the message is the reason."""


def _sample(utts: list[Utterance], n: int, seed: int, key: str) -> list[Utterance]:
    """Deterministic sample of at most n utterances (sorted by id), independent of manifest order."""
    utts = sorted(utts, key=lambda u: u.id)
    if len(utts) > n:
        utts = sorted(random.Random(f"{seed}:{key}").sample(utts, n), key=lambda u: u.id)
    return utts


def _read(manifest: Path) -> list[Utterance]:
    if not manifest.exists():
        raise SkipSet(f"{manifest}: not found")
    return [u for u in read_manifest(manifest) if u.phones]


def _synthetic_test(corpus: Path, max_utterances: int, seed: int) -> list[Utterance]:
    utts = [u for u in _read(corpus) if u.split == "test" and not u.augmentation]
    if not utts:
        raise SkipSet(f"{corpus}: no clean test-split utterances with phone timings")
    return _sample(utts, max_utterances, seed, "synthetic-test")


def _other_language(lang: str, cache_dir: Path, max_utterances: int, seed: int) -> TestSet:
    from distilface.corpus.synth import SynthConfig, synth_corpus

    cfg = SynthConfig(hours=OTHER_LANGUAGE_HOURS, languages=(lang,), augment_fraction=0.0)
    try:
        # workers=1: no fork of a process that already runs torch; resumes/skips a finished cache
        manifest = synth_corpus(cfg, cache_dir / f"synth-{lang}", workers=1)
    except Exception as e:  # missing voices or text, engine failure: skip this set only
        raise SkipSet(f"synthesis of the {lang} test set failed: {type(e).__name__}: {e}") from None
    utts = _read(manifest)
    if not utts:
        raise SkipSet(f"{manifest}: no utterances with phone timings")
    return TestSet(lang, manifest, _sample(utts, max_utterances, seed, f"synth-{lang}"),
                   description=f"synthetic {lang}, {len({u.voice for u in utts})} voices, all splits")


def build_test_set(name: str, *, corpus: Path, real: Path, cache_dir: Path, max_utterances: int,
                   seed: int) -> TestSet:
    """Raises SkipSet with the reason when the set cannot be built here."""
    from distilface.corpus.augment import EVAL_PRESETS

    if name == "clean" or name in DEGRADED_SETS:
        utts = _synthetic_test(corpus, max_utterances, seed)
        return TestSet(name, corpus, utts, chain=list(EVAL_PRESETS[name]),
                       description=f"synthetic test split, {len({u.voice for u in utts})} held-out voices, "
                                   + ("clean" if name == "clean" else f"EVAL_PRESETS[{name!r}]"))
    if name == "real":
        utts = [u for u in _read(real) if u.split == "test"]
        if not utts:
            raise SkipSet(f"{real}: no test-split utterances with phone timings")
        return TestSet(name, real, _sample(utts, max_utterances, seed, "real"),
                       description="real speech, test split, forced-aligned")
    if name in OTHER_LANGUAGES:
        return _other_language(name, cache_dir, max_utterances, seed)
    raise ValueError(f"unknown test set {name!r} (available: {', '.join(TEST_SETS)})")


def _augment_seed(seed: int, set_name: str, utt_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{set_name}:{utt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**31


# -- models -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Timing runs on one CPU thread; the caller's thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _external_info(model: Student, fps: float) -> dict[str, Any] | None:
    """`distilface.info.model_info` (MACs, memory, measured context) with the shared-encoder MACs
    per frame at `fps` added; None (and a warning) when it fails on this model."""
    try:
        info = dict(model_info(model))
        if "smoothing_weights" in info:  # k separate evaluations per frame, each shared as a student's
            k = sum(1 for w in info["smoothing_weights"] if w)
            info["macs_per_frame_shared"] = k * shared_macs_per_frame(model.student, fps)
        else:
            info["macs_per_frame_shared"] = shared_macs_per_frame(model, fps)
    except Exception as e:  # report it, do not fail the evaluation
        log.warning("distilface.info failed: %s: %s", type(e).__name__, e)
        return None
    return _jsonable(info)


def measured_context_ms(model: Student) -> tuple[float, float]:
    """(past_ms, future_ms) of audio that actually influences a frame, from input gradients.

    Frame time is sample `past_samples` of the window. Valid convolutions leave the last few
    samples of a window unused, so the measured future is slightly below `cfg.future_ms`."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    window = (0.1 * torch.randn(1, cfg.window_samples, generator=gen)).requires_grad_(True)
    with torch.enable_grad():
        model(window).sum().backward()
    used = torch.nonzero(window.grad[0] != 0).squeeze(1)
    if not len(used):
        return float("nan"), float("nan")
    ms_per_sample = 1000.0 / SAMPLE_RATE_HZ
    return ((cfg.past_samples - int(used[0])) * ms_per_sample,
            (int(used[-1]) + 1 - cfg.past_samples) * ms_per_sample)


@torch.inference_mode()
def time_student(model: Student, fps: float, runs: int = 50) -> dict[str, float]:
    """CPU ms per frame on one thread: per-window (one window per call, median of `runs` after
    warm-up) and offline (shared encoder over `OFFLINE_TIMING_S` of audio, `forward_frames`)."""
    gen = torch.Generator().manual_seed(0)
    window = 0.1 * torch.randn(1, model.cfg.window_samples, generator=gen)
    audio = 0.1 * torch.randn(round(OFFLINE_TIMING_S * SAMPLE_RATE_HZ), generator=gen)
    n_frames = max(1, round(OFFLINE_TIMING_S * fps))
    starts = frame_starts(n_frames, fps, model.cfg)
    with _one_thread():
        for _ in range(TIMING_WARMUP_RUNS):
            model(window)
        per_window = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(window)
            per_window.append(time.perf_counter() - t0)
        model.forward_frames(audio, starts)
        offline = []
        for _ in range(OFFLINE_TIMING_RUNS):
            t0 = time.perf_counter()
            model.forward_frames(audio, starts)
            offline.append(time.perf_counter() - t0)
    return {"cpu_ms_per_frame_window": 1000.0 * statistics.median(per_window),
            "cpu_ms_per_frame_offline": 1000.0 * statistics.median(offline) / n_frames,
            "timing_runs": runs}


def describe_student(model: Student, fps: float, timing_runs: int) -> dict[str, Any]:
    """Size, cost and context of a student. MACs and memory (params + all intermediates of one
    window) come from `distilface.info`; when it fails they are None, never another quantity
    under the same name."""
    info = _external_info(model, fps)
    past_ms, future_ms = measured_context_ms(model)
    weight_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    memory_bytes = info["memory_mb"] * MB if info else None
    if info:
        future_ms = info["future_ms_measured"]
    return {"parameters": count_parameters(model),
            "macs_per_frame": info["macs_per_frame_windowed"] if info else None,
            "macs_per_frame_shared": info["macs_per_frame_shared"] if info else None,
            "memory_bytes": memory_bytes, "weights_bytes": weight_bytes,
            "future_ms": future_ms, "past_ms": past_ms, "future_ms_config": model.cfg.future_ms,
            "window_ms": model.cfg.window_ms, "channels": model.cfg.channels,
            **time_student(model, fps, timing_runs), "info": info}


def _load_models(models: dict[str, Any], frame_grid: int | None = None) -> dict[str, Student | None]:
    """name -> None (the teacher), a checkpoint path, or (path, smoothing weights); students on
    `frame_grid` (`distilface.student.on_frame_grid`)."""
    from distilface.checkpoint import load_student
    from distilface.smoothing import EnsembleSmoothed
    from distilface.student import on_frame_grid

    if not models:
        raise ValueError("evaluate: no models given")
    loaded: dict[str, Student | None] = {}
    for name, spec in models.items():
        if spec is None:
            loaded[name] = None
        elif isinstance(spec, (tuple, list)):
            loaded[name] = EnsembleSmoothed(on_frame_grid(load_student(spec[0])[0], frame_grid), tuple(spec[1]))
        else:
            loaded[name] = on_frame_grid(load_student(spec)[0], frame_grid)
    return loaded


# -- scoring --------------------------------------------------------------------------------------

@dataclass
class _Tally:
    scores: LipSyncScores = field(default_factory=LipSyncScores)
    se_sum: float = 0.0  # squared error summed over utterances, each weighted by its frames
    frames: int = 0
    utterances: int = 0

    def add(self, curves: Curves, reference: Curves, phones: list[PhoneSegment], rig) -> None:
        n = min(curves.num_frames, reference.num_frames)
        self.se_sum += curve_mse(curves, reference) * n
        self.frames += n
        self.utterances += 1
        self.scores.add(score_curves(curves, phones, rig))

    @property
    def mse(self) -> float:
        return self.se_sum / self.frames if self.frames else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def _has_bilabial(phones: list[PhoneSegment]) -> bool:
    return any(s.phone in BILABIALS for s in phones)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _evaluate_set(ts: TestSet, students: dict[str, Student | None], teacher, fps: float, seed: int,
                  plots_dir: Path, reference_cache: dict[str, tuple[Curves, float]], rig,
                  progress: bool) -> dict[str, Any]:
    from distilface.corpus.augment import apply_chain
    from distilface.rig.render import plot_lip_trajectory

    tallies = {name: _Tally() for name in students}
    ref_tally = _Tally()  # the teacher's own scores, the denominators of the "of teacher" ratios
    teacher_s = teacher_frames = 0.0
    failures: list[str] = []
    plot_utt: str | None = None
    for u in tqdm(ts.utterances, desc=f"eval {ts.name}", unit="utt", disable=not progress):
        try:
            # conditioned as `animate` feeds a student (a no-op on our corpora: no DC offset over 0.0025)
            audio = load_audio(resolve(ts.manifest, u.audio), max_s=MAX_WHOLE_FILE_S, conditioned=True)
            phones = read_phones(resolve(ts.manifest, u.phones))
            if ts.chain:  # timings are kept: the clean phones still describe the degraded audio
                audio, _ = apply_chain(audio, phones, ts.chain, seed=_augment_seed(seed, ts.name, u.id))
        except Exception as e:  # one bad file or a missing optional dependency
            failures.append(f"{u.id}: {type(e).__name__}: {e}")
            log.warning("%s: %s", ts.name, failures[-1])
            continue
        key = f"{ts.manifest}:{u.id}"
        if key not in reference_cache:
            t0 = time.perf_counter()
            ref = teacher.animate(load_audio(resolve(ts.manifest, u.audio)) if ts.chain else audio, fps,
                                  phones=phones, text=u.text or None, utterance_id=u.id)
            reference_cache[key] = (ref, time.perf_counter() - t0)
        reference, animate_s = reference_cache[key]
        teacher_s += animate_s
        teacher_frames += reference.num_frames
        ref_tally.add(reference, reference, phones, rig)
        by_label = {}
        audio_t = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        for name, model in students.items():
            if model is None:
                curves = reference
            else:
                with torch.inference_mode():
                    starts = frame_starts(reference.num_frames, fps, model.cfg)
                    curves = Curves(fps, model.cfg.names, model.forward_frames(audio_t, starts).numpy())
            tallies[name].add(curves, reference, phones, rig)
            by_label[name] = curves
        if plot_utt is None and _has_bilabial(phones):
            plot_utt = u.id
            for name, curves in by_label.items():
                labels = {TEACHER: reference} if students[name] is None else {TEACHER: reference, name: curves}
                plot_lip_trajectory(labels, phones, plots_dir / f"{_slug(name)}-{ts.name}.png",
                                    title=f"{name}, {ts.name}: {u.id}", rig=rig)
    ok = next(iter(tallies.values())).utterances
    if not ok:
        raise SkipSet(f"no utterance could be prepared ({len(failures)} failed; first: {failures[0]})"
                      if failures else "no utterances")
    teacher_scores = ref_tally.scores
    results = {}
    for name, t in tallies.items():
        s = t.scores
        results[name] = {
            "utterances": t.utterances, "frames": t.frames, "mse": t.mse,
            **s.summary(),
            "pbm_of_teacher": _ratio(s.pbm_accuracy, teacher_scores.pbm_accuracy),
            "open_vowel_of_teacher": _ratio(s.open_vowel_accuracy, teacher_scores.open_vowel_accuracy),
            "jitter_ratio": _ratio(s.jitter, teacher_scores.jitter),
        }
    return {"status": "ok", "description": ts.description, "manifest": str(ts.manifest),
            "utterances": ok, "failed_utterances": failures, "augmentation": ts.chain,
            "plot_utterance": plot_utt,
            "teacher_cpu_ms_per_frame_offline": 1000.0 * teacher_s / teacher_frames if teacher_frames else None,
            "results": results}


# -- report ---------------------------------------------------------------------------------------

COLUMNS = ("model", "test set", "utts", "MSE vs teacher", "PBM", "PBM % of teacher", "open-vowel",
           "jitter (mm/frame², {fps:g} fps)", "jitter / teacher", "params", "MACs/frame (window)",
           "MACs/frame (shared)", "memory (MB)", "future (ms)", "CPU ms/frame (window, 1 thr)", "CPU ms/frame (offline)")


def _fmt(v: Any, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f} %"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "mega":
        return f"{v / 1e6:.2f} M"
    if kind == "mb":
        return f"{v / 1e6:.2f}"
    if kind == "mse":
        return f"{v:.3g}" if v else "0"
    return f"{v:{kind}}"


def format_markdown(report: dict[str, Any]) -> str:
    fps = report["fps"]
    lines = [f"# Evaluation ({report['teacher']['id']} reference, {fps:g} fps)", "",
             "| " + " | ".join(c.format(fps=fps) for c in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in report["rows"]:
        cells = [r["model"], r["test_set"], _fmt(r["utterances"], "int"), _fmt(r["mse"], "mse"),
                 _fmt(r["pbm_accuracy"], "pct"), _fmt(r["pbm_of_teacher"], "pct"),
                 _fmt(r["open_vowel_accuracy"], "pct"), _fmt(r["jitter_mm_per_frame2"], ".3f"),
                 _fmt(r["jitter_ratio"], ".2f"), _fmt(r["parameters"], "int"), _fmt(r["macs_per_frame"], "mega"),
                 _fmt(r["macs_per_frame_shared"], "mega"), _fmt(r["memory_bytes"], "mb"), _fmt(r["future_ms"], ".1f"),
                 _fmt(r["cpu_ms_per_frame_window"], ".2f"), _fmt(r["cpu_ms_per_frame_offline"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The teacher uses the whole utterance and exact phone timings (no future-context or "
              "per-window figures); its offline CPU cost is the time of `animate` per frame. Future "
              "context is measured from input gradients. On degraded sets the reference is the teacher "
              "on the clean timings, so the teacher row repeats its clean scores.", ""]
    for name, ts in report["test_sets"].items():
        if ts["status"] == "ok":
            failed = f"; {len(ts['failed_utterances'])} utterances failed" if ts["failed_utterances"] else ""
            lines.append(f"- {name}: {ts['description']} ({ts['utterances']} utterances{failed})")
        else:
            lines.append(f"- {name}: skipped: {ts['reason']}")
    return "\n".join(lines) + "\n"


# -- entry point ----------------------------------------------------------------------------------

def evaluate(models: dict[str, Any], out_dir: str | Path,
             test_sets: tuple[str, ...] | list[str] = TEST_SETS, max_utterances: int = 200, fps: float = 30.0,
             seed: int = 0, corpus: str | Path = "runs/corpus-20h/manifest.jsonl",
             real: str | Path = "runs/asterisk-en/manifest.jsonl", *, cache_dir: str | Path | None = None,
             timing_runs: int = 50, progress: bool = True,
             smooth: tuple[float, float, float] | None = None, frame_grid: int | None = None) -> dict[str, Any]:
    """Score every model on every test set against the aligned teacher; write the report.

    models: display name -> student checkpoint path, (path, smoothing weights), or None for the
    teacher itself.
    smooth: ensemble-smoothing weights; each student is then also scored smoothed, as
    "<name> smoothed" (`distilface.smoothing`).
    frame_grid: students' frame times on a grid of this many samples (None: their own).
    cache_dir: where the de/es test corpora are synthesised (default: `<out_dir>/../eval-cache`).
    Returns the report that is also written to `out_dir/eval.json` (with `eval.md` and `plots/`).
    Raises ValueError/FileNotFoundError for bad models or an unknown test-set name; a test set
    that cannot be built here is skipped with its reason in the report.
    """
    from distilface.rig.mesh import load_rig
    from distilface.teacher import build_teacher

    unknown = [s for s in test_sets if s not in TEST_SETS]
    if unknown:
        raise ValueError(f"unknown test sets {unknown} (available: {', '.join(TEST_SETS)})")
    if max_utterances < 1 or not fps > 0 or timing_runs < 1:
        raise ValueError("evaluate: max_utterances and timing_runs must be >= 1 and fps > 0")
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / "eval-cache"
    students = _load_models(models, frame_grid)
    if smooth is not None:
        from distilface.smoothing import EnsembleSmoothed

        for name in [n for n, m in students.items() if m is not None]:
            students[f"{name} smoothed"] = EnsembleSmoothed(students[name], smooth)
            models = {**models, f"{name} smoothed": models[name]}
    teacher = build_teacher("aligned")
    rig = load_rig()

    model_info: dict[str, Any] = {}
    for name, model in students.items():
        if model is None:
            model_info[name] = {"checkpoint": None, "teacher_id": teacher.id, "parameters": None,
                                "macs_per_frame": None, "macs_per_frame_shared": None,
                                "memory_bytes": None, "weights_bytes": None, "future_ms": None,
                                "cpu_ms_per_frame_window": None, "cpu_ms_per_frame_offline": None}
        else:
            log.info("timing %s", name)
            spec = models[name]
            path = spec[0] if isinstance(spec, (tuple, list)) else spec
            model_info[name] = {"checkpoint": str(path), **describe_student(model, fps, timing_runs)}
            if hasattr(model, "weights"):
                model_info[name]["smoothing_weights"] = list(model.weights)

    reference_cache: dict[str, tuple[Curves, float]] = {}
    sets: dict[str, Any] = {}
    for name in test_sets:
        try:
            ts = build_test_set(name, corpus=Path(corpus), real=Path(real), cache_dir=cache,
                                max_utterances=max_utterances, seed=seed)
            sets[name] = _evaluate_set(ts, students, teacher, fps, seed, plots_dir, reference_cache, rig,
                                       progress)
        except SkipSet as e:
            log.warning("test set %s skipped: %s", name, e)
            sets[name] = {"status": "skipped", "reason": str(e)}

    rows = []
    for set_name, ts in sets.items():
        if ts["status"] != "ok":
            continue
        for model_name, res in ts["results"].items():
            info = dict(model_info[model_name])
            if info["checkpoint"] is None:
                info["cpu_ms_per_frame_offline"] = ts["teacher_cpu_ms_per_frame_offline"]
            rows.append({"model": model_name, "test_set": set_name, **res,
                         **{k: info.get(k) for k in ("parameters", "macs_per_frame", "macs_per_frame_shared",
                                                     "memory_bytes", "future_ms",
                                                     "cpu_ms_per_frame_window", "cpu_ms_per_frame_offline")}})
    report = _jsonable({"version": EVAL_VERSION, "fps": fps, "seed": seed, "max_utterances": max_utterances,
                        "teacher": {"id": teacher.id, "config": teacher.config()},
                        "models": model_info, "test_sets": sets, "rows": rows})
    write_json(out / "eval.json", report)
    with atomic_write(out / "eval.md", "w") as f:
        f.write(format_markdown(report))
    return report
