"""The main job on the shipped default model, then the data side of distillation.

1. The shipped default student animates the bundled example clip (real speech, never trained
   on): curves as JSON and Live Link Face CSV, rendered face frames/GIF/MP4, and a lip-trajectory
   plot of the student beside the aligned teacher.
2. A few sentences -> corpus -> teacher labels -> scores -> rendered face: the pipeline that
   makes training data, end to end in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from distilface.audio import EXAMPLE_AUDIO
from distilface.corpus.synth import SynthConfig, synth_corpus
from distilface.curves import save_curves
from distilface.fileio import write_json
from distilface.label import LabelJob, LabelStore, run_labels
from distilface.manifest import read_manifest, resolve
from distilface.phones import BILABIALS, read_phones
from distilface.render_cmd import render_command
from distilface.score import score_labels

DEMO_SYNTH = SynthConfig(hours=0.01, max_voices=6, augment_fraction=0.0, seed=0,
                         engines=("espeak-ng", "festival", "flite"))  # the default install


EXAMPLE_PHONES = Path(__file__).parent / "data" / "example_en.phones.tsv"


def animate_example(out: Path) -> dict:
    """The default student on the bundled clip, beside the teacher."""

    from distilface.animate import animate_command
    from distilface.audio import load_audio
    from distilface.curves import load_curves
    from distilface.models import registry, resolve_model
    from distilface.rig.render import plot_lip_trajectory, render_animation
    from distilface.teacher import build_teacher

    model = resolve_model(None)
    curves_path = animate_command(EXAMPLE_AUDIO, out / "example.curves.json", model, progress=False)
    csv_path = animate_command(EXAMPLE_AUDIO, out / "example.livelinkface.csv", model, progress=False)
    student = load_curves(curves_path)
    phones = read_phones(EXAMPLE_PHONES)
    teacher = build_teacher("aligned").animate(load_audio(EXAMPLE_AUDIO), student.fps, phones=phones)
    plot = out / "example_lip_trajectory.png"
    name = registry()["default"]
    plot_lip_trajectory({f"student {name}": student, "aligned teacher": teacher}, phones, plot,
                        title=f"{EXAMPLE_AUDIO.name}: student vs teacher")
    paths = render_animation(student, out / "example_render", audio_path=EXAMPLE_AUDIO)
    return {"model": name, "curves": str(curves_path), "live_link_face_csv": str(csv_path),
            "lip_trajectory_plot": str(plot),
            **{f"render_{k}": str(v) for k, v in paths.items() if not isinstance(v, list)}}


def run_demo(out: Path, workers: int = 2) -> dict:
    from distilface.models import registry

    example = animate_example(out) if registry().get("default") else None
    manifest = synth_corpus(DEMO_SYNTH, out / "corpus", workers=workers)
    labels = run_labels(LabelJob(manifest, out / "labels", workers=workers))
    scores = score_labels(manifest, labels)
    write_json(out / "teacher_scores.json", scores)
    # Render the utterance with the most bilabials: the closures are what people look at.
    utterances = read_manifest(manifest)
    best = max(utterances, key=lambda u: sum(s.phone in BILABIALS for s in read_phones(resolve(manifest, u.phones))))
    curves_path = out / f"{best.id}.curves.json"
    save_curves(curves_path, LabelStore(labels)[best.id])
    paths = render_command(curves_path, resolve(manifest, best.audio), out / "render",
                           phones=resolve(manifest, best.phones))
    summary = {"example": example, "manifest": str(manifest), "labels": str(labels), "teacher_scores": scores["all"],
               "rendered_utterance": best.id, "text": best.text, "curves": str(curves_path),
               **{k: str(v) for k, v in paths.items() if not isinstance(v, list)}}
    print(json.dumps(summary, indent=2))
    return summary
