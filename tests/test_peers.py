"""`distilface.peers`: the viseme -> rig mapping against hand-computed values, each installed peer
on the bundled real clip, the Node drivers' audio reading and Web Audio analyser, and `run_peers`
end to end on a tiny synthetic corpus. A peer's tests skip only when the tool is not installed."""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distilface.curves import num_frames
from distilface.formats import OCULUS_VISEMES
from distilface.manifest import read_manifest
from distilface.metrics import CLOSED_GAP_MM, OPEN_GAP_MM, score_curves
from distilface.peers import all_peers, nodejs
from distilface.peers.base import PeerInput
from distilface.peers.visemes import (VisemeTrack, blend_curves, one_hot, pose_gaps_mm, resample_decisions,
                                      resample_weights, track_curves, weights_from_named)
from distilface.phones import PhoneSegment, read_phones
from distilface.rig.mesh import load_rig

DATA = Path(__file__).resolve().parent.parent / "src" / "distilface" / "data"
CLIP, CLIP_PHONES = DATA / "example_en.wav", DATA / "example_en.phones.tsv"
CLIP_TEXT = "Please enter your password followed by the pound key."
FPS = 30.0
PEERS = {p.name: p for p in all_peers()}


@pytest.fixture(scope="module")
def rig():
    return load_rig()


@pytest.fixture(scope="module")
def clip():
    audio, rate = sf.read(CLIP, dtype="float32")
    assert rate == 16000
    return audio, read_phones(CLIP_PHONES)


def _peer(name):
    peer = PEERS[name]
    reason = peer.unavailable()
    if reason:
        pytest.skip(reason)
    return peer


# -- mapping ------------------------------------------------------------------------------------

def _v(name):
    return OCULUS_VISEMES.index(name)


def test_weights_from_named_renames_and_rejects_unknown():
    w = weights_from_named(["ee", "silence"], [[0.25, 0.75]], {"ee": "E", "silence": "sil"})
    expected = np.zeros((1, 15))
    expected[0, _v("E")], expected[0, _v("sil")] = 0.25, 0.75
    np.testing.assert_array_equal(w, expected)
    with pytest.raises(ValueError, match="'zz'"):
        weights_from_named(["zz"], [[1.0]], {"ee": "E"})


def test_blend_is_the_morph_target_sum_of_teacher_poses():
    # teacher/visemes.json: aa = jawOpen 0.62, mouthLowerDown L/R 0.2; PP = jawOpen = mouthClose 0.06,
    # mouthPress L/R 0.35
    w = np.zeros((1, 15))
    w[0, _v("aa")], w[0, _v("PP")] = 0.5, 0.5
    c = blend_curves(w, FPS)
    assert c.channel("jawOpen")[0] == pytest.approx(0.5 * 0.62 + 0.5 * 0.06)
    assert c.channel("mouthClose")[0] == pytest.approx(0.03)
    assert c.channel("mouthPressLeft")[0] == pytest.approx(0.175)
    assert c.channel("mouthLowerDownRight")[0] == pytest.approx(0.1)
    assert c.channel("eyeBlinkLeft")[0] == 0.0
    # nn takes the teacher's LL pose (jawOpen 0.2); weights above 1 clip at ARKit's 1
    w = np.zeros((1, 15))
    w[0, _v("nn")] = 1.0
    assert blend_curves(w, FPS).channel("jawOpen")[0] == pytest.approx(0.2)
    w[0, _v("aa")] = 2.0
    assert blend_curves(w, FPS).channel("jawOpen")[0] == 1.0


def test_closed_and_open_visemes_on_the_rig(rig):
    gaps = pose_gaps_mm(rig)
    assert gaps["sil"] == pytest.approx(0.3, abs=1e-3)  # the rig's rest: lips touch
    assert gaps["PP"] < 0  # sealed
    assert {v for v, g in gaps.items() if g < CLOSED_GAP_MM} == {"sil", "PP"}
    assert {v for v, g in gaps.items() if g > OPEN_GAP_MM} == set(OCULUS_VISEMES) - {"sil", "PP", "SS"}
    assert gaps["aa"] > gaps["E"] > gaps["ih"] > OPEN_GAP_MM


