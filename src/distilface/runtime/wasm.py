"""The C runtime compiled to WebAssembly, for the browser viewer (docs/viewer.md, "In the browser").

The same csrc/ the native runtime builds (the step, the streaming bookkeeping, resampling and the
.dfn loader, which the page feeds from memory with `df_model_load_memory`), compiled by clang for
wasm32-wasi with 128-bit SIMD: dfstep.c's 8-float vectors become pairs of wasm v128 operations.
No WASI runtime is needed: nothing exported opens a file or prints, and the page answers the few
WASI imports wasi-libc still declares with ENOSYS (js/distilface.js, the module that drives it
in the viewer and in the web engine kit). Debian: clang lld
wasi-libc libclang-rt-dev-wasm32 (scripts/setup.sh).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from distilface.runtime import native

# What js/distilface.js calls, and the allocator it passes buffers with.
JS_DIR = Path(__file__).with_name("js")
EXPORTS = ("malloc", "free", "df_abi", "df_model_load_memory", "df_model_outputs", "df_model_name",
           "df_model_lookahead_samples", "df_model_stream", "df_model_free", "df_stream_set_input_rate",
           "df_stream_push", "df_stream_reset", "df_stream_free")
TARGET = ("--target=wasm32-wasi", "--sysroot=/usr")  # Debian's wasi-libc: /usr/{include,lib}/wasm32-wasi
STEP_FLAGS = ("-O3", "-msimd128", "-ffast-math")  # as native.CFLAGS: reassociated products (GELU: dfstep.c's rational erf)
REST_FLAGS = ("-O2",)  # IEEE, as native.STREAM_CFLAGS: frame times and resampling taps as Python's
SOURCES = (native.SOURCE, native.STREAM_SOURCE, native.MODEL_SOURCE, native.RESAMPLE_SOURCE)


class WasmUnavailable(native.NativeUnavailable):
    """No clang that targets wasm32-wasi (or no wasi-libc) on this machine."""


def compiler() -> str | None:
    """$DISTILFACE_WASM_CC, else clang on PATH."""
    return os.environ.get("DISTILFACE_WASM_CC") or shutil.which("clang")


def source_digest() -> str:
    """What a build depends on: the sources, the header and the flags."""
    h = hashlib.sha256()
    for p in (*SOURCES, native.CSRC / "dfstep.h"):
        h.update(p.read_bytes())
    h.update(" ".join(TARGET + STEP_FLAGS + REST_FLAGS + EXPORTS).encode())
    return h.hexdigest()[:16]


def build_wasm(out: str | Path) -> Path:
    """Compile csrc/ into `out` (a .wasm, written atomically). Raises WasmUnavailable without a
    wasm-capable clang, with the compiler's message."""
    cc = compiler()
    if cc is None:
        raise WasmUnavailable("the browser's C runtime needs clang with wasm32-wasi support (Debian: apt-get "
                              "install clang lld wasi-libc libclang-rt-dev-wasm32)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        objs = []
        for src in SOURCES:
            obj = Path(tmp) / (src.stem + ".o")
            flags = STEP_FLAGS if src == native.SOURCE else REST_FLAGS
            _run([cc, *TARGET, *flags, "-c", "-o", str(obj), str(src)])
            objs.append(str(obj))
        wasm = Path(tmp) / out.name
        exports = [f"-Wl,--export={name}" for name in EXPORTS]
        _run([cc, *TARGET, "-nostartfiles", "-Wl,--no-entry", *exports, "-o", str(wasm), *objs, "-lm"])
        os.replace(wasm, out)
    return out


def builds_here() -> bool:
    """Whether this machine builds the WebAssembly runtime (a trial build into a temporary folder)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            build_wasm(Path(tmp) / "distilface.wasm")
        return True
    except WasmUnavailable:
        return False


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise WasmUnavailable(f"the WebAssembly runtime needs clang for wasm32-wasi ({cmd[0]}: {e.strerror}; "
                              "Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)") from e
    if proc.returncode:
        raise WasmUnavailable(f"building the WebAssembly runtime failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
