"""The `distilface` command: parses arguments and dispatches to the pipeline stages."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


MAX_FPS = 1000.0  # animation rates are 24-120 fps; a typo like 1e9 would ask for gigabytes of frames


def _fps(text: str) -> float:
    """--fps: a finite rate in (0, MAX_FPS]."""
    try:
        fps = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < fps <= MAX_FPS:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is not a frame rate in (0, {MAX_FPS:g}] fps")
    return fps


def _threads(text: str) -> int:
    """--threads: a count of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least 1 thread")
    return n


def _corpus_synth(a: argparse.Namespace) -> None:
    from distilface.corpus.synth import SynthConfig, synth_corpus
    from distilface.distributed import Shard

    cfg = SynthConfig(hours=a.hours, languages=tuple(a.languages.split(",")), max_voices=a.max_voices,
                      augment_fraction=a.augment_fraction, seed=a.seed,
                      engines=tuple(a.engines.split(",")) if a.engines else None)
    manifest = synth_corpus(cfg, a.out, workers=a.workers, shard=Shard.parse(a.shard))
    if manifest is None:  # other shards are still missing
        print(f"shard {a.shard} done; the last shard to finish writes {Path(a.out) / 'manifest.jsonl'}")
        return
    print(json.dumps(json.loads((manifest.parent / "stats.json").read_text()), indent=2))
    print(f"manifest: {manifest}")


def _corpus_merge(a: argparse.Namespace) -> None:
    from distilface.corpus.synth import merge_corpus

    print(f"manifest: {merge_corpus(a.out, a.shard_dirs)}")


def _corpus_check(a: argparse.Namespace) -> None:
    from distilface.corpus.check import check_corpus, format_markdown, write_check_report

    report = check_corpus(a.manifest, per_source=a.per_source, seed=a.seed, workers=a.workers)
    if a.out:
        write_check_report(report, f"{a.out}.json", f"{a.out}.md")
    print(format_markdown(report))


def _corpus_ingest(a: argparse.Namespace) -> None:
    from distilface.corpus.ingest import ingest_folder, ingest_recipe

    if bool(a.recipe) == bool(a.src):
        sys.exit("distilface corpus ingest: give a source folder or --recipe, not both")
    manifest = (ingest_recipe(a.recipe, a.out, workers=a.workers) if a.recipe
                else ingest_folder(a.src, a.out, language=a.language, workers=a.workers))
    print(f"manifest: {manifest}")


def _label(a: argparse.Namespace) -> None:
    from distilface.distributed import Shard
    from distilface.label import LabelJob, run_labels

    options = json.loads(a.teacher_options) if a.teacher_options else {}
    out = run_labels(LabelJob(Path(a.manifest), Path(a.out), teacher=a.teacher, teacher_options=options,
                              fps=a.fps, shard_size=a.shard_size, workers=a.workers, shard=Shard.parse(a.shard)))
    print(f"labels: {out}")


def _score(a: argparse.Namespace) -> None:
    from distilface.fileio import write_json
    from distilface.score import score_labels

    result = score_labels(a.manifest, a.labels, split=a.split, clean_only=not a.all)
    if a.out:
        write_json(a.out, result)
    print(json.dumps(result, indent=2))


def _render(a: argparse.Namespace) -> None:
    from distilface.render_cmd import render_command

    paths = render_command(a.curves, a.audio, a.out, phones=a.phones, max_frames=a.max_frames, size_px=a.size)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))


def _train(a: argparse.Namespace) -> None:
    from distilface.train import load_config, train

    overrides = list(a.set or [])
    if a.stage:
        overrides.append(f'stage="{a.stage}"')
    if a.teacher2:
        overrides.append(f'teacher2="{a.teacher2}"')
    cfg = load_config(a.config, overrides)
    best = train(cfg, a.out, device=a.device)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: one line, not one per rank
        print(f"best checkpoint: {best}")


def _animate(a: argparse.Namespace) -> None:
    from distilface.animate import animate_command, configure_torch
    from distilface.batch import REPORT_NAME, animate_batch, is_batch
    from distilface.models import resolve_model
    from distilface.runtime.streaming import parse_weights

    configure_torch(a.threads)  # a .onnx model runs in onnxruntime alone (docs/runtime.md)
    if is_batch(a.audio):
        report = animate_batch(a.audio, a.out, resolve_model(a.model), fps=a.fps, fmt=a.format, block_s=a.block_s,
                               smooth=parse_weights(a.smooth), frame_grid=a.frame_grid, runtime=a.runtime,
                               jobs=a.jobs, progress=not a.no_progress, threads=a.threads)
        rtf = f", {report['realtime_factor']}x real time" if report["realtime_factor"] else ""
        print(f"{report['animated']} animated, {report['skipped']} already done, {report['failed']} failed "
              f"of {report['files']} files ({report['audio_s']:.1f} s of audio{rtf}): {a.out}/{REPORT_NAME}")
        if report["failed"]:
            for f in report["failures"][:10]:
                print(f"  {f['audio']}: {f['error']}", file=sys.stderr)
            more = report["failed"] - 10
            sys.exit(f"distilface animate: {report['failed']} file(s) failed"
                     + (f" ({more} more in {a.out}/{REPORT_NAME})" if more > 0 else ""))
        return
    out = animate_command(a.audio[0], a.out, resolve_model(a.model), fps=a.fps, fmt=a.format,
                          block_s=a.block_s, progress=not a.no_progress, smooth=parse_weights(a.smooth),
                          frame_grid=a.frame_grid, runtime=a.runtime)
    print(f"wrote: {out}")


