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

All or nothing: what can be checked without the model is checked first (`plan_engine_kit`: a
.dfn name, no folder where a kit file goes, the compiler, the CPU level it must accept), then the
.dfn and the kit are built in a temporary folder beside the target and moved into place only when
all of it was built; a failed or interrupted build leaves an old kit as it was. The final moves
are renames, one file after another with kit.json last (Ctrl-C waits for them): a rename refused
midway (a library in use on Windows) can leave files of two builds, which kit.json's sums tell
apart. kit.json records the flags the library was really built with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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


@dataclass(frozen=True)
class KitPlan:
    """What a kit build will do, settled before anything is written (`plan_engine_kit`)."""

    model_path: Path
    target: str
    cc: str | None  # the C compiler (None for "web": wasm.compiler() at build time)
    flags: tuple[str, ...]  # the step's flags the compiler accepts, or the WebAssembly build's
    strict: bool  # march named by the caller: a compiler that refuses it fails the build
    names: tuple[str, ...]  # every file the kit puts beside the model, the model first, kit.json last


def kit_names(model_name: str, target: str) -> tuple[str, ...]:
    """The files of a kit for `target`, `model_name` first and kit.json last."""
    lib = TARGETS[target][0]
    if target == "web":
        return (model_name, lib, "distilface.js", "example.mjs", "example.html", "kit.json")
    extra = (str(Path(lib).with_suffix(".def")), str(Path(lib).with_suffix(".lib"))) if target == "windows" else ()
    return (model_name, lib, *extra, "dfstep.h", "DistilFace.cs", "Example.cs", "kit.json")