def test_resampling_to_our_frames():
    # a 60 fps ramp: every 2nd frame is exact, and linear interpolation is exact on a ramp
    t = np.arange(7) / 60
    w = np.zeros((7, 15))
    w[:, _v("aa")] = np.arange(7) / 6
    track = VisemeTrack(t, w, ["sil", "sil", "aa", "aa", "PP", "PP", "PP"], 0.0)
    r = resample_weights(track, FPS, 5)
    np.testing.assert_allclose(r[:, _v("aa")], [0, 2 / 6, 4 / 6, 1, 1])  # held after the last frame
    assert resample_decisions(track, FPS, 5) == ["sil", "aa", "PP", "PP", "PP"]
    # irregular times: 0.05 lies between 0.0 and 0.1 -> halfway; 1/30 is nearer 0.0
    track = VisemeTrack([0.0, 0.1], [one_hot(["sil"])[0], one_hot(["aa"])[0]], ["sil", "aa"], 0.0)
    assert resample_weights(track, 20.0, 2)[1, _v("aa")] == pytest.approx(0.5)
    assert resample_decisions(track, FPS, 3) == ["sil", "sil", "aa"]
    assert resample_decisions(track, 20.0, 2) == ["sil", "sil"]  # a tie takes the earlier frame
    # a lead shows the same animation earlier
    np.testing.assert_allclose(track.shifted(0.1).times_s, [-0.1, 0.0])


def test_decision_closure_scores_like_the_metric(rig):
    """A PP pick inside a /b/ +-50 ms is a PBM hit, an aa pick is not; open-vowel needs an open pick."""
    phones = [PhoneSegment("sil", 0.0, 0.2), PhoneSegment("b", 0.2, 0.3), PhoneSegment("aa", 0.3, 0.6),
              PhoneSegment("sil", 0.6, 0.8)]
    n = num_frames(0.8, FPS)
    picks = ["sil"] * 5 + ["aa"] * n
    picks = picks[:n]
    for k in range(8, 10):  # 0.267-0.3 s: inside the /b/
        picks[k] = "PP"
    track = VisemeTrack(np.arange(n) / FPS, one_hot(picks), picks, 0.0)
    _, decided = track_curves(track, FPS, n)
    s = score_curves(decided, phones, rig)
    assert (s.pbm_hits, s.pbm_total) == (1, 1)
    assert s.open_vowel_accuracy == 1.0
    picks = ["aa"] * n
    track = VisemeTrack(np.arange(n) / FPS, one_hot(picks), picks, 0.0)
    s = score_curves(track_curves(track, FPS, n)[1], phones, rig)
    assert (s.pbm_hits, s.pbm_total) == (0, 1)


# -- each peer on the bundled clip ----------------------------------------------------------------

def _animate(name, clip, rig):
    audio, phones = clip
    (track,) = _peer(name).run([PeerInput(audio, CLIP_TEXT, "en")])
    n = num_frames(len(audio) / 16000, FPS)
    blend, decided = track_curves(track, FPS, n)
    return track, rig.lip_gap_mm(blend), score_curves(blend, phones, rig), score_curves(decided, phones, rig)


def _min_gap(gap, start_s, end_s):
    return float(gap[math.ceil(start_s * FPS):math.floor(end_s * FPS) + 1].min())


# The clip ("Please enter your password followed by the pound key.", 3.285 s) has /p/ at 0.00-0.07,
# 0.72-0.85 ("password"), 2.39-2.45 ("pound") and /b/ at 2.16-2.22 ("by"). Its first frame is the
# rest pose for every tool, so the utterance-initial /p/ is always a hit.

def test_pylipsync(clip, rig):
    track, gap, blend, decision = _animate("pylipsync", clip, rig)
    hop = 16000 // 60
    assert len(track.times_s) == math.ceil(len(clip[0]) / hop)  # one frame per hop
    assert track.times_s[0] == pytest.approx(hop / 2 / 16000)  # the first hop's centre
    assert np.all(track.weights >= 0) and np.all(track.weights.sum(axis=1) <= 1 + 1e-9)
    assert _min_gap(gap, 0.67, 0.90) < CLOSED_GAP_MM  # silence-gated at the /p/ of "password"
    assert _min_gap(gap, 0.90, 1.00) > OPEN_GAP_MM  # then the /ae/
    assert (blend.pbm_hits, blend.pbm_total, blend.open_hits, blend.open_total) == (3, 4, 12, 12)
    assert (decision.pbm_hits, decision.open_hits) == (3, 12)
    assert blend.jitter == pytest.approx(3.99, abs=0.01)  # unsmoothed weights: a jumpy lower lip


