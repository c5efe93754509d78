"""Writing files so that a failure never leaves a half-written file, or a half-written set of files, behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import CnnCalcError


def write_atomic(path: str | Path, data: bytes | str, *, force: bool = True) -> Path:
    """Write to a temporary file beside `path`, then rename it into place in one step."""
    write_all_atomic({Path(path): data}, force=force)
    return Path(path)


def write_all_atomic(files: Mapping[Path, bytes | str], *, force: bool = True, make_folders: bool = False) -> None:
    """Write several files as one unit: every file is staged in full before any target is touched.

    A report and its images, or one plot per kind, are all checked and written to temporary files
    first; only when every one of them is complete are they renamed into place (renames do not fail
    for want of space). On any error the temporary files, and the folders this call created, go again.
    `make_folders` creates missing parent folders (a Markdown report's `<name>_files/`).
    """
    targets = [Path(path) for path in files]
    for target in targets:
        if target.exists() and not force:
            raise CnnCalcError(f"{target} already exists", hint="pass --force to overwrite it")
        if target.is_dir():
            raise CnnCalcError(f"{target} is a directory", hint="give a file name, e.g. out/model.onnx")
        folder = _folder(target)
        if not make_folders and not folder.is_dir():
            raise CnnCalcError(f"cannot write {target}: folder {folder} does not exist", hint=f"mkdir -p {folder}")
    umask = os.umask(0)
    os.umask(umask)
    created: list[Path] = []
    staged: list[tuple[str, Path]] = []
    current = targets[0] if targets else Path(".")
    done = False
    try:
        for target, data in zip(targets, files.values(), strict=True):
            current = target
            created += _make_folders(_folder(target))
            payload = data.encode() if isinstance(data, str) else data
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=_folder(target))
            staged.append((temp, target))
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        for temp, target in staged:
            current = target
            os.replace(temp, target)
        done = True
    except OSError as error:
        raise CnnCalcError(f"cannot write {current}: {error.strerror or error}") from None
    finally:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.unlink(temp)
        if not done:
            for folder in reversed(created):  # innermost first
                try:
                    folder.rmdir()
                except OSError:  # not empty: something else wrote there meanwhile
                    pass


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and any missing parents; return the ones created, outermost first."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))
