"""`distilface experiment paper-table`: every row of the paper's Table 2, trained and scored here.

Rows (paper Table 2): the teacher; the MFCC and frozen-front-end baselines without KD (trained only
on the small real set, labelled through forced alignment) and with KD (the pseudo-labelled corpus);
C0 (hetero, fine-tuned on real speech); C0/2 and C0/4 hetero and hybrid; 128 ms and 64 ms hetero
and hybrid (C0 width); C0/2 + 64 ms hetero and hybrid; the 64 ms hybrids also smoothed. Hybrid rows
learn from the fine-tuned C0 as second teacher (or, with `--teacher2`, from a given student, when
C0 cannot be trained far enough here). 64 ms rows use the paper's velocity weight 9.

Every row trains into `<out>/rows/<row>/` with `distilface.train` (resumable: run the same command
again after a kill; `--jobs N` trains N rows at once), then all rows are scored together by `distilface.evaluate` into `<out>/eval/`,
and `<out>/results.md` puts our table beside the paper's numbers, with figures of PBM vs memory and
PBM vs future context. `--scale smoke` builds a tiny corpus and trains a few steps per row: it checks
the machinery in minutes, its numbers mean nothing. `--scale full` uses the 20 h corpus.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distilface.fileio import atomic_write, read_json, read_jsonl, write_json
from distilface.smoothing import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)

C0_CHANNELS = 288

# Paper Table 2 (../shared/notes/paper.md): PBM % on LibriSpeech test-clean, test-other, in-house
# (and in-house as % of teacher), MSE, jitter, params, GFLOPs, MB, future ms, CPU ms.
PAPER_TABLE2: dict[str, dict[str, Any]] = {
    "teacher": dict(clean=96.9, other=92.0, inhouse=93.1, of_teacher=None, jitter=0.0444, params="967 M", mb=">4096", future="whole file"),
    "MFCC baseline, no KD": dict(clean=24.4, other=28.7, inhouse=49.0, of_teacher=52.6, jitter=0.0413, params="2 M", mb=12.3, future=256),
    "MFCC baseline, KD": dict(clean=72.4, other=56.7, inhouse=71.7, of_teacher=77.0, jitter=0.0429, params="2 M", mb=12.3, future=256),
    "frozen front end, no KD": dict(clean=22.8, other=26.7, inhouse=35.2, of_teacher=37.8, jitter=0.0341, params="7.2 M", mb=52.5, future=256),
    "frozen front end, KD": dict(clean=90.5, other=82.0, inhouse=88.3, of_teacher=94.8, jitter=0.0443, params="7.2 M", mb=52.5, future=256),
    "C0 (hetero, fine-tuned)": dict(clean=94.5, other=84.7, inhouse=92.4, of_teacher=99.3, jitter=0.0412, params="3 M", mb=21, future=256),
    "C0/2 hetero": dict(clean=88.2, other=74.7, inhouse=86.2, of_teacher=92.6, jitter=0.0399, params="0.8 M", mb=8, future=256),
    "C0/2 hybrid": dict(clean=89.8, other=82.7, inhouse=90.3, of_teacher=97.0, jitter=0.0441, params="0.8 M", mb=8, future=256),
    "C0/4 hetero": dict(clean=78.0, other=62.0, inhouse=75.9, of_teacher=81.5, jitter=0.0407, params="0.23 M", mb=3.4, future=256),
    "C0/4 hybrid": dict(clean=90.6, other=75.3, inhouse=87.6, of_teacher=94.1, jitter=0.0433, params="0.23 M", mb=3.4, future=256),
    "128 ms hetero": dict(clean=92.1, other=81.3, inhouse=86.9, of_teacher=93.3, jitter=0.0426, params="3 M", mb=21, future=128),
    "128 ms hybrid": dict(clean=92.1, other=86.0, inhouse=91.0, of_teacher=97.7, jitter=0.0480, params="3 M", mb=21, future=128),
    "64 ms hetero": dict(clean=81.1, other=60.7, inhouse=73.1, of_teacher=78.5, jitter=0.0472, params="3 M", mb=21, future=64),
    "64 ms hybrid": dict(clean=90.6, other=72.0, inhouse=82.1, of_teacher=88.2, jitter=0.0607, params="3 M", mb=21, future=64),
    "64 ms hybrid, smoothed": dict(clean=86.6, other=64.7, inhouse=75.9, of_teacher=81.5, jitter=0.0402, params="3 M", mb=42, future=81),
    "C0/2 + 64 ms hetero": dict(clean=76.4, other=54.0, inhouse=69.0, of_teacher=74.1, jitter=0.0462, params="0.8 M", mb=8, future=64),
    "C0/2 + 64 ms hybrid": dict(clean=89.8, other=67.3, inhouse=80.0, of_teacher=85.9, jitter=0.0617, params="0.8 M", mb=8, future=64),
    "C0/2 + 64 ms hybrid, smoothed": dict(clean=81.1, other=64.7, inhouse=74.5, of_teacher=80.0, jitter=0.0391, params="0.8 M", mb=16, future=81),
}
PAPER_TEACHER_JITTER = 0.0444


@dataclass(frozen=True)
class Row:
    name: str  # as in the paper's table
    arch: str = "conv"  # StudentConfig.arch
    divisor: int = 1  # channels = C0 / divisor
    future_ms: float = 256.0
    stage: str = "hetero"  # hetero | hybrid | teacher
    data: str = "kd"  # kd: the pseudo-labelled corpus | real: the real train split only
    finetune: bool = False  # then fine-tuned on the real train split
    smoothed_from: str | None = None  # evaluated smoothed, using that row's checkpoint

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


ROWS: tuple[Row, ...] = (
    Row("teacher", stage="teacher"),
    Row("MFCC baseline, no KD", arch="mfcc", data="real"),
    Row("MFCC baseline, KD", arch="mfcc"),
    Row("frozen front end, no KD", arch="whisper_conv", data="real"),
    Row("frozen front end, KD", arch="whisper_conv"),
    Row("C0 (hetero, fine-tuned)", finetune=True),
    Row("C0/2 hetero", divisor=2),
    Row("C0/2 hybrid", divisor=2, stage="hybrid"),
    Row("C0/4 hetero", divisor=4),
    Row("C0/4 hybrid", divisor=4, stage="hybrid"),
    Row("128 ms hetero", future_ms=128.0),
    Row("128 ms hybrid", future_ms=128.0, stage="hybrid"),
    Row("64 ms hetero", future_ms=64.0),
    Row("64 ms hybrid", future_ms=64.0, stage="hybrid"),
    Row("64 ms hybrid, smoothed", smoothed_from="64 ms hybrid"),
    Row("C0/2 + 64 ms hetero", divisor=2, future_ms=64.0),
    Row("C0/2 + 64 ms hybrid", divisor=2, future_ms=64.0, stage="hybrid"),
    Row("C0/2 + 64 ms hybrid, smoothed", smoothed_from="C0/2 + 64 ms hybrid"),
)
SECOND_TEACHER = "C0 (hetero, fine-tuned)"


@dataclass
class Scale:
    name: str
    corpus: str  # manifest of the pseudo-labelled corpus
    labels: str  # its 50 fps labels
    real: str  # manifest of the real set (train / val / test splits)
    real_labels: str
    steps: int  # per hetero / hybrid row
    finetune_steps: int
    c0_channels: int = C0_CHANNELS
    batch_chunks: int = 16
    chunk_frames: int = 32
    val_every: int = 500
    val_utterances: int = 100
    lr: float = 1e-3
    warmup_steps: int = 300
    eval_sets: tuple[str, ...] = ("clean", "noisy10", "real")
    max_utterances: int = 200
    timing_runs: int = 50
    threads: int = 2
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)
    # hybrid rows' second teacher: None = the C0 row (the paper); else a shipped model or checkpoint,
    # for when this machine cannot train C0 far enough in the time it has (docs/results.md)
    teacher2: str | None = None
    # hybrid rows: the feature term is off for this fraction of the steps, then ramped to full over
    # the next `feat_ramp_frac` (0, 0: the paper, from step 0). From step 0 it collapsed the C0/2
    # row to a constant mouth and halved C0/4's PBM at 2000 steps (docs/results.md, point 3).
    feat_from_frac: float = 0.375
    feat_ramp_frac: float = 0.25


def scale_preset(name: str, out: Path) -> Scale:
    if name == "full":
        return Scale("full", corpus="runs/corpus-20h/manifest.jsonl", labels="runs/labels-20h-50fps",
                     real="runs/asterisk-en/manifest.jsonl", real_labels="runs/labels-asterisk-50fps",
                     steps=3000, finetune_steps=300)
    if name == "smoke":
        data = out / "data"
        return Scale("smoke", corpus=str(data / "corpus" / "manifest.jsonl"), labels=str(data / "labels"),
                     real=str(data / "corpus" / "manifest.jsonl"), real_labels=str(data / "labels"),
                     steps=3, finetune_steps=2, c0_channels=32, batch_chunks=2, chunk_frames=8, val_every=3,
                     val_utterances=3, warmup_steps=1, eval_sets=("clean",), max_utterances=3, timing_runs=3,
                     threads=1, extra_overrides=("student.context_groups=4", 'val_split="test"'))
    raise ValueError(f"unknown scale {name!r} (smoke, full)")


def _prepare_smoke_data(scale: Scale) -> None:
    """A tiny synthetic corpus and its 50 fps labels; in smoke scale it also stands in for the real set."""
    from distilface.corpus.synth import SynthConfig, synth_corpus
    from distilface.label import LabelJob, run_labels

    manifest = Path(scale.corpus)
    if not manifest.exists():
        synth_corpus(SynthConfig(hours=0.012, max_voices=6, augment_fraction=0.0), manifest.parent, workers=2)
    run_labels(LabelJob(manifest=manifest, out_dir=Path(scale.labels), fps=50.0, workers=2))


def _overrides(row: Row, scale: Scale, real: bool, teacher2: Path | None) -> list[str]:
    o = [f'stage="{row.stage if row.stage != "teacher" else "hetero"}"',
         f"student.channels={scale.c0_channels // row.divisor}", f"student.future_ms={row.future_ms}", f"optim.steps={scale.steps}",
         f"optim.batch_chunks={scale.batch_chunks}", f"optim.chunk_frames={scale.chunk_frames}",
         f"optim.lr={scale.lr}", f"optim.warmup_steps={scale.warmup_steps}", f"val_every={scale.val_every}",
         f"val_utterances={scale.val_utterances}", f"threads={scale.threads}",
         f'manifest="{scale.real if real else scale.corpus}"',
         f'labels="{scale.real_labels if real else scale.labels}"', "loss.lip_gap=0.05"]
    if row.arch != "conv":
        o.append(f'student.arch="{row.arch}"')
    if row.future_ms <= 64:
        o.append("loss.vel=9.0")  # the paper's weight for its 64 ms students
    if row.stage == "hybrid":
        # The feature term sums squared differences over ~450 unnormalised channels: hundreds at the
        # start against ~0.1 for rec. Weight 1 drowned the labels (runs/c0-2-64ms-hybrid, first try).
        o += [f'teacher2="{teacher2}"', "loss.feat=1e-3",
              f"loss.feat_from_step={round(scale.steps * scale.feat_from_frac)}",
              f"loss.feat_ramp_steps={round(scale.steps * scale.feat_ramp_frac)}"]
    return o + list(scale.extra_overrides)


def train_row(row: Row, scale: Scale, out: Path, teacher2: Path | None, device: str = "cpu") -> Path:
    """Train (or resume) one row on `device` (cpu | cuda); returns its final checkpoint."""
    from distilface.train import load_config, train

    run_dir = out / "rows" / row.slug
    best = train(load_config(None, _overrides(row, scale, row.data == "real", teacher2)), run_dir, device)
    if not row.finetune:
        return best
    ft = [f'stage="finetune"', f'init="{best}"', f"optim.steps={scale.finetune_steps}", "optim.lr=2e-4",
          f"optim.warmup_steps={min(50, scale.finetune_steps)}",
          f"val_every={max(scale.finetune_steps // 3, 1)}"]
    cfg = load_config(None, _overrides(row, scale, True, teacher2) + ft)
    return train(cfg, run_dir / "finetune", device)


def run_seconds(history_path: Path) -> float:
    """Wall seconds a training run took over all its resumes (its history's last `train_s`)."""
    rows = read_jsonl(history_path)
    return float(rows[-1].get("train_s", 0.0)) if rows else 0.0


def _train_rows(rows: list[Row], scale: Scale, out: Path, teacher2: Path | None, jobs: int,
                device: str) -> dict[str, Path]:
    """Train rows one after another, or `jobs` at a time in spawned processes (each with the
    scale's torch threads): the rows are independent once their second teacher exists."""
    if jobs <= 1 or len(rows) <= 1:
        ckpts = {}
        for row in rows:
            log.info("row %s", row.name)
            ckpts[row.name] = train_row(row, scale, out, teacher2, device)
        return ckpts
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {row.name: pool.submit(train_row, row, scale, out, teacher2, device) for row in rows}
        return {name: f.result() for name, f in futures.items()}


def run_paper_table(out_dir: str | Path, scale_name: str = "smoke", rows: list[str] | None = None,
                    docs: str | Path | None = None, threads: int | None = None, steps: int | None = None,
                    teacher2: str | None = None, jobs: int = 1, device: str = "cpu",
                    feat_delay: tuple[float, float] | None = None,
                    docs_section: str = "paper-table") -> dict[str, Any]:
    """Train every row (or those named), score them together, write results.md and figures.
    threads: torch threads of each training (None: the scale's); steps: per hetero / hybrid row
    (None: the scale's); teacher2: a shipped model or checkpoint that hybrid rows learn from instead
    of the C0 row; jobs: trainings at once; device: where rows train (scoring is on the CPU);
    feat_delay: (off, ramp) fractions of the steps for the hybrid rows' feature term (None: the
    scale's; (0, 0): the paper's, on from step 0); docs_section: the name of the block of `docs`
    this table replaces (and of its figures), so that rows trained in another session can sit
    beside an earlier table instead of replacing it."""
    from distilface.evaluate import evaluate
    from distilface.models import registry, resolve_model

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", docs_section):
        raise ValueError(f"docs section {docs_section!r}: lower-case letters, digits and '-' only")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scale = scale_preset(scale_name, out)
    if threads:
        scale = replace(scale, threads=threads)
    if steps:
        scale = replace(scale, steps=steps)
    if teacher2:
        # a shipped model stays a name (train resolves it), so row folders survive a moved checkout
        path = resolve_model(teacher2)
        scale = replace(scale, teacher2=teacher2 if teacher2 in registry()["models"] else str(path))
    if feat_delay is not None:
        scale = replace(scale, feat_from_frac=feat_delay[0], feat_ramp_frac=feat_delay[1])
    t0 = time.monotonic()
    if scale.name == "smoke":
        _prepare_smoke_data(scale)
    chosen = [r for r in ROWS if rows is None or r.name in rows or r.slug in rows]
    unknown = set(rows or ()) - {r.name for r in ROWS} - {r.slug for r in ROWS}
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)} (see distilface.experiment.ROWS)")
    by_name = {r.name: r for r in ROWS}
    # the second teacher and the rows smoothed ones reuse are trained first
    needed = {r.smoothed_from for r in chosen if r.smoothed_from}
    hybrid = any(r.stage == "hybrid" for r in chosen) or any(by_name[n].stage == "hybrid" for n in needed)
    ckpts: dict[str, Path] = {}
    second = Path(scale.teacher2) if scale.teacher2 else None
    if hybrid and second is None:
        ckpts[SECOND_TEACHER] = train_row(by_name[SECOND_TEACHER], scale, out, None, device)
        second = ckpts[SECOND_TEACHER]
    todo = [r for r in ROWS if (r in chosen or r.name in needed) and r.name not in ckpts
            and r.stage != "teacher" and not r.smoothed_from]
    # longest first, so that parallel jobs finish together: wide before narrow, hybrid (which also
    # runs its second teacher) before hetero, the cheap baselines last
    todo.sort(key=lambda r: (r.arch != "conv", r.divisor, r.stage != "hybrid"))
    ckpts.update(_train_rows(todo, scale, out, second, jobs, device))
    # the rows' own wall time over all invocations (a full table spans sessions), not this one's
    histories = [h for name in ckpts for h in (out / "rows" / by_name[name].slug).rglob("history.jsonl")]
    train_s = sum(run_seconds(h) for h in histories)
    # rows written before history recorded threads count as "unrecorded", not as today's setting
    threads_used = sorted({str(row.get("threads", "unrecorded")) for h in histories for row in read_jsonl(h)})

    models: dict[str, Any] = {}
    for row in chosen:
        if row.stage == "teacher":
            models[row.name] = None
        elif row.smoothed_from:
            models[row.name] = (str(ckpts[row.smoothed_from]), DEFAULT_WEIGHTS)
        else:
            models[row.name] = str(ckpts[row.name])
    report = evaluate(models, out / "eval", test_sets=scale.eval_sets, max_utterances=scale.max_utterances,
                      corpus=scale.corpus, real=scale.real, timing_runs=scale.timing_runs, progress=True)
    summary = {"scale": scale.__dict__, "rows": [r.name for r in chosen], "train_seconds": train_s,
               "threads_used": threads_used, "device": device, "jobs": jobs, "total_seconds": time.monotonic() - t0, "checkpoints": {k: str(v) for k, v in ckpts.items()}}
    write_json(out / "experiment.json", summary)
    md = format_results(report, summary, out)
    with atomic_write(out / "results.md", "w") as f:
        f.write(md)
    if docs:
        _publish(out, Path(docs), docs_section)
    return {"report": report, "summary": summary}


