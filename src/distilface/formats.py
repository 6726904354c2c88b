"""Curve export formats for animation tools: `write_curves(curves, path, fmt=None)`.

    fmt            extension        content
    json           .json            {"fps", "names", "frames"} (as `save_curves`)
    npz            .npz             as `save_curves`
    csv            .csv             Live Link Face recording layout (Unreal's LiveLinkFaceImporter,
                                    Blender/Maya LLF importers): Timecode, BlendShapeCount = 61,
                                    the 52 blendshapes in LLF column order and PascalCase, then the
                                    9 head / eye rotations (HeadYaw ... RightEyeRoll) as zeros: the
                                    student has no head pose and LLF readers expect all 61 values.
                                    Timecode "HH:MM:SS:FF.mmm" from 00:00:00:00.000: FF is the frame
                                    within the second at the curves' fps, .mmm its fraction in
                                    thousandths (always .000 at an integer fps).
    rhubarb-tsv    .tsv             Rhubarb Lip Sync TSV: "start_s<TAB>shape" per cue, and the final
                                    line "duration<TAB>X" as Rhubarb writes it
    rhubarb-json   .rhubarb.json    {"metadata": {"soundFile", "duration"},
                                     "mouthCues": [{"start", "end", "value"}]}
    oculus-json    .oculus.json     15 Oculus/Meta LipSync viseme curves as {"fps","names","frames"}
    oculus-csv     .oculus.csv      the same as CSV: frame, time_s, then the 15 visemes
    vrm-json       .vrm.json        the 7 VRM 1.0 expression presets a VRM avatar without ARKit
                                    shapes has for speech (aa ih ou ee oh blinkLeft blinkRight,
                                    distilface.vrm) as {"fps","names","frames"}
    vrm-csv        .vrm.csv         the same as CSV: frame, time_s, then the 7 presets
    glb            .glb             glTF 2.0 binary: the face rig's mesh with its 52 ARKit morph
                                    targets and an animation of their weights, one keyframe per
                                    frame at k / fps (distilface.rig.gltf; Blender, three.js)

Rhubarb shapes (Rhubarb's README, "Mouth shapes") from the ARKit mouth channels of each frame,
first rule that matches, with `lip gap = max(jawOpen - mouthClose, 0)` (ARKit's mouthClose
closes the lips against an open jaw, so the lips meet when mouthClose reaches jawOpen),
`press` = mean(mouthPressLeft, mouthPressRight), `upperUp` = mean(mouthUpperUp L/R):

    G  mouthRollLower >= 0.25 and gap < 0.25     F/V: lower lip tucked under the upper teeth
    A  gap < 0.04 and (mouthClose >= 0.03 or press >= 0.15)
                                                 closed lips with pressure: P, B, M
    X  gap < 0.04                                closed and relaxed: rest, silence
    F  mouthPucker >= 0.45                       puckered: UW, OW, W
    E  mouthFunnel >= 0.25 or mouthPucker >= 0.25
                                                 slightly rounded: AO, ER
    H  tongueOut >= 0.2                          tongue visible (ARKit has no raised-tongue
                                                 channel: L/TH-like frames with the tongue out)
    D  gap >= 0.55                               wide open: AA
    C  gap >= 0.28                               open: EH, AE
    B  otherwise                                 slightly open, clenched teeth: K, S, T, EE

Hysteresis: a threshold the previous frame's shape passed is relaxed by HYSTERESIS (0.03) for the
next frame, so values hovering at a threshold do not flicker. Then no cue is shorter than
`min_cue_s` (0.06 s): an A cue (a closure, never dropped) is first lengthened into the frames
after it, then every shorter cue is absorbed into the cue before it (the first one into the next).

Oculus visemes (sil, PP, FF, TH, DD, kk, CH, SS, nn, RR, aa, E, ih, oh, ou) by a soft-max over
template poses: each viseme's template is the aligned teacher's ARKit pose of the viseme of the
same name (teacher/visemes.json; nn takes the teacher's LL pose: Oculus nn is n, l), and

    w_v = softmax_v(-|f(frame) - f(template_v)|^2 / OCULUS_TEMPERATURE)

where f() keeps the mouth channels that any template uses, left/right pairs averaged, with
jawOpen and mouthClose replaced by the lip gap and the seal, clip(min(jawOpen, mouthClose) /
0.05, 0, 1), so lips sealed over an open jaw read as PP (the teacher's PP seals them).
Weights sum to 1 per frame; OCULUS_TEMPERATURE = 0.01 puts 0.99 on a viseme whose pose is
matched exactly against its nearest neighbour.
"""