def _export(a: argparse.Namespace) -> None:
    from distilface.fileio import check_output
    from distilface.info import refuse_export
    from distilface.models import resolve_model

    # Every check before anything is loaded or written: a refused run leaves the file at -o, and
    # an old engine kit beside it, as they were.
    if a.native:
        if a.int8 or a.eval_sets:
            raise SystemExit("export --native: no --int8 or --eval-sets (the C step is fp32, or fp16 weights with --half)")
        if a.engine_kit and a.kit_target == "web" and a.march is not None:
            raise SystemExit("export --kit-target web: no --march (WebAssembly has no CPU level)")
    elif a.half or a.engine_kit:
        raise SystemExit(f"export --{'half' if a.half else 'engine-kit'}: for the native runtime (add --native)")
    out = Path(a.out)
    _export_suffix(out, a.native, a.engine_kit)
    path = resolve_model(a.model)
    refuse_export(path)
    kit = None
    if a.engine_kit:
        from distilface.runtime.kit import DEFAULT_MARCH, plan_engine_kit

        default = DEFAULT_MARCH if a.kit_target == "host" else "x86-64-v3"
        march = {None: default, "portable": None}.get(a.march, a.march)
        # a level asked for by name is built or refused, never quietly swapped for a portable build
        kit = plan_engine_kit(out, march=march, target=a.kit_target, strict_march=a.march is not None)

    import torch

    from distilface.checkpoint import load_student
    from distilface.runtime.export import export_model

    if a.threads:
        torch.set_num_threads(a.threads)
    from distilface.student import on_frame_grid

    model = on_frame_grid(load_student(path)[0], a.frame_grid)
    # last of the checks, as it makes the folder: the writers' own errors would name temporary files
    check_output(out)
    if a.native:
        if kit is not None:
            from distilface.runtime.kit import export_engine_kit

            report = export_engine_kit(model, kit, fps=a.fps, source=a.model or path.stem, half=a.half)
        else:
            from distilface.runtime.native import export_native

            report = export_native(model, out, fps=a.fps, source=a.model or path.stem, half=a.half)
        print(json.dumps(report, indent=2))
        return
    report = export_model(model, out, streaming=a.streaming, int8=a.int8, fps=a.fps,
                          source=a.model or path.stem)
    print(json.dumps(report, indent=2))
    if a.eval_sets:
        from distilface.runtime.quality import int8_quality

        out = a.eval_out or str(Path(a.out).with_suffix("")) + "-quality"
        int8_quality(model, a.out, out, test_sets=tuple(a.eval_sets.split(",")), max_utterances=a.max_utterances,
                     fps=a.fps, corpus=a.corpus, real=a.real)
        print((Path(out) / "int8.md").read_text())


def _export_suffix(out: Path, native: bool, engine_kit: bool) -> None:
    """Refuse an -o whose suffix is not the format written: `animate --model` (and the loaders)
    pick the runtime by the exact suffix, so an ONNX graph in x.npz or x.ONNX would not load."""
    want = (".dfn",) if engine_kit else (".npz", ".dfn") if native else (".onnx",)
    if out.suffix in want:
        return
    if out.suffix.lower() in want:
        raise SystemExit(f"distilface export: {out}: name it {out.stem}{out.suffix.lower()} (lowercase): animate "
                         f"--model tells the formats apart by the suffix")
    if engine_kit:
        raise SystemExit(f"distilface export: {out}: an engine kit goes with a .dfn file (the C loader's format)")
    if native:
        raise SystemExit(f"distilface export: {out}: --native writes a .npz (for Python) or a .dfn (for C callers)")
    raise SystemExit(f"distilface export: {out}: an ONNX export is written to a .onnx file (--native writes "
                     f".npz or .dfn)")


def _info(a: argparse.Namespace) -> None:
    from distilface.info import checkpoint_info, format_info
    from distilface.models import resolve_model

    d = checkpoint_info(str(resolve_model(a.model)))
    print(json.dumps(d, indent=2, default=str) if a.json else format_info(d))


def _bench_runtime(a: argparse.Namespace) -> None:
    from distilface.models import registry
    from distilface.runtime.bench import bench_runtime, format_markdown, speed_summary, write_results

    names = a.models or list(registry()["models"])
    result = bench_runtime(names, Path(a.onnx_dir), frames=a.frames, offline_s=a.offline_s,
                           memory_s=a.memory_s, latency_s=a.latency_s, equality_seeds=a.equality_seeds,
                           frame_grid=a.frame_grid)
    if a.out:
        write_results(result, a.out)
    print(format_markdown(result))
    print(speed_summary(result))


