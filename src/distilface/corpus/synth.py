"""`distilface corpus synth`: a multi-voice synthetic speech corpus with exact phone timings.

Stages talk through files in the corpus folder:

    plan.jsonl              every utterance to make: id, text, voice, split, augmentation chain
    audio/<id>.flac         16 kHz mono
    phones/<id>.phones.tsv  exact phone timings (arpabet39)
    records/<id>.json       written last: the utterance is complete (or failed, with the reason)
    manifest.jsonl          all completed utterances, written when every planned one has a record
    stats.json              hours per split/engine/language, voices, wall time, throughput

The plan is a pure function of the config (seed included), so a killed run resumes by skipping
utterances that have a record, and re-running gives the same corpus, byte for byte (every file but
stats.json, whatever the number of workers or shards; tests/test_interrupt.py).

Splits are by voice: a test voice is never heard in training. Only training utterances are
augmented; evaluation sets get their own fixed degradations at evaluation time.

Shards (`--shard i/N`): N processes, e.g. the tasks of a batch array job, make disjoint parts of the
plan (by a hash of the utterance id) into the same folder; the one that finds every planned
utterance recorded writes the manifest. Shards made in separate folders are copied together by
`merge_corpus` (`distilface corpus merge`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from distilface.audio import SAMPLE_RATE_HZ, write_audio
from distilface.corpus.engine import EngineError, Voice
from distilface.distributed import Shard
from distilface.fileio import atomic_path, read_json, read_jsonl, write_json, write_jsonl
from distilface.manifest import Utterance, write_manifest
from distilface.phones import write_phones

log = logging.getLogger(__name__)
PLAN_VERSION = 1
# Speaking rate used only to plan how many utterances make the requested hours; measured on a
# 15.9 h corpus of the default engines (espeak-ng 18.5, flite 16.2, festival 14.7 chars/s).
_EST_CHARS_PER_S = 17.6


@dataclass
class SynthConfig:
    hours: float = 1.0
    languages: tuple[str, ...] = ("en",)
    other_language_share: float = 0.1  # share of hours for each language but the first
    max_voices: int | None = None  # None: every available voice of the catalogue
    augment_fraction: float = 0.5  # share of training utterances that get an augmentation chain
    seed: int = 0
    val_voice_fraction: float = 0.1
    test_voice_fraction: float = 0.1
    engines: tuple[str, ...] | None = None  # restrict to these engines (None: all available)


def _seed_of(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def split_voices(voices: list[Voice], cfg: SynthConfig) -> dict[str, str]:
    """voice id -> split, stratified by (language, engine) so every engine is tested."""
    groups: dict[tuple[str, str], list[Voice]] = {}
    for v in voices:
        groups.setdefault((v.language, v.engine), []).append(v)
    split: dict[str, str] = {}
    for key, group in sorted(groups.items()):
        order = sorted(group, key=lambda v: v.id)
        random.Random(_seed_of(cfg.seed, "split", *key)).shuffle(order)
        n = len(order)
        n_test = max(1, round(n * cfg.test_voice_fraction)) if n >= 2 else 0
        n_val = max(1, round(n * cfg.val_voice_fraction)) if n >= 3 else 0
        for i, v in enumerate(order):
            split[v.id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return split


def make_plan(cfg: SynthConfig) -> list[dict]:
    from distilface.corpus import augment
    from distilface.corpus.text import corpus_sentences
    from distilface.corpus.voices import voice_catalogue

    voices = voice_catalogue(cfg.languages)
    if cfg.engines:
        voices = [v for v in voices if v.engine in cfg.engines]
    if cfg.max_voices:
        # Round-robin over engines keeps the mix diverse when capping the voice count.
        by_engine: dict[str, list[Voice]] = {}
        for v in voices:
            by_engine.setdefault(v.engine, []).append(v)
        capped: list[Voice] = []
        while len(capped) < cfg.max_voices and any(by_engine.values()):
            for e in sorted(by_engine):
                if by_engine[e] and len(capped) < cfg.max_voices:
                    capped.append(by_engine[e].pop(0))
        voices = capped
    if not voices:
        raise RuntimeError("no speech engine available: install espeak-ng (see README)")
    splits = split_voices(voices, cfg)
    # augment_fraction already picked the utterances: every chain sampled here is non-empty.
    policy = augment.AugmentPolicy(p_augment=1.0, real_ir_fraction=0.3)
    plan: list[dict] = []
    for li, lang in enumerate(cfg.languages):
        lang_voices = sorted((v for v in voices if v.language == lang), key=lambda v: v.id)
        if not lang_voices:
            raise RuntimeError(f"no voice available for language {lang!r}")
        share = cfg.other_language_share if li else 1.0 - cfg.other_language_share * (len(cfg.languages) - 1)
        budget_s = cfg.hours * 3600.0 * share
        sentences = corpus_sentences(lang)
        rng = random.Random(_seed_of(cfg.seed, "plan", lang))
        planned_s, k = 0.0, 0
        while planned_s < budget_s:
            voice = lang_voices[k % len(lang_voices)]
            # Each voice walks the coverage-ordered sentences from its own offset.
            text = sentences[(k // len(lang_voices) + 977 * (k % len(lang_voices))) % len(sentences)]
            utt_id = f"{lang}-{k:07d}"
            chain: list[dict] = []
            if splits[voice.id] == "train" and rng.random() < cfg.augment_fraction:
                chain = augment.sample_chain(np.random.default_rng(_seed_of(cfg.seed, "aug", utt_id)), policy)
            plan.append({"id": utt_id, "text": text, "voice": asdict(voice), "split": splits[voice.id],
                         "augmentation": chain, "seed": _seed_of(cfg.seed, utt_id) % 2**31})
            planned_s += len(text) / _EST_CHARS_PER_S
            k += 1
    return plan


# -- workers -------------------------------------------------------------------------------------
_babble: list[np.ndarray] = []


def _init_worker(seed: int) -> None:
    """Per process: a fixed babble pool (same on every worker and every resume)."""
    from distilface.corpus.text import corpus_sentences
    from distilface.corpus.voices import synthesize, voice_catalogue

    global _babble
    voices = [v for v in voice_catalogue(("en",)) if v.engine == "espeak-ng"]
    sentences = corpus_sentences("en")
    rng = random.Random(_seed_of(seed, "babble"))
    _babble = []
    for _ in range(12 if voices else 0):
        text, voice = sentences[rng.randrange(len(sentences))], rng.choice(voices)
        try:  # an initializer that raises would make the pool respawn workers forever
            _babble.append(synthesize(text, voice).audio)
        except EngineError as e:
            log.warning("babble pool: skipped %s: %s", voice.id, e)


def _make_utterance(args: tuple[Path, dict]) -> dict:
    from distilface.corpus import augment
    from distilface.corpus.voices import synthesize

    out, item = args
    record_path = out / "records" / f"{item['id']}.json"
    voice = Voice(**item["voice"])
    try:
        syn = synthesize(item["text"], voice)
        audio, phones = syn.audio, syn.phones
        if item["augmentation"]:
            audio, phones = augment.apply_chain(audio, phones, item["augmentation"], seed=item["seed"],
                                                babble_pool=_babble)
    except (EngineError, ValueError) as e:
        record = {"id": item["id"], "failed": f"{type(e).__name__}: {e}"}
        write_json(record_path, record)
        return record
    write_audio(out / "audio" / f"{item['id']}.flac", audio)
    write_phones(out / "phones" / f"{item['id']}.phones.tsv", phones)
    record = asdict(Utterance(
        id=item["id"], audio=f"audio/{item['id']}.flac", phones=f"phones/{item['id']}.phones.tsv",
        duration_s=round(len(audio) / SAMPLE_RATE_HZ, 6), voice=voice.id, language=voice.language,
        source=voice.engine, split=item["split"], text=item["text"],
        augmentation={"chain": item["augmentation"], "seed": item["seed"]} if item["augmentation"] else None,
    ))
    write_json(record_path, record)  # last: marks the utterance complete
    return record


def synth_corpus(cfg: SynthConfig, out_dir: str | Path, workers: int = 2, shard: Shard = Shard()) -> Path | None:
    """Build (or finish) the corpus, or one shard of it, in `out_dir`; returns the manifest path,
    or None when utterances of other shards are still missing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path, plan_path = out / "synth_config.json", out / "plan.jsonl"
    cfg_dict = {"version": PLAN_VERSION, **asdict(cfg), "languages": list(cfg.languages),
                "engines": list(cfg.engines) if cfg.engines else None}
    if plan_path.exists() and config_path.exists():
        old_cfg = read_json(config_path)
        plan = read_jsonl(plan_path)
        if old_cfg != cfg_dict:
            same_but_hours = {**old_cfg, "hours": None} == {**cfg_dict, "hours": None}
            if not (same_but_hours and cfg.hours > old_cfg["hours"]):
                raise ValueError(f"{out}: holds a corpus made with another config ({config_path}); "
                                 "use a new folder or the same options (only --hours may grow)")
            # Growing: the plan is sequential, so a longer one starts with the old one and
            # every finished utterance is kept.
            grown = json.loads(json.dumps(make_plan(cfg)))  # compare as read back from disk
            if grown[:len(plan)] != plan:
                raise ValueError(f"{out}: cannot grow this corpus: its plan was made by another version")
            plan = grown
            write_jsonl(plan_path, plan)
            write_json(config_path, cfg_dict)
    else:
        plan = make_plan(cfg)
        write_jsonl(plan_path, plan)
        write_json(config_path, cfg_dict)
    mine = [item for item in plan if shard.owns(item["id"])]
    pending = [(out, item) for item in mine if not (out / "records" / f"{item['id']}.json").exists()]
    t0 = time.monotonic()
    made_s = 0.0
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), unit="utt",
               desc="corpus synth" + (f" shard {shard}" if shard.count > 1 else ""))
    if workers <= 1:
        _init_worker(cfg.seed)
        pool, iterator = None, map(_make_utterance, pending)
    else:
        pool = mp.get_context("fork").Pool(workers, _init_worker, (cfg.seed,))
        iterator = pool.imap_unordered(_make_utterance, pending, chunksize=4)
    try:
        for record in iterator:
            made_s += record.get("duration_s", 0.0)
            elapsed = time.monotonic() - t0
            bar.set_postfix_str(f"{made_s / 3600:.2f} h audio, {made_s / max(elapsed, 1e-9):.0f}x real time")
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    wall_s = time.monotonic() - t0
    last_run = {"wall_s": round(wall_s, 1), "audio_made_s": round(made_s, 1), "workers": workers,
                "x_real_time": round(made_s / wall_s, 1) if wall_s > 0 and made_s else None}
    if shard.count > 1:
        last_run["shard"] = str(shard)
        missing = sum(not (out / "records" / f"{item['id']}.json").exists() for item in plan)
        if missing:
            log.info("shard %s: done, %d utterances of other shards still missing", shard, missing)
            return None
    return _finish(out, plan, last_run)


