"""Score label curves against the phone timings of their manifest (PBM, open vowels, jitter)."""

from __future__ import annotations

from pathlib import Path

from distilface.label import LabelStore
from distilface.manifest import read_manifest, resolve
from distilface.metrics import LipSyncScores, score_curves
from distilface.phones import read_phones


def score_labels(manifest: str | Path, labels: str | Path, split: str | None = None,
                 clean_only: bool = True) -> dict:
    """Lip metrics of every labelled utterance (optionally one split, clean ones only), by source."""
    from distilface.rig.mesh import load_rig

    rig = load_rig()
    store = LabelStore(labels)
    by_source: dict[str, LipSyncScores] = {}
    total = LipSyncScores()
    for u in read_manifest(manifest):
        if (split and u.split != split) or not u.phones or u.id not in store:
            continue
        if clean_only and u.augmentation:
            continue
        s = score_curves(store[u.id], read_phones(resolve(manifest, u.phones)), rig)
        by_source.setdefault(u.source, LipSyncScores()).add(s)
        total.add(s)
    return {"all": total.summary(), "by_source": {k: v.summary() for k, v in sorted(by_source.items())},
            "teacher_id": store.meta["teacher_id"], "fps": store.fps, "split": split or "all",
            "clean_only": clean_only}