def _bench_soak(a: argparse.Namespace) -> None:
    from distilface.runtime.soak import SoakConfig, format_summary, soak, write_results

    r = soak(SoakConfig(audio_s=a.audio_s, speed=a.speed, model=a.model, fps=a.fps, slow_ms=a.slow_ms,
                        max_growth_mb=a.max_growth_mb))
    if a.out:
        write_results(r, a.out)
    print(format_summary(r))
    if not r["passed"]:
        sys.exit("distilface bench soak: failed (frames lost or duplicated, server died, or memory grew)")


def _bench(a: argparse.Namespace) -> None:
    from distilface.bench import bench_train, format_bench, write_bench

    widths = tuple(int(w) for w in a.widths.split(","))
    result = bench_train(widths=widths, seconds=a.seconds, min_steps=a.min_steps, threads=a.threads,
                         manifest=a.manifest, labels=a.labels)
    if a.out:
        write_bench(result, a.out)
    print(format_bench(result))


def _eval(a: argparse.Namespace) -> None:
    from distilface.evaluate import evaluate

    models: dict[str, str | None] = {} if a.no_teacher else {"teacher": None}
    for item in a.model:
        name, sep, path = item.partition("=")
        if not sep:
            sys.exit(f"distilface eval: --model expects NAME=CHECKPOINT, got {item!r}")
        models[name] = path
    from distilface.smoothing import parse_weights

    evaluate(models, a.out, tuple(a.sets.split(",")), a.max_utterances, a.fps, a.seed, a.corpus, a.real,
             cache_dir=a.cache_dir, timing_runs=a.timing_runs, smooth=parse_weights(a.smooth),
             frame_grid=a.frame_grid)
    print((Path(a.out) / "eval.md").read_text())


def _experiment(a: argparse.Namespace) -> None:
    if a.which == "paper-table":
        from distilface.experiment import run_paper_table

        rows = [r.strip() for r in a.rows.split(",")] if a.rows else None
        delay = None
        if a.feat_delay is not None:
            try:
                delay = tuple(float(v) for v in a.feat_delay.split(","))
                assert len(delay) == 2 and all(0 <= v <= 1 for v in delay)
            except (ValueError, AssertionError):
                raise SystemExit(f"--feat-delay {a.feat_delay!r}: expected OFF,RAMP, two fractions of the steps "
                                 "in [0, 1], e.g. 0.375,0.25 (0,0: the paper's, from step 0)") from None
        run_paper_table(a.out, a.scale, rows=rows, docs=a.docs, threads=a.threads, steps=a.steps,
                        teacher2=a.teacher2, jobs=a.jobs, device=a.device, feat_delay=delay,
                        docs_section=a.docs_section)
        print((Path(a.out) / "results.md").read_text())
    else:
        from distilface.peers import run_peers

        report = run_peers(a.out, test_sets=tuple(a.sets.split(",")), max_utterances=a.max_utterances)
        print((Path(a.out) / "peers.md").read_text() if (Path(a.out) / "peers.md").exists() else report)


def _stream(a: argparse.Namespace) -> None:
    from distilface.animate import load_model
    from distilface.models import resolve_model
    from distilface.runtime.live import StreamConfig, run_stream
    from distilface.runtime.streaming import parse_weights

    if a.list_devices:
        from distilface.runtime.sources import import_sounddevice

        print(import_sounddevice().query_devices())
        return
    cfg = StreamConfig(input=a.input, outputs=tuple(a.output or ["ndjson"]), fps=a.fps, host=a.host,
                       ws_port=a.ws_port, osc_host=a.osc_host, osc_port=a.osc_port, osc_names=a.osc_names,
                       livelink_host=a.livelink_host, livelink_port=a.livelink_port,
                       livelink_subject=a.livelink_subject,
                       rate_hz=a.rate, pcm_format=a.pcm_format, device=a.device, realtime=a.realtime,
                       chunk_ms=a.chunk_ms, ws_max_message_bytes=a.ws_max_bytes, ws_queue_messages=a.ws_queue,
                       ws_origins=tuple(a.ws_origin) if a.ws_origin else None, wait_viewers=a.wait_viewers,
                       priority=a.priority)
    path = resolve_model(a.model, live=True)
    if path.suffix not in (".onnx", ".npz", ".dfn"):  # an ONNX or native export streams without torch
        from distilface.animate import configure_torch

        configure_torch(a.threads)
    stats = run_stream(load_model(path, parse_weights(a.smooth), ort_threads=a.threads, frame_grid=a.frame_grid,
                                  runtime=a.runtime), cfg)
    print(f"stream: {json.dumps(stats)}", file=sys.stderr)  # stdout may carry the frames
    if stats.get("interrupted") and cfg.input_kind == "wav":
        # A file has an end: stopping before it is an interruption (scripts must see it), while
        # stopping a microphone, stdin or WebSocket stream is how it normally ends.
        print(f"distilface stream: interrupted before the end of {a.input[4:]}", file=sys.stderr)
        sys.exit(128 + stats.get("signal", 2))  # 130 for Ctrl-C (SIGINT), 143 for SIGTERM