@pytest.mark.parametrize("delay_ms", [0, 100])
def test_headaudio(clip, rig, delay_ms):
    name = "headaudio" if not delay_ms else f"headaudio (+{delay_ms} ms audio delay)"
    track, gap, blend, decision = _animate(name, clip, rig)
    # animation frames at 60 fps over the clip (and the delay after it), shown delay_ms earlier
    assert len(track.times_s) == math.ceil((len(clip[0]) + 16 * delay_ms) / 16000 * 60 - 1e-9)
    assert track.times_s[0] == pytest.approx(-delay_ms / 1000)
    assert track.weights.max() == pytest.approx(0.75)  # PP/FF top out at 0.75, the others at 0.65
    assert "aa" not in track.decisions  # 0.1.0's node ignores viseme id 0 (`if (viseme)`)
    # the /p/ of "password" closes the lips 50-80 ms after the phone, inside the metric's window
    assert _min_gap(gap, 0.67, 0.90) < CLOSED_GAP_MM
    assert (blend.pbm_hits, blend.pbm_total) == (2, 4)
    assert blend.open_hits == (9 if not delay_ms else 10)


def test_wawa(clip, rig):
    track, gap, blend, decision = _animate("wawa-lipsync", clip, rig)
    assert len(track.times_s) == math.ceil(len(clip[0]) / 16000 * 60 - 1e-9)
    assert np.all((track.weights >= 0) & (track.weights <= 1))
    assert track.decisions.count("E") > 0.8 * len(track.decisions)  # mostly one mid-open viseme
    assert _min_gap(gap, 0.67, 0.90) > OPEN_GAP_MM  # no closure for the /p/ of "password"
    assert (blend.pbm_hits, blend.pbm_total, blend.open_hits, blend.open_total) == (1, 4, 12, 12)
    assert (decision.pbm_hits, decision.open_hits) == (1, 12)


def test_openfacefx_energy(clip, rig):
    track, gap, blend, decision = _animate("openfacefx energy", clip, rig)
    assert len(track.times_s) == math.ceil(len(clip[0]) / 16000 * 60 - 1e-9)
    # sil + aa + E + O partition 1 (its docstring), and no other viseme is ever used
    np.testing.assert_allclose(track.weights.sum(axis=1), 1.0, atol=0.03)
    assert not track.weights[:, [_v(v) for v in OCULUS_VISEMES if v not in ("sil", "aa", "E", "oh")]].any()
    assert set(track.decisions) <= {"sil", "aa"}
    assert (blend.pbm_hits, blend.open_hits) == (1, 12)  # loudness never closes the lips mid-speech
    assert decision.pbm_hits == 4  # ... but its cue export picks rest whenever the mouth is half shut


def test_openfacefx_naive(clip, rig):
    track, gap, blend, decision = _animate("openfacefx naive", clip, rig)
    assert len(track.times_s) == math.ceil(len(clip[0]) / 16000 * 60 - 1e-9)
    assert "PP" in track.decisions
    # phones spread over the clip by duration priors: "by" (2.16-2.22 s) closes at 2.27 s; "password" not
    assert _min_gap(gap, 2.11, 2.27) < CLOSED_GAP_MM
    assert _min_gap(gap, 0.67, 0.90) > CLOSED_GAP_MM
    assert (blend.pbm_hits, blend.open_hits) == (1, 11)
    assert decision.pbm_hits == 2
    with pytest.raises(ValueError, match="transcript"):
        PEERS["openfacefx naive"].run([PeerInput(clip[0], "", "en")])


# -- Node drivers ---------------------------------------------------------------------------------

def test_node_driver_reads_wav_like_raw_float32(clip):
    reason = nodejs.unavailable("@met4citizen/headaudio")
    if reason:
        pytest.skip(reason)
    (raw,) = nodejs.run_driver("headaudio.mjs", [clip[0]], 16000, 60)
    proc = subprocess.run([nodejs.node_binary(), str(nodejs.NODE_DIR / "headaudio.mjs"), str(CLIP)],
                          cwd=nodejs.NODE_DIR, capture_output=True, text=True, check=True)
    wav = json.loads(proc.stdout)
    assert wav["rate"] == 16000 and wav["version"] == "0.1.0"
    assert wav["frames"] == raw["frames"] and wav["active"] == raw["active"]


