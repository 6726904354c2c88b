"""The aligned teacher: exact phone timings -> visemes -> ARKit-52 poses with coarticulation.

It knows what no student gets: the exact phone timings and the whole utterance. Each phone maps
to one or two viseme targets (diphthongs glide between two), each target carries an ARKit pose
and a dominance function (Cohen & Massaro 1993): constant `magnitude` while the phone sounds,
decaying exponentially before it (anticipation) and after it (carryover). Every channel is the
dominance-weighted mean of all targets, so

- /p b m/ have a large magnitude and short time constants: inside their closure they outweigh
  their neighbours ~12:1 and open into the next vowel within ~25 ms; they also seal the lips
  (mouthClose follows jawOpen in proportion to their share), so the lips meet even while the
  next vowel already pulls the jaw open;
- lip rounding and jaw opening have longer anticipation on some targets, so they start before
  the vowel, as in real speech;
- silence is a rest-pose target whose magnitude grows with the pause length, so the face rests
  in long pauses but does not snap shut between words.

The data (poses, dominance) is the readable file `visemes.json` next to this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distilface.audio import SAMPLE_RATE_HZ
from distilface.curves import Curves, num_frames
from distilface.phones import SILENCE, PhoneSegment
from distilface.rig.arkit import ARKIT_52

VISEME_FILE = Path(__file__).with_name("visemes.json")
TEACHER_VERSION = 1
# Dominance beyond this distance is below exp(-10) of its peak for every target: skip it.
_MAX_REACH_S = 1.0
# A pause reaches full rest-pose dominance once it is this long.
_FULL_REST_PAUSE_S = 0.3
_JAW = ARKIT_52.index("jawOpen")
_CLOSE = ARKIT_52.index("mouthClose")


@dataclass
class AlignedTeacherConfig:
    viseme_file: str = str(VISEME_FILE)
    blinks: bool = False  # random blinks (off: labels keep a neutral expression)
    brows: bool = False  # slow brow motion following speech activity (off by default)
    blink_rate_hz: float = 0.3
    seed: int = 0  # with the utterance id, seeds blinks and brows


@dataclass(frozen=True)
class _Target:
    start_s: float
    end_s: float
    pose: np.ndarray  # (52,)
    magnitude: float
    anticipation_s: np.ndarray  # (52,) per-channel time constants
    carryover_s: np.ndarray  # (52,)
    seal_lips: bool = False


class AlignedTeacher:
    value_range = (0.0, 1.0)

    def __init__(self, config: AlignedTeacherConfig | None = None) -> None:
        self.cfg = config or AlignedTeacherConfig()
        self.names = ARKIT_52
        raw = Path(self.cfg.viseme_file).read_bytes()
        self._data = json.loads(raw)
        self._visemes = {name: self._parse_viseme(name, v) for name, v in self._data["visemes"].items()}
        for phone, parts in self._data["phones"].items():
            for viseme, _ in parts:
                if viseme not in self._visemes:
                    raise ValueError(f"{self.cfg.viseme_file}: phone {phone!r} uses unknown viseme {viseme!r}")
        digest = hashlib.sha256(raw + json.dumps(asdict(self.cfg), sort_keys=True).encode()).hexdigest()[:10]
        self.id = f"aligned-v{TEACHER_VERSION}-{digest}"

    def _parse_viseme(self, name: str, v: dict) -> dict:
        pose = np.zeros(len(ARKIT_52), np.float32)
        for channel, value in v["pose"].items():
            if channel not in ARKIT_52:
                raise ValueError(f"{self.cfg.viseme_file}: viseme {name!r}: unknown channel {channel!r}")
            pose[ARKIT_52.index(channel)] = value
        ant = np.full(len(ARKIT_52), v["anticipation_ms"] / 1000.0)
        for channel, ms in v.get("channel_anticipation_ms", {}).items():
            ant[ARKIT_52.index(channel)] = ms / 1000.0
        car = np.full(len(ARKIT_52), v["carryover_ms"] / 1000.0)
        return {"pose": pose, "magnitude": float(v["magnitude"]), "anticipation_s": ant,
                "carryover_s": car, "min_plateau_s": v.get("min_plateau_ms", 0) / 1000.0,
                "seal_lips": bool(v.get("seal_lips", False))}

    def config(self) -> dict[str, Any]:
        return {"name": "aligned", "id": self.id, **asdict(self.cfg)}

    # -- targets -------------------------------------------------------------------------------
    def _targets(self, phones: list[PhoneSegment]) -> list[_Target]:
        targets = []
        for seg in phones:
            parts = self._data["phones"].get(seg.phone)
            if parts is None:
                raise ValueError(f"aligned teacher: phone {seg.phone!r} has no viseme")
            t0 = seg.start_s
            for viseme, fraction in parts:
                v = self._visemes[viseme]
                t1 = t0 + fraction * seg.duration_s
                start, end = t0, t1
                if end - start < v["min_plateau_s"]:  # keep short closures visible at any fps
                    mid = 0.5 * (start + end)
                    start, end = mid - v["min_plateau_s"] / 2, mid + v["min_plateau_s"] / 2
                magnitude = v["magnitude"]
                if seg.phone == SILENCE:
                    magnitude *= min(1.0, seg.duration_s / _FULL_REST_PAUSE_S)
                targets.append(_Target(start, end, v["pose"], magnitude, v["anticipation_s"],
                                       v["carryover_s"], v["seal_lips"]))
                t0 = t1
        return targets

    def curves_from_phones(self, phones: list[PhoneSegment], duration_s: float, fps: float) -> np.ndarray:
        """(frames, 52) blendshape weights for phone timings over `duration_s`."""
        times_s = np.arange(num_frames(duration_s, fps)) / fps  # (T,)
        num = np.zeros((len(times_s), len(ARKIT_52)), np.float64)
        den = np.zeros_like(num)
        # Frames beyond the phones (or before them) rest: a weak rest target everywhere.
        den += 1e-3
        seal = np.zeros(len(times_s))  # dominance of lip-sealing targets on the jaw channel
        for tg in self._targets(phones):
            lo, hi = np.searchsorted(times_s, [tg.start_s - _MAX_REACH_S, tg.end_s + _MAX_REACH_S])
            t = times_s[lo:hi, None]  # (t, 1)
            before = np.clip(tg.start_s - t, 0.0, None)
            after = np.clip(t - tg.end_s, 0.0, None)
            w = tg.magnitude * np.exp(-before / tg.anticipation_s - after / tg.carryover_s)  # (t, 52)
            num[lo:hi] += w * tg.pose
            den[lo:hi] += w
            if tg.seal_lips:
                seal[lo:hi] += w[:, _JAW]
        values = num / den
        # ARKit's mouthClose closes the lips against an open jaw: while a bilabial dominates,
        # the jaw may stay partly open (pulled by the next vowel) but the lips must meet.
        share = seal / den[:, _JAW]
        values[:, _CLOSE] = np.maximum(values[:, _CLOSE], share * values[:, _JAW])
        return np.clip(values, 0.0, 1.0).astype(np.float32)

    # -- optional expression ----------------------------------------------------------------------
    def _expression(self, values: np.ndarray, fps: float, utterance_id: str) -> None:
        seed = int.from_bytes(hashlib.sha256(f"{self.cfg.seed}:{utterance_id}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        t = np.arange(len(values)) / fps
        if self.cfg.blinks:
            duration_s = len(values) / fps
            n = rng.poisson(self.cfg.blink_rate_hz * duration_s)
            for onset in rng.uniform(0, duration_s, n):
                length_s = rng.uniform(0.12, 0.2)
                phase = (t - onset) / length_s
                bump = np.where((phase > 0) & (phase < 1), np.sin(np.pi * np.clip(phase, 0, 1)), 0.0)
                for ch in ("eyeBlinkLeft", "eyeBlinkRight"):
                    i = ARKIT_52.index(ch)
                    values[:, i] = np.maximum(values[:, i], bump)
        if self.cfg.brows:
            # Brows follow jaw activity (a proxy for speech emphasis), smoothed over ~0.4 s.
            jaw = values[:, ARKIT_52.index("jawOpen")]
            k = max(int(0.4 * fps), 1)
            smooth = np.convolve(jaw, np.ones(k) / k, mode="same")
            lift = np.clip(smooth * rng.uniform(0.3, 0.8), 0, 1)
            values[:, ARKIT_52.index("browInnerUp")] = lift
            values[:, ARKIT_52.index("browOuterUpLeft")] = 0.6 * lift
            values[:, ARKIT_52.index("browOuterUpRight")] = 0.6 * lift

    # -- Teacher protocol -------------------------------------------------------------------------
    def animate(self, audio: np.ndarray, fps: float, *, phones: list[PhoneSegment] | None = None,
                text: str | None = None, utterance_id: str = "") -> Curves:
        duration_s = len(audio) / SAMPLE_RATE_HZ
        if phones is None:
            if not text:
                raise ValueError("aligned teacher: needs phone timings or a transcript to align")
            from distilface.corpus.align import align_phones

            phones = align_phones(audio, text)
        values = self.curves_from_phones(phones, duration_s, fps)
        if self.cfg.blinks or self.cfg.brows:
            self._expression(values, fps, utterance_id)
        return Curves(fps, self.names, values)