# -- the table and figures ----------------------------------------------------------------------------
def _cell(report: dict, model: str, test_set: str, key: str):
    for r in report["rows"]:
        if r["model"] == model and r["test_set"] == test_set:
            return r.get(key)
    return None


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _teacher2_text(path: str | None) -> str:
    if not path:
        return "the C0 row, fine-tuned (as in the paper)"
    from distilface.models import registry

    # a shipped model by its name (its path depends on where the package was installed)
    files = {e["file"]: name for name, e in registry()["models"].items()}
    shown = files.get(Path(path).name, path)
    return f"`{shown}` (given with --teacher2, not the C0 row)"


def _feat_delay_text(sc: dict) -> str:
    """How the hybrid rows' feature term was scheduled (scales written before it existed: step 0)."""
    off, ramp = (round(sc["steps"] * sc.get(k, 0.0)) for k in ("feat_from_frac", "feat_ramp_frac"))
    if off == 0 and ramp == 0:
        return "feature term from step 0 (the paper's)"
    return f"feature term off for {off} steps, then ramped to full over {ramp}"


def _not_run(rows: list[str]) -> list[str]:
    """A line naming the paper's rows this table leaves out, so that a partial table says so."""
    missing = [r.name for r in ROWS if r.name not in rows]
    return [f"Not run in this table: {'; '.join(missing)}.", ""] if missing else []


