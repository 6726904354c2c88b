#!/usr/bin/env bash
# Rebuilds the data of `distilface experiment paper-table --scale full` (and of the shipped
# students' training) under runs/: the 20 h synthetic corpus, its 50 fps teacher labels, the
# Asterisk real set and its labels. Every stage is byte-reproducible and resumable, so a table
# spread over sessions scores its rows on the same test sets. About 16 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORKERS:-2}
D=.venv/bin/distilface
$D corpus synth --out runs/corpus-20h --hours 20 --engines espeak-ng,festival,flite --workers "$W"
$D label runs/corpus-20h/manifest.jsonl --out runs/labels-20h-50fps --fps 50 --workers "$W"
$D corpus ingest --recipe asterisk-en --out runs/asterisk-en --workers "$W"
$D label runs/asterisk-en/manifest.jsonl --out runs/labels-asterisk-50fps --fps 50 --workers "$W"
echo "build-full-data: done"
