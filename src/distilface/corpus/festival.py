"""festival through a scheme script: (utt.synth), (utt.save.wave ... 'riff), (utt.save.segs ...).

The segs file lists each segment's end time (seconds) and name after a `#` line; festival writes
the wave from the same utterance, so the times are those of the audio. US voices use the radio /
CMU phone set (`pau` for silence), mapped by `distilface.corpus.flite.map_cmu_phone`.

Voice params: `rate` (speed factor, 1 = normal): `Duration_Stretch` for diphone voices, HTS's `-r`
for HTS voices (HTS ignores Duration_Stretch); `f0_hz` (mean f0, diphone voices only: HTS
generates f0 itself and this festival's HTS module takes no f0 shift).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from distilface.audio import SAMPLE_RATE_HZ, load_audio
from distilface.corpus.engine import EngineError, Synthesis, Voice
from distilface.corpus.flite import segments_from_ends
from distilface.phones import PhoneSegment

# voice -> synthesis method (how rate and pitch are applied)
FESTIVAL_VOICES: dict[str, str] = {
    "kal_diphone": "diphone",
    "ked_diphone": "diphone",
    "rab_diphone": "diphone",
    "cmu_us_slt_arctic_hts": "hts",
    "cmu_us_awb_arctic_hts": "hts",
    "cmu_us_bdl_arctic_hts": "hts",
    "cmu_us_clb_arctic_hts": "hts",
    "cmu_us_jmk_arctic_hts": "hts",
    "cmu_us_rms_arctic_hts": "hts",
}
F0_STD_RATIO = 0.14  # target_f0_std / target_f0_mean, as in kal_diphone (14 / 105 Hz)
TIMEOUT_S = 300


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_script(text: str, voice: Voice, wav: Path, segs: Path) -> str:
    """The scheme program festival runs for one utterance."""
    kind = FESTIVAL_VOICES.get(voice.name, "diphone")
    rate = float(voice.params.get("rate", 1.0))
    lines = [f"(voice_{voice.name})"]
    if kind == "hts":
        lines.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {rate:.4f}))))")
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {1.1 / rate:.4f})")  # voice default 1.1
        if "f0_hz" in voice.params:
            f0 = float(voice.params["f0_hz"])
            lines.append(f"(set! int_lr_params '((target_f0_mean {f0:.1f}) (target_f0_std "
                         f"{f0 * F0_STD_RATIO:.1f}) (model_f0_mean 170) (model_f0_std 34)))")
    lines += [
        f"(set! utt (Utterance Text {_scheme_string(text)}))",
        "(utt.synth utt)",
        f"(utt.save.wave utt {_scheme_string(str(wav))} 'riff)",
        f"(utt.save.segs utt {_scheme_string(str(segs))})",
    ]
    return "\n".join(lines) + "\n"


def parse_segs(content: str) -> list[tuple[str, float]]:
    """festival segs file -> [(phone, end_s)]; raises EngineError when malformed."""
    head, sep, body = content.partition("#")
    if not sep:
        raise EngineError("festival: segs file has no '#' header line")
    ends = []
    for line in body.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise EngineError(f"festival: unparsable segs line {line!r}")
        ends.append((parts[2], float(parts[0])))
    return ends


class FestivalEngine:
    """Engine protocol for festival voices (Voice.name in FESTIVAL_VOICES)."""

    name = "festival"

    def available(self) -> bool:
        return bool(self.voices())

    @staticmethod
    @lru_cache(maxsize=1)
    def voices() -> tuple[str, ...]:
        if shutil.which("festival") is None:
            return ()
        roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
        found = {p.name for root in roots if root.is_dir() for p in root.glob("*/*") if p.is_dir()}
        return tuple(v for v in FESTIVAL_VOICES if v in found)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        if voice.name not in self.voices():
            raise EngineError(f"festival: voice {voice.name!r} is not installed")
        with tempfile.TemporaryDirectory(prefix="distilface-festival-") as tmp:
            wav, segs = Path(tmp) / "out.wav", Path(tmp) / "out.segs"
            script = Path(tmp) / "synth.scm"
            script.write_text(build_script(text, voice, wav, segs), encoding="utf-8")
            try:
                proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True,
                                      text=True, timeout=TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as e:
                raise EngineError(f"festival: {e}") from None
            if proc.returncode != 0 or not wav.exists() or not segs.exists():
                raise EngineError(f"festival failed ({proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[:300]}")
            audio = load_audio(wav)
            ends = parse_segs(segs.read_text(encoding="utf-8", errors="replace"))
        phones: list[PhoneSegment] = segments_from_ends(ends, audio.size / SAMPLE_RATE_HZ,
                                                        f"festival {voice.id}")
        return Synthesis(audio=audio, phones=phones)