from __future__ import annotations

import csv
import io
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from distilface.curves import Curves, load_curves, save_curves_npz
from distilface.fileio import atomic_write, read_json, write_json
from distilface.rig.arkit import ARKIT_52

# -- Live Link Face --------------------------------------------------------------------------
# LLF column order differs from Apple's ARKit order only in two pairs: JawRight before JawLeft,
# MouthRight before MouthLeft.
# Live Link Face lists the ARKit names capitalised and with the Left/Right pairs of jaw and
# mouth sideways motion swapped relative to ARKIT_52.
_LLF_SWAPS = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
LLF_BLENDSHAPES: tuple[str, ...] = tuple(
    (n := _LLF_SWAPS.get(name, name))[0].upper() + n[1:] for name in ARKIT_52)
LLF_ROTATIONS: tuple[str, ...] = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                                  "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LLF_HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *LLF_BLENDSHAPES, *LLF_ROTATIONS)
LLF_BLENDSHAPE_COUNT = len(LLF_BLENDSHAPES) + len(LLF_ROTATIONS)  # 61, as LLF writes it
assert {n[0].lower() + n[1:] for n in LLF_BLENDSHAPES} == set(ARKIT_52)

# -- Rhubarb ---------------------------------------------------------------------------------
RHUBARB_SHAPES = "ABCDEFGHX"
HYSTERESIS = 0.03
MIN_CUE_S = 0.06

# -- Oculus ----------------------------------------------------------------------------------
OCULUS_VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR",
                                   "aa", "E", "ih", "oh", "ou")
OCULUS_FROM_TEACHER = {"nn": "LL"}  # Oculus viseme -> teacher viseme where the names differ
OCULUS_TEMPERATURE = 0.01
SEAL_FULL = 0.05  # mouthClose over an open jaw that counts as fully sealed lips

FORMATS = ("json", "npz", "csv", "rhubarb-tsv", "rhubarb-json", "oculus-json", "oculus-csv", "vrm-json", "vrm-csv",
           "glb")
FORMAT_ALIASES = ("oculus", "vrm")  # the JSON or CSV of that kind, by the file's extension
# The extension of each format, longest first where one ends another (".oculus.json" before ".json"):
# `format_for` reads a format from a name by it, a batch names its outputs by it
SUFFIXES = {"oculus-json": ".oculus.json", "oculus-csv": ".oculus.csv", "vrm-json": ".vrm.json",
            "vrm-csv": ".vrm.csv", "rhubarb-json": ".rhubarb.json", "rhubarb-tsv": ".tsv", "json": ".json",
            "npz": ".npz", "csv": ".csv", "glb": ".glb"}


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format `write_curves` uses for `path` (explicit `fmt` wins; "oculus" and "vrm" pick json
    or csv by extension)."""
    name = Path(path).name.lower()
    if fmt in FORMAT_ALIASES:
        return f"{fmt}-csv" if name.endswith(".csv") else f"{fmt}-json"
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown curve format {fmt!r}: use one of {', '.join(FORMATS + FORMAT_ALIASES)}")
        return fmt
    for f, suffix in SUFFIXES.items():
        if name.endswith(suffix):
            return f
    raise ValueError(f"{path}: cannot tell the format from the extension; give one of {', '.join(FORMATS)}")


def write_curves(curves: Curves, path: str | Path, fmt: str | None = None, *,
                 sound_file: str | None = None, min_cue_s: float = MIN_CUE_S) -> Path:
    """Write `curves` to `path` atomically in `fmt` (see the module docstring; None: by extension).

    `sound_file` goes into Rhubarb JSON metadata and the glTF animation's extras. Raises
    ValueError for an unknown format or curves that lack the ARKit channels a format needs.
    Returns the path."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if fmt == "json":
        write_json(path, curves.to_json_dict())
    elif fmt == "npz":
        save_curves_npz(path, curves)  # --format npz wins over the extension, as every format does
    elif fmt == "csv":
        _write_text(path, llf_csv(curves))
    elif fmt == "rhubarb-tsv":
        cues = rhubarb_cues(curves, min_cue_s)
        lines = [f"{_t(start)}\t{shape}\n" for start, _, shape in cues]
        lines.append(f"{_t(cues[-1][1]) if cues else '0.00'}\tX\n")
        _write_text(path, "".join(lines))
    elif fmt == "rhubarb-json":
        cues = rhubarb_cues(curves, min_cue_s)
        duration = cues[-1][1] if cues else 0.0
        doc = {"metadata": {"soundFile": sound_file or "", "duration": round(duration, 2)},
               "mouthCues": [{"start": round(s, 2), "end": round(e, 2), "value": v} for s, e, v in cues]}
        write_json(path, doc)
    elif fmt == "oculus-json":
        write_json(path, oculus_visemes(curves).to_json_dict())
    elif fmt == "vrm-json":
        from distilface.vrm import vrm_curves  # distilface.vrm reads this module's mouth features

        write_json(path, vrm_curves(curves).to_json_dict())
    elif fmt == "glb":
        from distilface.rig.gltf import write_glb

        write_glb(path, curves, sound_file=sound_file)
    elif fmt == "oculus-csv":
        _write_text(path, _frames_csv(oculus_visemes(curves)))
    else:  # vrm-csv
        from distilface.vrm import vrm_curves

        _write_text(path, _frames_csv(vrm_curves(curves)))
    return path