def format_results(report: dict, summary: dict, out: Path) -> str:
    sets = [s for s in report["test_sets"] if report["test_sets"][s]["status"] == "ok"]
    main = "clean" if "clean" in sets else sets[0]
    head = ["model"] + [f"PBM {s} (% teacher)" for s in sets] + [
        f"open {main}", f"MSE {main}", f"jitter x teacher ({main})", "params", "MB", "future ms",
        "CPU ms/frame", "paper: PBM clean", "paper: in-house (% teacher)", "paper: jitter x teacher"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in summary["rows"]:
        info = report["models"].get(name, {})
        cells = [name]
        for s in sets:
            cells.append(f"{_pct(_cell(report, name, s, 'pbm_accuracy'))} ({_pct(_cell(report, name, s, 'pbm_of_teacher'))})")
        mse = _cell(report, name, main, "mse")
        jit = _cell(report, name, main, "jitter_ratio")
        mem = info.get("memory_bytes")
        cells += [_pct(_cell(report, name, main, "open_vowel_accuracy")),
                  "-" if mse is None else f"{mse:.4f}", "-" if jit is None else f"{jit:.2f}",
                  "-" if info.get("parameters") is None else f"{info['parameters'] / 1e6:.2f} M",
                  "-" if mem is None else f"{mem / 1e6:.1f}",
                  "-" if info.get("future_ms") is None else f"{info['future_ms']:.0f}",
                  "-" if info.get("cpu_ms_per_frame_offline") is None else f"{info['cpu_ms_per_frame_offline']:.3f}"]
        p = PAPER_TABLE2.get(name, {})
        cells += [str(p.get("clean", "-")), "-" if not p else f"{p['inhouse']} ({p['of_teacher'] or '-'})",
                  "-" if not p else f"{p['jitter'] / PAPER_TEACHER_JITTER:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    sc = summary["scale"]
    figs = plot_results(report, summary, out)
    text = [f"# Paper Table 2 on our data ({sc['name']} scale)", "",
            f"Scale: {sc['steps']} steps per row (batch {sc['batch_chunks']} x {sc['chunk_frames']} frames at 50 fps), "
            f"fine-tuning {sc['finetune_steps']} steps, C0 = {sc['c0_channels']} channels; hybrid rows' second "
            f"teacher: {_teacher2_text(sc.get('teacher2'))}, {_feat_delay_text(sc)}; corpus `{sc['corpus']}`, "
            f"real set `{sc['real']}`; evaluated on {', '.join(sets)} ({report['max_utterances']} utterances "
            f"at most per set, {report['fps']:g} fps). Training took {summary['train_seconds'] / 60:.1f} min "
            f"of wall time summed over rows and resumes (torch threads per training: "
            f"{' or '.join(summary.get('threads_used') or [str(sc['threads'])])}, on {summary.get('device', 'cpu')}, "
            f"{summary.get('jobs', 1)} at once); the last "
            f"invocation {summary['total_seconds'] / 60:.1f} min, scoring included.", "",
            "PBM: % of /p b m/ phones whose lips close (docs/metrics.md; in parentheses: % of the teacher's own score on the same set). "
            "Paper columns: LibriSpeech test-clean PBM, in-house PBM (% of teacher), jitter relative to its teacher's 0.0444.",
            "", *lines, "", *_not_run(summary["rows"]), *[f"![{k}]({Path(v).name})" for k, v in figs.items()], ""]
    return "\n".join(text)


def plot_results(report: dict, summary: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in report["test_sets"] if report["test_sets"][s]["status"] == "ok"]
    main = "clean" if "clean" in sets else sets[0]
    pts = []
    for name in summary["rows"]:
        info = report["models"].get(name, {})
        pbm = _cell(report, name, main, "pbm_of_teacher")
        if info.get("memory_bytes") is None or pbm is None:
            continue
        pts.append((name, info["memory_bytes"] / 1e6, info["future_ms"], 100 * pbm))
    figs = {}
    for key, idx, xlabel in (("pbm-vs-memory", 1, "memory, MB (params + intermediates, fp32)"),
                             ("pbm-vs-future", 2, "future context, ms (measured)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for p in pts:
            ax.scatter(p[idx], p[3], color="tab:red" if "hybrid" in p[0] else "tab:blue")
            ax.annotate(p[0], (p[idx], p[3]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"PBM, % of teacher ({main})")
        ax.set_title(f"{key.replace('-', ' ')} ({summary['scale']['name']} scale; red: hybrid)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{key}.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        figs[key] = str(path)
    return figs


PUBLISH_BEGIN = "<!-- paper-table:begin (written by distilface experiment paper-table --docs) -->"
PUBLISH_END = "<!-- paper-table:end -->"


def _markers(section: str) -> tuple[str, str]:
    return (PUBLISH_BEGIN.replace("paper-table:", f"{section}:", 1), f"<!-- {section}:end -->")


def _publish(out: Path, docs: Path, section: str = "paper-table") -> None:
    """Put results.md between the markers of `section` in `docs` (appended when absent); figures
    into docs/figures/ as SECTION-*.png. The rest of the file is kept."""
    figures = docs.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    text = (out / "results.md").read_text()
    for png in ("pbm-vs-memory.png", "pbm-vs-future.png"):
        target = figures / f"{section}-{png}"
        target.write_bytes((out / png).read_bytes())
        text = text.replace(f"]({png})", f"](figures/{target.name})")
    begin, end = _markers(section)
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = docs.read_text() if docs.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = (old.rstrip() + "\n\n" if old else "") + block + "\n"
    with atomic_write(docs, "w") as f:
        f.write(new)
