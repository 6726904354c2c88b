"""`distilface train`: distil teacher labels into a student (stages `hetero`, `finetune`, `hybrid`).

Losses are named terms with weights from the config (paper eq. 1-4): reconstruction
L_rec = mean_t ||r_s - r_t||^2 and velocity L_vel = mean_t ||v_s - v_t||^2 with v_t = r_t - r_{t-1},
both summed over channels. Frames come in chunks one encoder step (20 ms) apart, so the encoder
runs once per chunk and the velocity is taken between neighbouring frames of a chunk.

Stage `hybrid` (paper eq. 5-7): a trained student, frozen, is a second teacher (`teacher2`); the
labels still come from the first teacher. A feature loss L_feat = sum_l mean_t ||f_l - f_l'||^2
over the last layers (the FC feature maps and the final layer before its activation, whose sizes
do not depend on the width) is added. Down-scaling supervision: fewer channels than teacher2.
Predictive supervision: less future audio; teacher2 then sees its own window for the same frame
time, which ends later (the chunk is read that much further). Both combine in one run.

Beyond the paper, aimed at the jitter of low-latency students, which it blames on frame-level
supervision and its plain L2 feature loss: `acc` matches the students' frame-to-frame acceleration
to the labels', and `feat_vel` matches the frame-to-frame change of the feature maps to teacher2's
(temporal consistency in feature space). Both default to 0 (the paper's losses).

The run folder holds `config.json`, `last.pt` (resume point), `best.pt` (best validation),
`history.jsonl` and `training_curves.png`. A killed run started again with the same command
continues from `last.pt`; batches depend only on (seed, step), so the data order is the same.
Under `torchrun` each process trains on its slice of every batch (`distributed.py`); the logged
losses are the means over ranks, so the curve is the one-process curve.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from distilface.checkpoint import load_student, read_checkpoint, save_checkpoint
from distilface.dataset import TRAIN_FPS, ChunkSampler, PackedSplit, pack_split
from distilface.distributed import Ranks, chunk_forward, main_first, process_group
from distilface.fileio import read_json, read_jsonl, write_json, write_jsonl
from distilface.models import resolve_model
from distilface.student import Student, StudentConfig, build_student, frame_starts

log = logging.getLogger(__name__)


@dataclass
class LossWeights:
    rec: float = 1.0
    vel: float = 1.0
    # Beyond the paper: squared error of the rig's lip gap (mm^2). The curves' MSE treats
    # jawOpen and mouthClose independently, but a closure needs them equal to a few hundredths;
    # this term weighs exactly the combination the PBM metric looks at. 0 turns it off.
    lip_gap: float = 0.0
    acc: float = 0.0  # beyond the paper: acceleration, like vel one difference further
    feat: float = 0.0  # hybrid: feature loss against teacher2 (paper eq. 6)
    feat_vel: float = 0.0  # hybrid, beyond the paper: frame-to-frame change of the features
    # Beyond the paper: the feature terms (feat, feat_vel) are off before step `feat_from_step`,
    # then their weights grow linearly to full over `feat_ramp_steps`. A raw-audio student sits
    # on the average mouth for its first ~1000 steps; a full feature term from step 0 kept
    # C0/2 there for all 2000 steps of the paper table (docs/results.md).
    feat_from_step: int = 0
    feat_ramp_steps: int = 0


@dataclass
class OptimConfig:
    steps: int = 20_000
    batch_chunks: int = 16  # chunks per step
    chunk_frames: int = 32  # frames per chunk (20 ms apart): 512 frames per step
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    stage: str = "hetero"  # hetero | finetune (same losses; starts from `init`) | hybrid (+ teacher2)
    manifest: str = ""
    labels: str = ""  # label folder at 50 fps
    train_split: str = "train"
    val_split: str = "val"
    sources: list[str] | None = None  # restrict to these manifest sources
    init: str | None = None  # checkpoint (or shipped model name) to start from (fine-tuning)
    # hybrid: the frozen student that supervises features: a checkpoint or a shipped model's name
    # (a name keeps the run folder valid when the checkout moves; paths are compared on resume)
    teacher2: str | None = None
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val_every: int = 500
    val_utterances: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    threads: int = 2


def _compatible(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def _build(cls, data: dict[str, Any], where: str):
    """Dataclass from a dict, checking names and types against the defaults."""
    defaults = cls()
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(f"{where}: unknown option {key!r} (known: {', '.join(names)})")
        default = getattr(defaults, key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key}: expected a table")
            value = _build(type(default), value, f"{where}.{key}")
        elif default is not None and not _compatible(value, default):
            raise ValueError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """TOML config file + `section.key=value` overrides (values parsed as TOML)."""
    data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    for item in overrides:
        key, _, raw = item.partition("=")
        if not _:
            raise ValueError(f"override {item!r}: expected key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _build(TrainConfig, data, str(path or "config"))


def config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["student"] = cfg.student.to_dict()
    return d


# -- losses -------------------------------------------------------------------------------------
def lip_gap_weights(names: tuple[str, ...]) -> torch.Tensor:
    """(channels,) mm of lip gap per unit of each channel (the rig is linear in its weights)."""
    from distilface.rig.mesh import LOWER_LIP_MID_VERTEX, UPPER_LIP_MID_VERTEX, load_rig

    rig = load_rig()
    d = rig.deltas_mm[:, UPPER_LIP_MID_VERTEX, 1] - rig.deltas_mm[:, LOWER_LIP_MID_VERTEX, 1]
    return torch.tensor([float(d[rig.names.index(n)]) if n in rig.names else 0.0 for n in names])


def distill_losses(pred: torch.Tensor, target: torch.Tensor,
                   gap_mm: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """pred, target: (B, F, channels) -> named loss terms (unweighted); gap_mm adds `lip_gap`."""
    rec = ((pred - target) ** 2).sum(-1).mean()
    dp, dt = pred.diff(dim=1), target.diff(dim=1)
    vel = ((dp - dt) ** 2).sum(-1).mean()
    acc = ((dp.diff(dim=1) - dt.diff(dim=1)) ** 2).sum(-1).mean()
    terms = {"rec": rec, "vel": vel, "acc": acc}
    if gap_mm is not None:
        terms["lip_gap"] = (((pred - target) @ gap_mm) ** 2).mean()
    return terms


def feature_losses(student: list[torch.Tensor], teacher: list[torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """Feature maps, each (B * F, dims) frame-major per chunk -> `feat` (paper eq. 6: summed over
    layers, mean over frames of the squared distance) and `feat_vel` (the same on the change from
    one frame to the next)."""
    feat = sum(((s - t) ** 2).sum(-1).mean() for s, t in zip(student, teacher))
    feat_vel = 0.0
    for s, t in zip(student, teacher):
        ds = s.view(-1, frames, s.shape[-1]).diff(dim=1)
        dt = t.view(-1, frames, t.shape[-1]).diff(dim=1)
        feat_vel = feat_vel + ((ds - dt) ** 2).sum(-1).mean()
    return {"feat": feat, "feat_vel": feat_vel}


def teacher2_shift(student: StudentConfig, teacher2: StudentConfig) -> int:
    """Samples by which teacher2's window for a frame starts after the student's (>= 0)."""
    if teacher2.window_samples != student.window_samples:
        raise ValueError(f"teacher2 window {teacher2.window_ms} ms != student window {student.window_ms} ms")
    if teacher2.future_samples < student.future_samples:
        raise ValueError(f"teacher2 sees {teacher2.future_ms} ms of future audio, less than the "
                         f"student's {student.future_ms} ms: predictive supervision needs more")
    if tuple(teacher2.fc_dims) != tuple(student.fc_dims) or tuple(teacher2.names) != tuple(student.names):
        raise ValueError("teacher2 and student differ in fc_dims or output names: no feature loss possible")
    return teacher2.future_samples - student.future_samples


def feat_scale(step: int, w: LossWeights) -> float:
    """Multiplier of the feature weights at `step` (0-based): 0 before feat_from_step, then a
    linear ramp reaching 1 after feat_ramp_steps steps."""
    if step < w.feat_from_step:
        return 0.0
    return min(1.0, (step - w.feat_from_step + 1) / w.feat_ramp_steps) if w.feat_ramp_steps > 0 else 1.0


def lr_at(step: int, o: OptimConfig) -> float:
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(o.steps - o.warmup_steps, 1)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def init_output_bias(model: Student, data: PackedSplit) -> None:
    """Start the output at the label mean (mostly rest) instead of the activation's midpoint:
    a sigmoid student would otherwise begin at 0.5 on every blendshape and spend its first
    thousand steps closing a wide-open face."""
    mean = np.concatenate(data.labels).mean(0)
    lo, hi = (0.0, 1.0) if model.cfg.output_activation == "sigmoid" else (-1.0, 1.0)
    m = torch.from_numpy(np.clip(mean, lo + 1e-3, hi - 1e-3)).float()
    with torch.no_grad():
        if model.cfg.output_activation == "sigmoid":
            model.fc[-1].bias.copy_(torch.logit(m))
        elif model.cfg.output_activation == "tanh":
            model.fc[-1].bias.copy_(torch.atanh(m))
        else:
            model.fc[-1].bias.copy_(m)


# -- steps --------------------------------------------------------------------------------------
def _gap_weights(model: Student) -> torch.Tensor:
    if not hasattr(model, "_gap_mm"):
        model._gap_mm = lip_gap_weights(model.cfg.names).to(next(model.parameters()).device)
    return model._gap_mm


def train_step(model: Student, opt: torch.optim.Optimizer, audio: torch.Tensor, target: torch.Tensor,
               cfg: TrainConfig, teacher2: Student | None = None, shift: int = 0,
               forward: Any = None, feat_mult: float = 1.0) -> dict[str, float]:
    """audio: (B, chunk + shift) samples; the student reads [:chunk], teacher2 [shift:].
    forward: `model.forward_chunks` or its DistributedDataParallel wrapper (default: the former).
    feat_mult multiplies the feature weights (the ramp, `feat_scale(step, cfg.loss)`)."""
    model.train()
    b, f, _ = target.shape
    chunk = audio.shape[1] - shift
    out = (forward or model.forward_chunks)(audio[:, :chunk], f)
    pred = out["out"].view(b, f, -1)
    terms = distill_losses(pred, target, _gap_weights(model) if cfg.loss.lip_gap else None)
    if teacher2 is not None and feat_mult > 0:
        with torch.no_grad():
            ref = teacher2.forward_chunks(audio[:, shift:], f)
        terms.update(feature_losses([*out["fc"], out["pre"]], [*ref["fc"], ref["pre"]], f))
    weights = {k: getattr(cfg.loss, k) * (feat_mult if k in ("feat", "feat_vel") else 1.0) for k in terms}
    loss = sum(weights[k] * v for k, v in terms.items() if weights[k])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    opt.step()
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}


@torch.no_grad()
def eval_step(model: Student, data: PackedSplit, indices: list[int], phones_of: dict) -> dict[str, float]:
    """Validation on whole utterances at the label rate: MSE vs teacher, PBM, open vowels."""
    from distilface.curves import Curves
    from distilface.metrics import LipSyncScores, score_curves

    model.eval()
    device = next(model.parameters()).device
    se, count = 0.0, 0
    scores = LipSyncScores()
    for i in indices:
        audio = torch.from_numpy(data.utterance_audio(i)).to(device)
        target = data.labels[i]
        pred = model.forward_frames(audio, frame_starts(len(target), TRAIN_FPS, model.cfg)).cpu().numpy()
        se += float(((pred - target) ** 2).mean()) * len(target)
        count += len(target)
        if data.ids[i] in phones_of:
            scores.add(score_curves(Curves(TRAIN_FPS, data.names, pred), phones_of[data.ids[i]]))
    return {"val_mse": se / max(count, 1), "val_pbm": scores.pbm_accuracy,
            "val_open": scores.open_vowel_accuracy}


def _better(a: dict, b: dict | None) -> bool:
    """Best checkpoint: higher PBM (to 0.5 %), then lower MSE."""
    if b is None:
        return True
    pa, pb = round(a["val_pbm"] * 200), round(b["val_pbm"] * 200)
    return pa > pb or (pa == pb and a["val_mse"] < b["val_mse"])


# -- loop ---------------------------------------------------------------------------------------
# Config fields a resumed run may take new values of: they change how fast it runs, not what it
# computes (up to the order of float sums). A run started beside other work on one thread can
# go on with all cores; every history row records the threads it ran on.
RESUME_MAY_CHANGE = ("threads",)


def train(cfg: TrainConfig, out_dir: str | Path, device: str = "cpu") -> Path:
    """Train into `out_dir`, resuming the run there; returns the best checkpoint's path. Under
    torchrun this process is one rank of a data-parallel run (device "cuda": GPU LOCAL_RANK)."""
    with process_group(device) as ranks:
        return _train(cfg, Path(out_dir), ranks)


def _train(cfg: TrainConfig, out: Path, ranks: Ranks) -> Path:
    from distilface.manifest import read_manifest, resolve
    from distilface.phones import read_phones

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    # Real audio has long near-silent stretches: denormal floats there slow CPU convs badly.
    torch.set_flush_denormal(True)
    if (out / "config.json").exists():
        # a run saved before a config field existed took that field's default: rebuild, then compare
        stored = config_dict(_build(TrainConfig, read_json(out / "config.json"), str(out / "config.json")))
        now = config_dict(cfg)
        changed = sorted(k for k in now if stored.get(k) != now[k] and k not in RESUME_MAY_CHANGE)
        if changed:
            raise ValueError(f"{out}: holds a run with another config (differs in {', '.join(changed)}); "
                             "use a new folder")
    if ranks.main:
        write_json(out / "config.json", config_dict(cfg))

    sources = tuple(cfg.sources) if cfg.sources else None
    with main_first(ranks):  # rank 0 packs the audio once, the others read its pack
        train_data = pack_split(cfg.manifest, cfg.labels, cfg.train_split, sources)
        val_data = pack_split(cfg.manifest, cfg.labels, cfg.val_split, sources)
    rng = np.random.default_rng(cfg.seed)
    val_idx = sorted(rng.choice(len(val_data), min(cfg.val_utterances, len(val_data)), replace=False).tolist())
    by_id = {u.id: u for u in read_manifest(cfg.manifest)}
    phones_of = {val_data.ids[i]: read_phones(resolve(cfg.manifest, by_id[val_data.ids[i]].phones))
                 for i in val_idx if by_id[val_data.ids[i]].phones}

    torch.manual_seed(cfg.seed)
    if tuple(cfg.student.names) != tuple(train_data.names):
        raise ValueError(f"student outputs {len(cfg.student.names)} channels, labels have {len(train_data.names)}")
    model = build_student(cfg.student).to(ranks.device)
    teacher2, shift = None, 0
    if cfg.stage == "hybrid":
        if not cfg.teacher2:
            raise ValueError("stage hybrid needs `teacher2` (a trained student checkpoint)")
        teacher2, _ = load_student(resolve_model(cfg.teacher2))  # eval mode: frozen, running norms
        teacher2.requires_grad_(False).to(ranks.device)
        shift = teacher2_shift(cfg.student, teacher2.cfg)
    elif cfg.stage not in ("hetero", "finetune"):
        raise ValueError(f"unknown stage {cfg.stage!r} (hetero, finetune, hybrid)")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    step, best, history = 0, None, []
    if (out / "last.pt").exists():
        ckpt = read_checkpoint(out / "last.pt")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        step, best = ckpt["step"], ckpt.get("best")
        history = read_jsonl(out / "history.jsonl") if (out / "history.jsonl").exists() else []
        history = [h for h in history if h["step"] <= step]
        if ranks.main:
            tqdm.write(f"resumed {out} at step {step}", file=sys.stderr)
    elif cfg.init:
        init_model, _ = load_student(resolve_model(cfg.init))
        model.load_state_dict(init_model.state_dict())
    else:
        init_output_bias(model, train_data)

    forward = chunk_forward(model, ranks)
    sampler = ChunkSampler(train_data, cfg.student, cfg.optim.chunk_frames, cfg.seed, extra_samples=shift)
    frames_per_step = cfg.optim.batch_chunks * cfg.optim.chunk_frames
    bar = tqdm(total=cfg.optim.steps, initial=step, desc=f"train {out.name}", unit="step", disable=not ranks.main)
    # train_s in the history counts this run's wall time over resumes (read back by reports)
    t0, audio_s, train_s0 = time.monotonic(), 0.0, (history[-1].get("train_s", 0.0) if history else 0.0)
    while step < cfg.optim.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.optim)
        audio, target = sampler.batch(step, cfg.optim.batch_chunks, part=(ranks.rank, ranks.world))
        logs = train_step(model, opt, audio.to(ranks.device), target.to(ranks.device), cfg, teacher2, shift, forward,
                          feat_scale(step, cfg.loss))
        logs = ranks.mean(logs)  # each rank saw its slice of the batch
        step += 1
        audio_s += frames_per_step / TRAIN_FPS
        bar.set_postfix_str(f"loss {logs['loss']:.4f}, {audio_s / (time.monotonic() - t0):.1f} s audio/s")
        bar.update(1)
        if not ranks.main:  # rank 0 alone validates and writes files
            continue
        row = {"step": step, "lr": lr_at(step - 1, cfg.optim), **logs,
               "train_s": round(train_s0 + time.monotonic() - t0, 2), "threads": cfg.threads}
        if step % cfg.val_every == 0 or step == cfg.optim.steps:
            row.update(eval_step(model, val_data, val_idx, phones_of))
            if _better(row, best):
                best = {k: row[k] for k in ("step", "val_mse", "val_pbm", "val_open")}
                save_checkpoint(out / "best.pt", model, step=step, best=best, train_config=config_dict(cfg))
        history.append(row)
        if step % cfg.checkpoint_every == 0 or step == cfg.optim.steps or "val_mse" in row:
            write_jsonl(out / "history.jsonl", history)
            save_checkpoint(out / "last.pt", model, optimizer=opt.state_dict(), step=step, best=best,
                            train_config=config_dict(cfg))
    bar.close()
    if ranks.main:
        plot_history(history, out / "training_curves.png", title=out.name)
    return out / "best.pt"


def plot_history(history: list[dict], png: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distilface.fileio import atomic_path

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = [h["step"] for h in history]
    for key in ("loss", "rec", "vel"):
        vals = [h[key] for h in history]
        k = max(len(vals) // 200, 1)  # smooth for readability
        sm = np.convolve(vals, np.ones(k) / k, mode="valid")
        a.plot(steps[k - 1:], sm, label=key)
    a.set_yscale("log"); a.set_xlabel("step"); a.set_title("training loss"); a.legend()
    val = [h for h in history if "val_mse" in h]
    if val:
        vs = [h["step"] for h in val]
        b.plot(vs, [h["val_pbm"] for h in val], "o-", label="val PBM accuracy")
        b.plot(vs, [h["val_open"] for h in val], "s-", label="val open-vowel accuracy")
        b2 = b.twinx()
        b2.plot(vs, [h["val_mse"] for h in val], "k--", label="val MSE")
        b2.set_ylabel("MSE")
        b.set_ylim(0, 1.02); b.set_xlabel("step"); b.set_title("validation (held-out voices)")
        b.legend(loc="lower left"); b2.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(Path(png)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
