"""The main job on the shipped default: a few sentences -> corpus -> teacher -> face.

Until a trained student ships, this runs the data side of distillation end to end: synthesise a
few sentences with several voices, label them with the aligned teacher, score the labels, and
render the face and the lip trajectory of one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def run_demo(out: Path, workers: int = 2) -> dict:
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
    summary = {"manifest": str(manifest), "labels": str(labels), "teacher_scores": scores["all"],
               "rendered_utterance": best.id, "text": best.text, "curves": str(curves_path),
               **{k: str(v) for k, v in paths.items() if not isinstance(v, list)}}
    print(json.dumps(summary, indent=2))
    return summary