def _first_error(stderr: str) -> str:
    """The line of a compiler's output that says what it refused (gcc adds a list of every known
    CPU level after it)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()] or ["refused"]
    return next((line for line in lines if "error" in line), lines[0])


def _refusal(cc: str, flags: tuple[str, ...]) -> str | None:
    """What the compiler says where it refuses `flags`, tried on an empty C file (a fraction of a
    second, nothing written), else None."""
    try:
        proc = subprocess.run([cc, *flags, "-c", "-x", "c", os.devnull, "-o", os.devnull], capture_output=True,
                              text=True)
    except OSError as e:
        raise native.compiler_cannot_run(cc, e) from None
    return _first_error(proc.stderr) if proc.returncode else None


def plan_engine_kit(model_path: str | Path, march: str | None = DEFAULT_MARCH, target: str = "host",
                    strict_march: bool = False) -> KitPlan:
    """Every check of a kit build that needs no model, before anything is written: a .dfn name,
    a known target, no folder where a kit file goes, a compiler, and the step's flags (`march`,
    None: portable). A compiler that refuses the flags fails with strict_march (the caller named
    the level), else the library is built portable (a warning says so) and kit.json says that."""
    model_path = Path(model_path)
    if model_path.suffix != ".dfn":
        raise ValueError(f"{model_path}: an engine kit goes with a .dfn file (the C loader's format)")
    if target not in TARGETS:
        raise ValueError(f"engine kit target {target!r}: one of {', '.join(TARGETS)}")
    names = kit_names(model_path.name, target)
    for name in names:
        if (model_path.parent / name).is_dir():
            raise IsADirectoryError(f"{model_path.parent / name}: is a folder; the engine kit writes a file there")
    if target == "web":
        from distilface.runtime import wasm

        if wasm.compiler() is None:  # the build's own words, before the .dfn is exported
            raise wasm.WasmUnavailable("the browser's C runtime needs clang with wasm32-wasi support (Debian: "
                                       "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)")
        return KitPlan(model_path, target, None, (*wasm.TARGET, *wasm.STEP_FLAGS), False, names)
    cc = TARGETS[target][1] or native.compiler()
    if cc is None:
        raise native.NativeUnavailable("the native runtime needs a C compiler (cc, gcc or clang; Debian: "
                                       "apt-get install gcc)")
    if target != "host" and shutil.which(cc) is None:
        raise native.NativeUnavailable(f"an engine kit for {target} needs {cc} (Debian: apt-get install "
                                       f"gcc-mingw-w64-x86-64; scripts/setup-extra.sh windows)")
    flags = step_flags(march)
    why = _refusal(cc, flags) if march is not None else None
    if why is not None:
        flags = _fallback(model_path, cc, f"-march={march}", strict_march, why)
    return KitPlan(model_path, target, cc, flags, strict_march, names)


def _fallback(model_path: Path, cc: str, refused: str, strict: bool, why: str) -> tuple[str, ...]:
    """The portable flags, with a warning, where the compiler refused the flags `refused`; a named
    level (strict) fails instead: a library for another CPU than asked would be a silent surprise."""
    if strict:
        raise ValueError(f"{model_path}: {cc} refuses {refused} for the kit's library ({why}); name a "
                         f"CPU level it knows, e.g. x86-64-v3, or --march portable")
    warnings.warn(f"engine kit: {cc} refuses {refused} ({why}); building the library with "
                  f"{' '.join(native.CFLAGS_PORTABLE)}", RuntimeWarning, stacklevel=3)
    return native.CFLAGS_PORTABLE


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ctrl-C held back until the block ends (main thread only): the kit's renames run as one
    step, never leaving files of two builds side by side."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def _staged(plan: KitPlan, model_in_stage: bool) -> Iterator[Path]:
    """A temporary folder beside the kit's files to build it in; on clean exit its files replace
    the kit's (the model's too where `model_in_stage`), else it goes and the old kit stays whole."""
    folder = plan.model_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{plan.model_path.name}.kit.", dir=folder))
    try:
        yield stage
        names = plan.names if model_in_stage else plan.names[1:]
        with _sigint_deferred():
            for name in names:  # kit.json last: where it is new, so is every file it lists
                os.replace(stage / name, folder / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _build(plan: KitPlan, stage: Path, model: Path) -> dict[str, Any]:
    """The kit's files for `model` (a written .dfn) into `stage`; returns kit.json's content."""
    name, cc, ldflags = TARGETS[plan.target]
    flags = plan.flags
    extra: list[Path] = []
    if plan.target == "web":
        from distilface.runtime import wasm

        lib, cc = wasm.build_wasm(stage / name), wasm.compiler()
        copies = [(JS / f, stage / f) for f in ("distilface.js", "example.mjs", "example.html")]
    else:
        cc = plan.cc
        # the empty-file trial can pass while the step itself does not build with these flags:
        # a named level then fails, else kit.json says what the library was really built with
        used: list[str] = []
        try:
            lib = native.compile_library(stage / name, flags, cc=cc, ldflags=(*native.LDFLAGS, *ldflags),
                                         strict=plan.strict, used_flags=used)
        except ValueError as e:
            raise ValueError(f"{plan.model_path}: {e}; name a CPU level it knows, e.g. x86-64-v3, "
                             "or --march portable") from None
        flags = tuple(used)
        if plan.target == "windows":
            extra = _msvc_import_library(lib, cc)
        copies = [(native.CSRC / "dfstep.h", stage / "dfstep.h"),
                  (CSHARP / "DistilFace.cs", stage / "DistilFace.cs"),
                  (CSHARP / "Example.cs", stage / "Example.cs")]
    for src, dst in copies:
        shutil.copyfile(src, dst)
    files = [model, lib, *extra, *(dst for _, dst in copies)]
    kit = {"format": "distilface-engine-kit", "version": 1, "abi": native.ABI, "target": plan.target,
           "step_flags": list(flags), "compiler": cc,
           "machine": "wasm32" if plan.target == "web" else platform.machine(),
           "files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}}
    (stage / "kit.json").write_text(json.dumps(kit, indent=2) + "\n")
    return kit


def write_engine_kit(model_path: str | Path, march: str | None = DEFAULT_MARCH, target: str = "host",
                     strict_march: bool = False) -> dict[str, Any]:
    """The kit beside `model_path` (a written .dfn): library (for `target`, a key of TARGETS),
    header, C# binding and example (for "web": distilface.wasm, distilface.js and examples; `march`
    unused), kit.json. Built in a temporary folder beside it and moved into place only when
    complete: a failed or interrupted build leaves the old kit as it was. Returns kit.json's
    content."""
    plan = plan_engine_kit(model_path, march, target, strict_march)
    with _staged(plan, model_in_stage=False) as stage:
        return _build(plan, stage, plan.model_path)


def export_engine_kit(student: Any, plan: KitPlan, fps: float = 30.0, source: str = "",
                      half: bool = False) -> dict[str, Any]:
    """`distilface export --native -o DIR/NAME.dfn --engine-kit`: the checked .dfn
    (`native.export_native`) and its kit (`plan`, from `plan_engine_kit`), both built in a
    temporary folder and moved into DIR together: nothing of an old kit, its .dfn included, is
    replaced unless all of the new one was built. Returns export_native's report with the kit."""
    with _staged(plan, model_in_stage=True) as stage:
        staged = stage / plan.model_path.name
        try:
            report = native.export_native(student, staged, fps=fps, source=source, half=half)
        except ValueError as e:  # an ExportMismatch names the file: the target, not the stage
            raise type(e)(str(e).replace(str(staged), str(plan.model_path))) from None
        report["engine_kit"] = _build(plan, stage, staged)
    return {**report, "path": str(plan.model_path)}