def merge_corpus(out_dir: str | Path, shard_dirs: list[str | Path] = ()) -> Path:
    """Write the manifest of a corpus whose shards were made separately; returns its path.

    `out_dir` holds the corpus (or is empty); each of `shard_dirs` is a folder that shards of the
    same corpus were made in (same plan). Their finished utterances are copied into `out_dir`, each
    file atomically and its record last, so a killed merge can be re-run. Raises ValueError when
    the plans differ or when planned utterances are still missing (a shard has not finished)."""
    out = Path(out_dir)
    sources = [Path(d) for d in shard_dirs]
    if not (out / "plan.jsonl").exists():
        if not sources:
            raise ValueError(f"{out}: no plan.jsonl: not a corpus folder")
        for name in ("synth_config.json", "plan.jsonl"):
            _copy_atomic(sources[0] / name, out / name)
    plan = read_jsonl(out / "plan.jsonl")
    for src in sources:
        if read_jsonl(src / "plan.jsonl") != plan:
            raise ValueError(f"{src}: its plan differs from {out / 'plan.jsonl'}: not a shard of this corpus")
        for item in plan:
            record = Path("records") / f"{item['id']}.json"
            if (out / record).exists() or not (src / record).exists():
                continue
            made = read_json(src / record)
            for rel in (made.get("audio"), made.get("phones")):  # none for a failed utterance
                if rel:
                    _copy_atomic(src / rel, out / rel)
            _copy_atomic(src / record, out / record)
    missing = [item["id"] for item in plan if not (out / "records" / f"{item['id']}.json").exists()]
    if missing:
        raise ValueError(f"{out}: {len(missing)} planned utterances are not made yet (first: {missing[0]}); "
                         "run the missing shards (corpus synth --shard i/N), then merge again")
    return _finish(out, plan, {"merged_from": [str(s) for s in sources]})


