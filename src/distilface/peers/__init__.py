"""Peers side by side: lip-sync tools people use today, run on our test sets and scored on our rig.

    from distilface.peers import run_peers
    report = run_peers(out_dir, test_sets=("clean", "noisy10", "real"), max_utterances=50, seed=0)

`run_peers(out_dir, test_sets=TEST_SETS, max_utterances=50, seed=0, *, peers=None, fps=30.0,
corpus="runs/corpus-20h/manifest.jsonl", real="runs/asterisk-en/manifest.jsonl", cache_dir=None,
references=True, progress=True) -> dict` writes `out_dir/peers.json` and `out_dir/peers.md` and
returns the report (see `runner.run_peers`). `distilface experiment peers` calls it.

Peers (one module each; a peer that is not installed is skipped with the reason):

    pylipsync          PyPI pylipsync (uLipSync port), audio
    headaudio          npm @met4citizen/headaudio, audio (in Node, `node/headaudio.mjs`),
                       also with the README's 100 ms audio delay
    wawa-lipsync       npm wawa-lipsync, audio (in Node, `node/wawa.mjs`)
    openfacefx energy  PyPI openfacefx, audio loudness only
    openfacefx naive   PyPI openfacefx, transcript + duration (no audio content)

How their visemes reach the rig and the metrics: `peers.visemes`.
"""

from distilface.peers.runner import all_peers, run_peers

__all__ = ["all_peers", "run_peers"]
