"""The engine kit: what an engine or a plugin links to run a student without Python.

`distilface export MODEL --native -o kit/model.dfn --engine-kit` writes, beside the checked
`.dfn`, the C runtime as a shared library built for a CPU level rather than for this machine
(`libdistilface.so`; the same sources `NativeModel` compiles), its header (`dfstep.h`), the C#
binding (`DistilFace.cs`, for Unity, Godot .NET and any .NET or Mono program) and its example
(`Example.cs`), and a `kit.json` of sha256 sums and build flags. Why a separate build: the cached
library of `native.build` is compiled with -march=native for the machine it runs on; a kit goes
to players' machines (docs/engines.md).

`--kit-target web` writes the runtime for browsers and Node instead: the same C sources compiled
to WebAssembly (`distilface.wasm`, distilface.runtime.wasm), the module that drives it
(`distilface.js`, the one the browser viewer runs) and two examples (`example.mjs` for Node,
`example.html` for a page).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from distilface.fileio import atomic_path
from distilface.runtime import native

CSHARP = Path(__file__).with_name("csharp")
JS = Path(__file__).with_name("js")
# target -> (library file name, compiler, extra link flags). "host": this machine's OS and C
# compiler. "windows": x86-64 Windows, cross-compiled with MinGW-w64 (Debian:
# gcc-mingw-w64-x86-64); the DLL imports only KERNEL32 and msvcrt (libgcc linked in), and comes
# with distilface.def and the import library distilface.lib for MSVC-built programs.
# "web": WebAssembly (clang for wasm32, distilface.runtime.wasm), no CPU level.
TARGETS = {"host": ("libdistilface.so", None, ()),
           "windows": ("distilface.dll", "x86_64-w64-mingw32-gcc", ("-static-libgcc",)),
           "web": ("distilface.wasm", None, ())}
# x86-64-v3: AVX2 and FMA, every x86 desktop CPU since 2013-2015 (Haswell, Excavator, Zen); the
# step's 256-bit products need them to run at full speed. Elsewhere (arm64) the compiler's default.
DEFAULT_MARCH = "x86-64-v3" if platform.machine() in ("x86_64", "AMD64") else None  # (host target)


def step_flags(march: str | None) -> tuple[str, ...]:
    """The step's compiler flags for a kit: `native.CFLAGS` with a named CPU level instead of
    -march=native (portable flags where march is None)."""
    if march is None:
        return native.CFLAGS_PORTABLE
    return ("-O3", f"-march={march}", "-mprefer-vector-width=256", "-ffast-math", "-fPIC")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _msvc_import_library(dll: Path, cc: str) -> list[Path]:
    """`distilface.def` (the DLL's exports, read back from its export table) and `distilface.lib`,
    an import library in the COFF format MSVC's link.exe and lld-link take (MinGW's dlltool): a
    program built with MSVC links against the DLL without MinGW."""
    prefix = cc[: -len("gcc")]  # x86_64-w64-mingw32-
    tools = {t: shutil.which(prefix + t) for t in ("objdump", "dlltool")}
    if not all(tools.values()):
        raise native.NativeUnavailable(f"the import library needs {prefix}objdump and {prefix}dlltool "
                                       f"(Debian: binutils-mingw-w64-x86-64)")
    table = subprocess.run([tools["objdump"], "-p", str(dll)], capture_output=True, text=True, check=True).stdout
    names = re.findall(r"^\s*\[\s*\d+\]\s+(df_\w+)$", table, flags=re.M)
    if not names:
        raise native.NativeUnavailable(f"{dll}: no df_ exports in its export table")
    def_path, lib_path = dll.with_suffix(".def"), dll.with_suffix(".lib")
    with atomic_path(def_path) as tmp:
        Path(tmp).write_text(f"LIBRARY {dll.name}\nEXPORTS\n" + "".join(f"    {n}\n" for n in names))
    with atomic_path(lib_path) as tmp:
        subprocess.run([tools["dlltool"], "-m", "i386:x86-64", "-d", str(def_path), "-D", dll.name, "-l", str(tmp)],
                       capture_output=True, text=True, check=True)
    return [def_path, lib_path]


def write_engine_kit(model_path: str | Path, march: str | None = DEFAULT_MARCH,
                     target: str = "host") -> dict[str, Any]:
    """The kit beside `model_path` (a .dfn): library (for `target`, a key of TARGETS), header, C#
    binding and example (for "web": distilface.wasm, distilface.js and examples; `march` unused),
    kit.json; every file written atomically. Returns kit.json's content."""
    model_path = Path(model_path)
    if model_path.suffix != ".dfn":
        raise ValueError(f"{model_path}: an engine kit goes with a .dfn file (the C loader's format)")
    if target not in TARGETS:
        raise ValueError(f"engine kit target {target!r}: one of {', '.join(TARGETS)}")
    name, cc, ldflags = TARGETS[target]
    folder = model_path.parent
    extra: list[Path] = []
    if target == "web":
        from distilface.runtime import wasm

        flags = (*wasm.TARGET, *wasm.STEP_FLAGS)
        lib, cc = wasm.build_wasm(folder / name), wasm.compiler()
        copies = [(JS / f, folder / f) for f in ("distilface.js", "example.mjs", "example.html")]
    else:
        if cc is not None and shutil.which(cc) is None:
            raise native.NativeUnavailable(f"an engine kit for {target} needs {cc} (Debian: apt-get install "
                                           f"gcc-mingw-w64-x86-64; scripts/setup-extra.sh windows)")
        flags = step_flags(march)
        lib = native.compile_library(folder / name, flags, cc=cc, ldflags=(*native.LDFLAGS, *ldflags))
        if target == "windows":
            extra = _msvc_import_library(lib, cc)
        copies = [(native.CSRC / "dfstep.h", folder / "dfstep.h"),
                  (CSHARP / "DistilFace.cs", folder / "DistilFace.cs"),
                  (CSHARP / "Example.cs", folder / "Example.cs")]
    for src, dst in copies:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    files = [model_path, lib, *extra, *(dst for _, dst in copies)]
    kit = {"format": "distilface-engine-kit", "version": 1, "abi": native.ABI, "target": target,
           "step_flags": list(flags), "compiler": cc or native.compiler(),
           "machine": "wasm32" if target == "web" else platform.machine(),
           "files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}}
    with atomic_path(folder / "kit.json") as tmp:
        Path(tmp).write_text(json.dumps(kit, indent=2) + "\n")
    return kit