def test_web_audio_analyser_follows_the_spec():
    """webaudio.mjs's AnalyserNode bytes against the spec's formulas in numpy, at two frame times
    (the second one smoothed with the first)."""
    if nodejs.node_binary() is None:
        pytest.skip("Node.js not found")
    rate, n = 48000, 2048
    t = np.arange(rate // 5) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.sin(2 * np.pi * 3000 * t) * (t > 0.1)
    times_ms = [50.0, 150.0]
    script = (
        "import { AudioContext } from './webaudio.mjs'; import { readFileSync } from 'node:fs';"
        "const x = Float32Array.from(JSON.parse(readFileSync(0, 'utf8'))); let now = 0;"
        "const ctx = new AudioContext(x, 48000, () => now); const a = ctx.createAnalyser();"
        "const out = []; for (const t of JSON.parse(process.argv[1])) { now = t;"
        " const b = new Uint8Array(a.frequencyBinCount); a.getByteFrequencyData(b); out.push(Array.from(b)); }"
        "console.log(JSON.stringify(out));")
    x32 = x.astype(np.float32)
    proc = subprocess.run([nodejs.node_binary(), "--input-type=module", "-e", script, json.dumps(times_ms)],
                          input=json.dumps(x32.tolist()), cwd=nodejs.NODE_DIR, capture_output=True, text=True,
                          check=True)
    got = np.array(json.loads(proc.stdout))
    i = np.arange(n)
    window = 0.42 - 0.5 * np.cos(2 * np.pi * i / n) + 0.08 * np.cos(4 * np.pi * i / n)
    smoothed = np.zeros(n // 2)
    for row, ms in zip(got, times_ms):
        played = int(ms / 1000 * rate // 128) * 128
        frame = x32[played - n:played].astype(np.float64)
        smoothed = 0.8 * smoothed + 0.2 * np.abs(np.fft.fft(frame * window))[: n // 2] / n
        with np.errstate(divide="ignore"):
            expected = np.clip(np.floor(255 / 70 * (20 * np.log10(smoothed) + 100)), 0, 255)
        assert np.abs(row - expected).max() <= 1  # float rounding at a byte boundary
        assert (row == expected).mean() > 0.99
    assert got[0].argmax() == round(440 / (rate / n))  # the 440 Hz bin
    assert got[1][round(3000 / (rate / n))] > got[0][round(3000 / (rate / n))] + 50  # 3 kHz from 0.1 s


# -- run_peers end to end -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from distilface.corpus.synth import SynthConfig, synth_corpus
    from distilface.peers import run_peers

    root = tmp_path_factory.mktemp("peers")
    manifest = synth_corpus(SynthConfig(hours=0.01, max_voices=3, engines=("espeak-ng",), augment_fraction=0.0),
                            root / "corpus", workers=1)
    out = root / "out"
    rep = run_peers(out, test_sets=("clean", "noisy10", "real"), max_utterances=3, corpus=manifest,
                    real=root / "missing.jsonl", progress=False)
    tests = [u for u in read_manifest(manifest) if u.split == "test" and u.phones]
    return rep, out, min(len(tests), 3)


def _row(rep, model, test_set):
    (row,) = [r for r in rep["rows"] if r["model"] == model and r["test_set"] == test_set]
    return row


def test_run_peers_rows(report):
    rep, out, n_test = report
    assert json.loads((out / "peers.json").read_text())["rows"] == rep["rows"]
    assert rep["test_sets"]["real"]["status"] == "skipped" and "not found" in rep["test_sets"]["real"]["reason"]
    assert rep["mapping"]["closed_visemes"] == ["sil", "PP"]
    installed = [n for n, p in rep["peers"].items() if p["status"] == "ok"]
    for name, info in rep["peers"].items():
        assert info["status"] == "ok" or info["reason"]
    for s in ("clean", "noisy10"):
        n_utts = rep["test_sets"][s]["utterances"]
        assert n_utts == n_test > 0
        teacher = _row(rep, "teacher", s)
        assert teacher["pbm_accuracy"] == 1.0  # exact phones: the reference closes every bilabial
        for name in [*installed, *rep["references"]]:
            row = _row(rep, name, s)
            assert row["utterances"] == n_utts and row["frames"] == teacher["frames"]
            for key in ("pbm_accuracy", "open_vowel_accuracy", "pbm_accuracy_decision",
                        "open_vowel_accuracy_decision"):
                assert 0.0 <= row[key] <= 1.0, (name, key)
            assert row["jitter_mm_per_frame2"] > 0 and row["cpu_ms_per_audio_s"] > 0
    # the degraded set is heard as degraded audio by the audio-driven peers
    for name in installed:
        if name != "openfacefx naive":
            clean, noisy = _row(rep, name, "clean"), _row(rep, name, "noisy10")
            assert clean["jitter_mm_per_frame2"] != noisy["jitter_mm_per_frame2"], name
    table = [line for line in (out / "peers.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(rep["rows"])


def test_run_peers_rejects_unknown_names(tmp_path):
    from distilface.peers import run_peers

    with pytest.raises(ValueError, match="unknown peers"):
        run_peers(tmp_path, test_sets=("clean",), peers=["rhubarb"])
    with pytest.raises(ValueError, match="unknown test sets"):
        run_peers(tmp_path, test_sets=("loud",))