def _view(a: argparse.Namespace) -> None:
    from distilface.view import ViewConfig, default_cache_dir, serve

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cfg = ViewConfig(audio=a.audio, model=a.model, host=a.host, port=a.port, fps=a.fps, mode=a.mode,
                     live_url=a.ws, cache_dir=Path(a.cache_dir) if a.cache_dir else default_cache_dir())
    serve(cfg, browser=not a.no_browser)


def _demo(a: argparse.Namespace) -> None:
    from distilface.demo import run_demo

    run_demo(Path(a.out), workers=a.workers)


def _add_runtime(p: argparse.ArgumentParser) -> None:
    """--runtime of animate and stream (`distilface.animate.load_model`)."""
    p.add_argument("--runtime", choices=("auto", "torch", "native"), default="auto",
                   help="where a checkpoint or shipped model runs. native: the C runtime (conv students and the "
                        "default's frozen Whisper front end; built on first use with the machine's C compiler; the "
                        "same frames within 1e-5 for a fraction of torch's CPU per frame: docs/performance.md). "
                        "auto (default): native where the student has a C step and a compiler is there, else torch. "
                        "A .npz or .dfn export always runs in C, an .onnx one in onnxruntime")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distilface", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="build, check and ingest speech corpora").add_subparsers(
        dest="corpus_command", required=True)
    s = corpus.add_parser("synth", help="synthesise a multi-voice corpus with exact phone timings")
    s.add_argument("--out", required=True, help="corpus folder (resumed if it exists)")
    s.add_argument("--hours", type=float, default=1.0)
    s.add_argument("--languages", default="en", help="comma-separated, first one gets the bulk")
    s.add_argument("--engines", default=None, help="comma-separated subset of engines")
    s.add_argument("--max-voices", type=int, default=None)
    s.add_argument("--augment-fraction", type=float, default=0.5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--shard", default=None, metavar="I/N",
                   help="make only shard I of N (0-based) into --out, e.g. one task of a batch array job; "
                        "the last shard to finish writes the manifest (docs/scaling.md)")
    s.set_defaults(func=_corpus_synth)

    mg = corpus.add_parser("merge", help="write the manifest of a corpus made by shards (copying in shards "
                           "made in other folders)")
    mg.add_argument("out", help="the corpus folder")
    mg.add_argument("shard_dirs", nargs="*", help="folders that shards of the same corpus were made in")
    mg.set_defaults(func=_corpus_merge)

    c = corpus.add_parser("check", help="measure phone-timing accuracy per engine by forced alignment")
    c.add_argument("manifest")
    c.add_argument("--per-source", type=int, default=30)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    c.set_defaults(func=_corpus_check)

    i = corpus.add_parser("ingest", help="forced-align a folder of real speech into a corpus")
    i.add_argument("src", nargs="?", help="folder: LibriSpeech layout or x.wav + x.txt pairs")
    i.add_argument("--recipe", choices=["asterisk-en"], default=None)
    i.add_argument("--out", required=True)
    i.add_argument("--language", default="en")
    i.add_argument("--workers", type=int, default=2)
    i.set_defaults(func=_corpus_ingest)

    lb = sub.add_parser("label", help="run a teacher over a manifest into label shards")
    lb.add_argument("manifest")
    lb.add_argument("--out", required=True)
    lb.add_argument("--teacher", default="aligned")
    lb.add_argument("--teacher-options", default=None, help='JSON, e.g. \'{"blinks": true}\'')
    lb.add_argument("--fps", type=_fps, default=30.0)
    lb.add_argument("--shard-size", type=int, default=256)
    lb.add_argument("--workers", type=int, default=2)
    lb.add_argument("--shard", default=None, metavar="I/N",
                    help="label only shard I of N (0-based) into --out; the folder is complete when all N have run")
    lb.set_defaults(func=_label)

    sc = sub.add_parser("score", help="lip metrics of labels against their phone timings")
    sc.add_argument("manifest")
    sc.add_argument("labels")
    sc.add_argument("--split", default=None)
    sc.add_argument("--all", action="store_true", help="include augmented utterances")
    sc.add_argument("--out", default=None, help="write the result as JSON")
    sc.set_defaults(func=_score)

    r = sub.add_parser("render", help="render curves on the face: frames, GIF/MP4, lip-trajectory plot")
    r.add_argument("curves", help="curves file (.json or .npz)")
    r.add_argument("audio")
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument("--phones", default=None, help="phone timings to write under the lip plot")
    r.add_argument("--max-frames", type=int, default=None)
    r.add_argument("--size", type=int, default=256, help="frame size in pixels")
    r.set_defaults(func=_render)

    t = sub.add_parser("train", help="distil teacher labels into a student (resumes a killed run)")
    t.add_argument("--config", default=None, help="TOML file (see configs/)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.steps=100 --set student.channels=72")
    t.add_argument("--stage", choices=("hetero", "finetune", "hybrid"), default=None,
                   help="override the config's stage (hybrid: a frozen student supervises features)")
    t.add_argument("--teacher2", default=None, help="hybrid: checkpoint of the frozen second teacher")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: under torchrun each process uses GPU LOCAL_RANK (NCCL); data-parallel runs: "
                        "torchrun --nproc_per_node N -m distilface.cli train ... (docs/scaling.md)")
    t.set_defaults(func=_train)

    an = sub.add_parser("animate", help="audio -> curves with a student (JSON, Live Link Face CSV, "
                        "Rhubarb cues, Oculus visemes, glTF face animation)")
    an.add_argument("audio", nargs="+",
                    help="wav, flac, ogg, mp3 (or anything ffmpeg decodes); any rate, stereo ok. Several files or a "
                         "folder (walked for audio files): a batch, written into the folder -o")
    an.add_argument("-o", "--out", required=True,
                    help="format from the extension: .json .npz .csv (Live Link Face) .tsv / .rhubarb.json "
                         "(Rhubarb mouth cues) .oculus.json / .oculus.csv (15 Oculus visemes) .vrm.json / .vrm.csv (VRM "
                         "vowel and blink presets) .glb (glTF: the face with "
                         "52 ARKit morph targets and the animation, for Blender / three.js). For a batch: a folder, "
                         "the inputs' folders mirrored in it, format from --format (default json); re-running skips "
                         "what is done (log and report: animate-batch.jsonl, animate-batch.json)")
    an.add_argument("--jobs", type=int, default=1,
                    help="a batch's files animated at once, one process and one thread each (default 1)")
    an.add_argument("--model", default=None, help="student checkpoint, .onnx or native .npz/.dfn export (distilface export), or shipped model name (default: the shipped default)")
    an.add_argument("--fps", type=_fps, default=30.0)
    an.add_argument("--format", default=None, metavar="FORMAT",
                    help="json, npz, csv, rhubarb-tsv, rhubarb-json, oculus, oculus-json, oculus-csv, vrm, vrm-json, vrm-csv, "
                         "glb (default: "
                         "from -o's extension). A batch takes several, comma-separated (--format csv,glb): each file "
                         "is animated once and written in each")
    an.add_argument("--block-s", type=float, default=60.0, help="seconds of audio read at a time")
    an.add_argument("--threads", type=_threads, default=None)
    an.add_argument("--no-progress", action="store_true")
    an.add_argument("--smooth", nargs="?", const="default", default=None, metavar="W0,W1,W2",
                    help="ensemble smoothing (paper Sec. 3.4): average the predictions at t - 16.7 ms, t, t + 16.7 ms with these weights (default 0.25,0.5,0.25); adds 16.7 ms latency")
    an.add_argument("--frame-grid", type=int, default=None, metavar="N",
                    help="round frame times to a multiple of N samples (16 kHz). 80 (5 ms) or 160: a conv student then computes "
                    "one shared encoder sequence for all frames instead of one per phase, about 30 %% less CPU "
                    "per 30 fps frame for C0/4 (docs/performance.md); frames move by up to N/2 samples. "
                    "Default: the model's own (1: exact)")
    _add_runtime(an)
    an.set_defaults(func=_animate)

    ex = sub.add_parser("export", help="a student as an ONNX graph (windowed or streaming, optionally int8), "
                        "checked against torch on real speech before it is written")
    ex.add_argument("model", nargs="?", default=None, help="checkpoint or shipped model name (default: shipped default)")
    ex.add_argument("-o", "--out", required=True, help="the .onnx file to write (.npz or .dfn with --native)")
    ex.add_argument("--native", action="store_true",
                    help="the student for the C runtime instead (conv or whisper_conv): .npz (Python, numpy only) or .dfn (the C API of "
                         "csrc/dfstep.h, for engines; checked by loading and streaming it in C); compiles the runtime "
                         "with the machine's C compiler (docs/runtime.md)")
    ex.add_argument("--streaming", action="store_true",
                    help="the streaming graph (new audio + cached encoder state in, frames + state out); "
                         "default: the windowed graph (one window in, one frame out)")
    ex.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (onnxruntime)")
    ex.add_argument("--half", action="store_true",
                    help="with --native: weight matrices stored in IEEE half precision, about half the file "
                         "(loaders widen them to float: the same speed); checked against torch with the same "
                         "rounding, the report gives the difference from full precision as vs_fp32")
    ex.add_argument("--engine-kit", action="store_true",
                    help="with --native -o DIR/NAME.dfn: also write the C runtime as libdistilface.so (built for "
                         "--march, not this machine), dfstep.h, the C# binding DistilFace.cs with Example.cs, and "
                         "kit.json (sha256 sums) into DIR, for an engine or plugin (docs/engines.md)")
    ex.add_argument("--kit-target", choices=("host", "windows", "web"), default="host",
                    help="--engine-kit: the library for this machine's OS (libdistilface.so here), distilface.dll "
                         "for x86-64 Windows, cross-compiled with MinGW-w64 (scripts/setup-extra.sh windows), or "
                         "web: distilface.wasm and distilface.js for browsers and Node, with examples")
    ex.add_argument("--march", default=None, metavar="LEVEL",
                    help="--engine-kit: the CPU level the library is compiled for (default x86-64-v3 on x86: AVX2 "
                         "and FMA; 'native': this machine's; 'portable': the compiler's default)")
    ex.add_argument("--frame-grid", type=int, default=None, metavar="N",
                    help="round frame times to a multiple of N samples (16 kHz). 80 (5 ms) or 160: a conv student then computes "
                    "one shared encoder sequence for all frames instead of one per phase, about 30 %% less CPU "
                    "per 30 fps frame for C0/4 (docs/performance.md); frames move by up to N/2 samples. "
                    "Default: the model's own (1: exact)")
    ex.add_argument("--fps", type=_fps, default=30.0, help="frame rate of the checks")
    ex.add_argument("--eval-sets", default=None, metavar="SETS",
                    help="also score the export beside the torch model on these eval test sets, e.g. clean,real")
    ex.add_argument("--max-utterances", type=int, default=30, help="per eval test set")
    ex.add_argument("--eval-out", default=None, help="folder of the scores (default: <out>-quality)")
    ex.add_argument("--corpus", default="runs/corpus-20h/manifest.jsonl")
    ex.add_argument("--real", default="runs/asterisk-en/manifest.jsonl")
    ex.add_argument("--threads", type=_threads, default=None)
    ex.set_defaults(func=_export)

    inf = sub.add_parser("info", help="parameters, MACs per frame, memory, receptive field, future context")
    inf.add_argument("model", nargs="?", default=None, help="checkpoint or shipped model name (default: shipped default)")
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=_info)

    bn = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    bt = bn.add_parser("train", help="seconds of audio trained per second: shared encoder vs per-window")
    bt.add_argument("--widths", default="288,144,72")
    bt.add_argument("--seconds", type=float, default=60.0, help="time budget per width and mode")
    bt.add_argument("--min-steps", type=int, default=3)
    bt.add_argument("--threads", type=_threads, default=1)
    bt.add_argument("--manifest", default=None, help="with --labels: real batches instead of random audio")
    bt.add_argument("--labels", default=None)
    bt.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    bt.set_defaults(func=_bench)
    br = bn.add_parser("runtime", help="per-frame CPU time (windowed vs streaming, torch vs onnxruntime, fp32 vs "
                       "int8), offline real-time factor, peak memory, loopback latency of shipped models")
    br.add_argument("models", nargs="*", help="shipped model names or checkpoints (default: every shipped model)")
    br.add_argument("--frames", type=int, default=300, help="frames timed per runtime and graph")
    br.add_argument("--offline-s", type=float, default=600.0, help="length of the offline file, seconds")
    br.add_argument("--memory-s", type=float, default=60.0, help="audio streamed by the memory probe, seconds")
    br.add_argument("--latency-s", type=float, default=20.0, help="audio sent over loopback, seconds (0: skip)")
    br.add_argument("--equality-seeds", type=int, default=3, help="random chunkings per runtime (0: skip)")
    br.add_argument("--frame-grid", type=int, default=None, metavar="N",
                    help="frame times on a grid of N samples, as for animate (default: each model's own)")
    br.add_argument("--onnx-dir", default="runs/runtime-bench", help="where the exported graphs go")
    br.add_argument("--out", default=None, help="write <out>.json, <out>.md and <out>.png")
    br.set_defaults(func=_bench_runtime)
    bs = bn.add_parser("soak", help="a long stream through `distilface stream` over loopback with a good, a slow "
                       "and a disconnecting viewer: frames lost / duplicated, server memory over time")
    bs.add_argument("--audio-s", type=float, default=1800.0, help="seconds of audio streamed (30 min)")
    bs.add_argument("--speed", type=float, default=10.0, help="x real time the sender keeps to")
    bs.add_argument("--model", default=None, help="checkpoint, .onnx or shipped name (default: the shipped default)")
    bs.add_argument("--fps", type=_fps, default=30.0)
    bs.add_argument("--slow-ms", type=float, default=50.0, help="the slow viewer's pause per frame")
    bs.add_argument("--max-growth-mb", type=float, default=10.0, help="allowed server RSS growth (fails above)")
    bs.add_argument("--out", default=None, help="write <out>.json, <out>.md and <out>.png")
    bs.set_defaults(func=_bench_soak)

    e = sub.add_parser("eval", help="score students and the teacher on the named test sets")
    e.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                   help="a student checkpoint under a display name (repeatable)")
    e.add_argument("--no-teacher", action="store_true", help="leave out the teacher row")
    e.add_argument("--out", required=True)
    e.add_argument("--sets", default="clean,noisy10,noisy0,telephone,real,de,es")
    e.add_argument("--max-utterances", type=int, default=200)
    e.add_argument("--fps", type=_fps, default=30.0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--corpus", default="runs/corpus-20h/manifest.jsonl")
    e.add_argument("--real", default="runs/asterisk-en/manifest.jsonl")
    e.add_argument("--cache-dir", default=None)
    e.add_argument("--timing-runs", type=int, default=50)
    e.add_argument("--smooth", nargs="?", const="default", default=None, metavar="W0,W1,W2",
                   help="also score every student ensemble-smoothed, as '<name> smoothed' (weights as for animate)")
    e.add_argument("--frame-grid", type=int, default=None, metavar="N",
                    help="round frame times to a multiple of N samples (16 kHz). 80 (5 ms) or 160: a conv student then computes "
                    "one shared encoder sequence for all frames instead of one per phase, about 30 %% less CPU "
                    "per 30 fps frame for C0/4 (docs/performance.md); frames move by up to N/2 samples. "
                    "Default: the model's own (1: exact)")
    e.set_defaults(func=_eval)

    x = sub.add_parser("experiment", help="paper-table: every row of the paper's Table 2 on our data; peers: other lip-sync tools side by side")
    x.add_argument("which", choices=("paper-table", "peers"))
    x.add_argument("--scale", choices=("smoke", "full"), default="smoke",
                   help="paper-table: smoke = tiny corpus, a few steps (checks the machinery); full = the 20 h corpus")
    x.add_argument("--rows", default=None, help="paper-table: comma-separated row names or slugs (default: all)")
    x.add_argument("--docs", default=None, help="paper-table: also publish the table into this markdown file")
    x.add_argument("--docs-section", default="paper-table", metavar="NAME",
                   help="paper-table: the block of --docs this table replaces, and its figures' prefix; another "
                        "name puts rows trained later beside an earlier table (default: paper-table)")
    x.add_argument("--threads", type=_threads, default=None,
                   help="paper-table: torch threads per training (default: the scale's; 1 beside other work)")
    x.add_argument("--steps", type=int, default=None, help="paper-table: steps per hetero / hybrid row (default: the scale's)")
    x.add_argument("--teacher2", default=None, metavar="MODEL",
                   help="paper-table: hybrid rows learn from this shipped model or checkpoint instead of the C0 row")
    x.add_argument("--jobs", type=int, default=1, help="paper-table: rows trained at once (each with --threads)")
    x.add_argument("--feat-delay", default=None, metavar="OFF,RAMP",
                   help="paper-table: hybrid rows' feature term off for this fraction of the steps, then ramped in "
                        "over the next RAMP (default 0.375,0.25; 0,0: the paper's, on from step 0)")
    x.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="paper-table: where the rows train (cuda: a GPU; scoring stays on the CPU)")
    x.add_argument("--sets", default="clean,noisy10,real", help="peers: test sets")
    x.add_argument("--max-utterances", type=int, default=50, help="peers: per test set")
    x.add_argument("--out", required=True)
    x.set_defaults(func=_experiment)

    st = sub.add_parser("stream", help="real time: live audio in (microphone, stdin PCM, a file, WebSocket), "
                        "frames out (NDJSON, WebSocket JSON, VMC OSC, Live Link Face UDP, CSV); docs/stream.md")
    st.add_argument("--input", default="mic", metavar="mic|stdin|wav:PATH|ws",
                    help="mic: the default (or --device) input; stdin: raw mono PCM (--rate, --pcm-format); "
                         "wav:PATH: any audio file, at real-time pace unless --no-realtime; ws: PCM over "
                         "WebSocket to ws://HOST:WS_PORT/audio (one sender at a time)")
    st.add_argument("--output", action="append", default=None, metavar="ndjson|ws|osc|livelink|csv:PATH",
                    help="repeatable (default ndjson): ndjson: a JSON frame per line on stdout; ws: JSON frames to "
                         "WebSocket clients of ws://HOST:WS_PORT/frames; osc: VMC protocol (/VMC/Ext/Blend/Val + "
                         "/VMC/Ext/Blend/Apply per frame) over UDP to --osc-host:--osc-port; livelink: Live Link Face "
                         "packets (as the iPhone app sends Unreal) over UDP to --livelink-host:--livelink-port; "
                         "csv:PATH: Live Link Face CSV layout (as `animate -o x.csv`), a row per frame")
    st.add_argument("--model", default=None,
                    help="checkpoint, .onnx or native .npz/.dfn export, or shipped model name (default: the shipped "
                         "live default, whose future context is short enough for live avatars: docs/stream.md)")
    st.add_argument("--smooth", nargs="?", const="default", default=None, metavar="W0,W1,W2",
                    help="ensemble smoothing as for animate (adds 16.7 ms latency)")
    st.add_argument("--frame-grid", type=int, default=None, metavar="N",
                    help="round frame times to a multiple of N samples (16 kHz). 80 (5 ms) or 160: a conv student then computes "
                    "one shared encoder sequence for all frames instead of one per phase, about 30 %% less CPU "
                    "per 30 fps frame for C0/4 (docs/performance.md); frames move by up to N/2 samples. "
                    "Default: the model's own (1: exact)")
    st.add_argument("--fps", type=_fps, default=30.0)
    _add_runtime(st)
    st.add_argument("--rate", type=int, default=16000, help="sample rate of stdin / WebSocket PCM (a WebSocket sender "
                    "may also say /audio?rate=48000&format=f32le)")
    st.add_argument("--pcm-format", default="s16le", choices=["s16le", "f32le"], help="stdin / WebSocket PCM, mono")
    st.add_argument("--device", default=None, help="microphone: index or part of its name (see --list-devices)")
    st.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    st.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                    help="wav: play at real-time pace (--no-realtime: as fast as the model goes)")
    st.add_argument("--chunk-ms", type=float, default=20.0, help="audio per stdin read, microphone block, wav chunk")
    st.add_argument("--host", default="127.0.0.1", help="address the WebSocket server binds to (0.0.0.0: all)")
    st.add_argument("--ws-port", "--port", type=int, default=8765, help="WebSocket server port (0: any free port)")
    st.add_argument("--ws-max-bytes", type=int, default=65536, help="largest WebSocket audio message taken")
    st.add_argument("--ws-queue", type=int, default=64,
                    help="frames queued per WebSocket client; past that its oldest are dropped")
    st.add_argument("--ws-origin", action="append", default=None, metavar="ORIGIN",
                    help="allowed browser Origin (repeatable; default: any)")
    st.add_argument("--wait-viewers", type=int, default=0, metavar="N",
                    help="start the input once N WebSocket frame clients are connected")
    st.add_argument("--osc-host", default="127.0.0.1", help="where OSC goes")
    st.add_argument("--osc-port", type=int, default=39539, help="OSC port (39539: the VMC default)")
    st.add_argument("--osc-names", default="perfect-sync", choices=["perfect-sync", "arkit", "vrm0", "vrm1"],
                    help="blendshapes sent: the 52 as perfect-sync JawOpen (VRM perfect-sync clips) or arkit jawOpen; "
                         "or, for VRM avatars without ARKit shapes, the 5 vowels and 2 blinks they have: vrm0 "
                         "A I U E O Blink_L Blink_R (VRM 0.x clips: VSeeFace, VNyan) or vrm1 aa ih ou ee oh "
                         "blinkLeft blinkRight (docs/stream.md)")
    st.add_argument("--livelink-host", default="127.0.0.1", help="where Live Link Face packets go (the Unreal machine)")
    st.add_argument("--livelink-port", type=int, default=11111, help="Live Link Face port (11111: Unreal's default)")
    st.add_argument("--livelink-subject", default="DistilFace", help="subject name shown in Unreal's Live Link panel")
    st.add_argument("--threads", type=_threads, default=None, help="torch / onnxruntime threads")
    st.add_argument("--priority", default="normal", choices=["normal", "high", "realtime"],
                    help="of the threads from audio to frames: high (nice -10) or realtime (SCHED_FIFO, Linux) keeps "
                         "the p99 latency near the idle one when every core is busy; needs root or CAP_SYS_NICE "
                         "(docs/stream.md)")
    st.set_defaults(func=_stream)

    vw = sub.add_parser("view", help="the face in a browser (three.js): a clip and its curves, a live stream, or the "
                        "student in onnxruntime-web; serves on localhost and prints the URL; docs/viewer.md")
    vw.add_argument("audio", nargs="?", default=None, help="the clip the page opens with (default: the bundled example)")
    vw.add_argument("--model", default=None,
                    help="model selected first: shipped name, checkpoint or windowed .onnx (default: the shipped default)")
    vw.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all; no TLS, no authentication)")
    vw.add_argument("--port", type=int, default=8780, help="HTTP port (0: any free port)")
    vw.add_argument("--fps", type=_fps, default=30.0)
    vw.add_argument("--mode", default="clip", choices=["clip", "live", "browser"], help="the mode the page opens in")
    vw.add_argument("--ws", default="ws://127.0.0.1:8765/frames", help="live mode: the frames WebSocket of `distilface stream --output ws`")
    vw.add_argument("--cache-dir", default=None, help="exported models (default: ~/.cache/distilface/view)")
    vw.add_argument("--no-browser", action="store_true", help="only print the URL (no browser is opened without a desktop anyway)")
    vw.add_argument("--threads", type=_threads, default=None, help="torch threads of the first export")
    vw.set_defaults(func=_view)

    d = sub.add_parser("demo", help="the main job on the shipped default: corpus -> teacher -> render")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=_demo)
    return p


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines) or type(e).__name__


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    sub = getattr(args, f"{args.command}_command", None)
    name = f"distilface {args.command}" + (f" {sub}" if sub else "")
    debug = args.verbose or os.environ.get("DISTILFACE_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
    except (ValueError, OSError) as e:
        # Expected user errors (AudioError and other ValueErrors name the file and the problem;
        # OSError: a missing or unwritable path, a port in use): one line, no traceback. -v or
        # DISTILFACE_DEBUG=1 shows where it came from; any other exception is a bug and tracebacks.
        if debug:
            raise
        sys.exit(f"{name}: {_one_line(e)}")
    except RuntimeError as e:
        from distilface.runtime.native import NativeUnavailable

        if debug or not isinstance(e, NativeUnavailable):  # a missing compiler is the machine's, not a bug
            raise
        sys.exit(f"{name}: {_one_line(e)}")
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