def _copy_atomic(src: Path, dst: Path) -> None:
    import shutil

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _finish(out: Path, plan: list[dict], last_run: dict) -> Path:
    utterances, failures = [], []
    for item in plan:
        record = read_json(out / "records" / f"{item['id']}.json")
        if "failed" in record:
            failures.append(record)
        else:
            utterances.append(Utterance(**record))
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, utterances)
    write_jsonl(out / "failures.jsonl", failures)
    hours: dict[str, dict[str, float]] = {}
    for u in utterances:
        for key in (f"split/{u.split}", f"engine/{u.source}", f"language/{u.language}"):
            group, name = key.split("/")
            hours.setdefault(group, {}).setdefault(name, 0.0)
            hours[group][name] += u.duration_s / 3600
    stats = {
        "utterances": len(utterances), "failed": len(failures),
        "hours": round(sum(u.duration_s for u in utterances) / 3600, 4),
        "voices": len({u.voice for u in utterances}),
        "voices_per_split": {s: len({u.voice for u in utterances if u.split == s}) for s in ("train", "val", "test")},
        "hours_by": {g: {k: round(v, 4) for k, v in d.items()} for g, d in hours.items()},
        "last_run": last_run,
    }
    write_json(out / "stats.json", stats)
    log.info("corpus: %s", json.dumps(stats))
    return manifest
