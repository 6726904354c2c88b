"""Atomic file writes and jsonl helpers.

Every artifact a stage writes goes through `atomic_write`: the data lands in a temporary file in
the same folder and is renamed over the target only when complete, so a killed process never
leaves a half-written file that a later run would take as valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

# mkstemp makes 0600 files; finished artifacts get the usual permissions for the umask.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
from typing import Any, Iterable, Iterator


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fails now, naming `path`, where writing it later would: the target is a folder, a parent is
    a file, or the folder cannot be created or written (tried with a real file, so read-only
    mounts and permissions count whoever runs); or it is one of `inputs` (the output would
    replace what is being read). Creates missing parent folders. Returns the path."""
    path = Path(path)
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise ValueError(f"{path}: is the input file; give the output another name")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{path}: {parent} is a file, not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise type(e)(f"{path}: cannot write there ({e.strerror or e})") from None
    return path


def _named(e: OSError, path: Path) -> OSError:
    """The same error about `path` itself, not the temporary file beside it."""
    return type(e)(f"{path}: cannot write ({e.strerror or e})")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to `path`; on clean exit fsync it and rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _named(e, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _named(e, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Like `atomic_write` for writers that want a path (soundfile, np.savez): yields a temp path."""

    @contextlib.contextmanager
    def _cm() -> Iterator[Path]:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix or ".tmp",
                                       dir=target.parent)
        except OSError as e:
            raise _named(e, target) from None
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, FILE_MODE)
            try:
                os.replace(tmp, target)
            except OSError as e:
                raise _named(e, target) from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    return _cm()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_write(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
    return rows


def write_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    """`np.savez` (uncompressed, no pickles), atomically and byte-reproducibly: np.savez stamps each
    zip entry with the time of writing, here every entry has the same fixed date, so equal arrays
    give equal files (label shards of a resumed or sharded run hash-equal to a one-process run's)."""
    import zipfile

    import numpy as np

    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