def _frames_csv(curves: Curves) -> str:
    """frame, time_s, then a column per curve; values to 1e-6."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "time_s", *curves.names])
    for k, row in enumerate(curves.values):
        w.writerow([k, f"{k / curves.fps:.6f}", *(f"{v:.6f}" for v in row)])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _t(seconds: float) -> str:
    return f"{seconds:.2f}"


def read_curves_any(path: str | Path) -> Curves:
    """Read curves written by `write_curves` as json, oculus-json, vrm-json or npz -> Curves.

    Raises ValueError for other files (Rhubarb cues and CSVs are not curves at a frame rate)."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_curves(path)
    if path.suffix != ".json":
        raise ValueError(f"{path}: read_curves_any reads .json and .npz curves")
    try:
        doc = read_json(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or not {"fps", "names", "frames"} <= doc.keys():
        kind = "Rhubarb mouth cues" if isinstance(doc, dict) and "mouthCues" in doc else "not curves"
        raise ValueError(f"{path}: {kind}, expected {{\"fps\", \"names\", \"frames\"}}")
    return Curves.from_json_dict(doc)


# -- Live Link Face CSV ----------------------------------------------------------------------

def _arkit_matrix(curves: Curves, names: tuple[str, ...], what: str) -> np.ndarray:
    """(frames, len(names)) of the named ARKit channels; ValueError naming any that are missing."""
    missing = [n for n in names if n not in curves.names]
    if missing:
        raise ValueError(f"{what} needs ARKit blendshape curves; missing {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return curves.select(names).values


def llf_timecode(frame: int, fps: float) -> str:
    """Frame k at `fps` -> "HH:MM:SS:FF.mmm" (FF.mmm: frame within the second and its fraction)."""
    seconds = math.floor(frame / fps + 1e-9)
    sub_milli = round((frame - seconds * fps) * 1000)
    ff, milli = divmod(sub_milli, 1000)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{milli:03d}"


def llf_csv(curves: Curves) -> str:
    """Curves with the 52 ARKit channels -> Live Link Face CSV text (header + one row per frame)."""
    arkit = tuple(n[0].lower() + n[1:] for n in LLF_BLENDSHAPES)
    values = _arkit_matrix(curves, arkit, "Live Link Face CSV")
    zeros = ",".join(["0"] * len(LLF_ROTATIONS))
    lines = [",".join(LLF_HEADER)]
    for k, row in enumerate(values):
        lines.append(f"{llf_timecode(k, curves.fps)},{LLF_BLENDSHAPE_COUNT},"
                     + ",".join(f"{v:.6f}" for v in row) + f",{zeros}")
    return "\n".join(lines) + "\n"


# -- Rhubarb mouth cues ----------------------------------------------------------------------

_RHUBARB_CHANNELS = ("jawOpen", "mouthClose", "mouthPressLeft", "mouthPressRight", "mouthRollLower",
                     "mouthPucker", "mouthFunnel", "tongueOut")


def _rhubarb_shape(gap: float, close: float, press: float, roll_lower: float, pucker: float,
                   funnel: float, tongue: float, prev: str | None) -> str:
    """The rules of the module docstring; thresholds the previous shape passed relax by HYSTERESIS."""
    def ge(x: float, thr: float, shape: str) -> bool:
        return x >= (thr - HYSTERESIS if prev == shape else thr)

    def lt(x: float, thr: float, shapes: str) -> bool:
        return x < (thr + HYSTERESIS if prev is not None and prev in shapes else thr)

    if ge(roll_lower, 0.25, "G") and lt(gap, 0.25, "G"):
        return "G"
    if lt(gap, 0.04, "AX"):
        return "A" if ge(close, 0.03, "A") or ge(press, 0.15, "A") else "X"
    if ge(pucker, 0.45, "F"):
        return "F"
    if ge(funnel, 0.25, "E") or ge(pucker, 0.25, "E"):
        return "E"
    if ge(tongue, 0.2, "H"):
        return "H"
    if ge(gap, 0.55, "D"):
        return "D"
    if ge(gap, 0.28, "C"):
        return "C"
    return "B"


def rhubarb_frame_shapes(curves: Curves) -> list[str]:
    """One Rhubarb shape per frame (rules and hysteresis of the module docstring)."""
    v = _arkit_matrix(curves, _RHUBARB_CHANNELS, "Rhubarb mouth cues").astype(np.float64)
    jaw, close, press_l, press_r, roll_lower, pucker, funnel, tongue = v.T
    gap = np.maximum(jaw - close, 0.0)
    press = (press_l + press_r) / 2
    shapes, prev = [], None
    for k in range(len(v)):
        prev = _rhubarb_shape(gap[k], close[k], press[k], roll_lower[k], pucker[k], funnel[k],
                              tongue[k], prev)
        shapes.append(prev)
    return shapes


def _runs(labels: list[str]) -> list[list]:
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    return runs


def rhubarb_cues(curves: Curves, min_cue_s: float = MIN_CUE_S) -> list[tuple[float, float, str]]:
    """Curves -> contiguous (start_s, end_s, shape) cues from 0 to num_frames / fps.

    Frame k covers [k / fps, (k + 1) / fps). No cue is shorter than `min_cue_s` except when the
    whole clip is. Cue times are rounded to 0.01 s like Rhubarb's; a cue that rounds to nothing
    is dropped (its neighbours meet)."""
    labels = rhubarb_frame_shapes(curves)
    if not labels:
        return []
    min_frames = max(math.ceil(min_cue_s * curves.fps - 1e-9), 1)
    # closures carry the lip sync: a short A grows into the frames after it instead of vanishing
    k = 0
    while k < len(labels):
        if labels[k] == "A" and (k == 0 or labels[k - 1] != "A"):
            end = k
            while end < len(labels) and labels[end] == "A":
                end += 1
            if end - k < min_frames:
                for j in range(end, min(k + min_frames, len(labels))):
                    labels[j] = "A"
                end = min(k + min_frames, len(labels))
            k = end
        else:
            k += 1
    merged: list[list] = []
    for label, n in _runs(labels):
        if merged and (n < min_frames or merged[-1][0] == label):
            merged[-1][1] += n  # too short: the previous cue holds on
        else:
            merged.append([label, n])
    if len(merged) > 1 and merged[0][1] < min_frames:  # a short first cue joins the next
        merged[1][1] += merged[0][1]
        merged.pop(0)
    cues, k = [], 0
    for label, n in merged:
        start, end = round(k / curves.fps, 2), round((k + n) / curves.fps, 2)
        k += n
        if end <= start:
            continue
        if cues and cues[-1][2] == label:
            cues[-1] = (cues[-1][0], end, label)
        elif cues:
            cues.append((cues[-1][1], end, label))
        else:
            cues.append((0.0, end, label))
    return cues


# -- Mouth features (shared by the Oculus visemes and the VRM presets), Oculus visemes -----------

def teacher_poses(visemes: list[str] | tuple[str, ...]) -> list[dict[str, float]]:
    """The aligned teacher's ARKit pose of each named viseme (teacher/visemes.json; zeros omitted)."""
    data = json.loads((Path(__file__).parent / "teacher" / "visemes.json").read_text())["visemes"]
    return [dict(data[v]["pose"]) for v in visemes]


def mouth_channels(poses: list[dict[str, float]]) -> tuple[str, ...]:
    """The ARKit channels any of `poses` uses, plus jawOpen and mouthClose, in ARKit order: what
    `mouth_features` reads to compare frames with these poses."""
    used = {n for pose in poses for n in pose} | {"jawOpen", "mouthClose"}
    return tuple(n for n in ARKIT_52 if n in used)


def pose_rows(poses: list[dict[str, float]], channels: tuple[str, ...]) -> np.ndarray:
    """(len(poses), len(channels)) values of the poses (absent channels: 0)."""
    return np.array([[pose.get(n, 0.0) for n in channels] for pose in poses])


@lru_cache(maxsize=1)
def _oculus_templates() -> tuple[tuple[str, ...], np.ndarray]:
    """-> (ARKit channels the features read, (15, features) template features)."""
    poses = teacher_poses([OCULUS_FROM_TEACHER.get(v, v) for v in OCULUS_VISEMES])
    channels = mouth_channels(poses)
    return channels, mouth_features(channels, pose_rows(poses, channels))


@lru_cache(maxsize=8)
def _mouth_map(channels: tuple[str, ...]) -> tuple[np.ndarray, int, int, int]:
    """-> ((channels, features) matrix of the linear features, the columns of jawOpen and
    mouthClose, the feature index of the lip gap (the seal follows it))."""
    idx = {n: i for i, n in enumerate(channels)}
    cols: list[dict[int, float]] = []  # per feature: channel -> weight
    done: set[str] = set()
    gap = -1
    for n in channels:
        if n in done or n == "mouthClose":
            continue
        if n == "jawOpen":
            gap = len(cols)
            cols += [{}, {}]  # the lip gap and the seal, filled in by mouth_features
        elif n.endswith("Left") and n[:-4] + "Right" in idx:
            cols.append({idx[n]: 0.5, idx[n[:-4] + "Right"]: 0.5})
            done.add(n[:-4] + "Right")
        elif n.endswith("Right") and n[:-5] + "Left" in idx:
            cols.append({idx[n]: 0.5, idx[n[:-5] + "Left"]: 0.5})
            done.add(n[:-5] + "Left")
        else:
            cols.append({idx[n]: 1.0})
        done.add(n)
    lin = np.zeros((len(channels), len(cols)))
    for f, col in enumerate(cols):
        for c, w in col.items():
            lin[c, f] = w
    return lin, idx["jawOpen"], idx["mouthClose"], gap


def mouth_features(channels: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """(N, channels) ARKit values -> (N, features): L/R pairs averaged; jawOpen and mouthClose
    become the lip gap and the seal. `channels` must hold both."""
    lin, jaw, close, gap = _mouth_map(tuple(channels))
    x = np.asarray(x, np.float64)
    feats = x @ lin
    feats[:, gap] = np.maximum(x[:, jaw] - x[:, close], 0.0)
    feats[:, gap + 1] = np.clip(np.minimum(x[:, jaw], x[:, close]) / SEAL_FULL, 0.0, 1.0)
    return feats


def oculus_visemes(curves: Curves) -> Curves:
    """ARKit curves -> Curves of the 15 Oculus visemes (soft-max over template poses, rows sum to 1)."""
    channels, templates = _oculus_templates()
    x = mouth_features(channels, _arkit_matrix(curves, channels, "Oculus visemes").astype(np.float64))
    d2 = ((x[:, None, :] - templates[None, :, :]) ** 2).sum(-1)  # (frames, 15)
    logits = -d2 / OCULUS_TEMPERATURE
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return Curves(curves.fps, OCULUS_VISEMES, w / w.sum(axis=1, keepdims=True))
