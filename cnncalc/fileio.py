"""Files: writing so that a failure never leaves a half-written file (or set of files) behind, and
telling NumPy's .npy and .npz files apart by their first bytes, whatever their names."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path

from .errors import CnnCalcError


def write_atomic(path: str | Path, data: bytes | str, *, force: bool = True) -> Path:
    """Write to a temporary file beside `path`, then rename it into place in one step."""
    write_all_atomic({Path(path): data}, force=force)
    return Path(path)


def write_all_atomic(files: Mapping[Path, bytes | str], *, force: bool = True,
                     new_folders: Collection[Path] = ()) -> None:
    """Write several files as one unit: every file is staged in full before any target is touched.

    A report and its images, or one plot per kind, are all checked and written to temporary files
    first; only when every one of them is complete are they renamed into place (renames do not fail
    for want of space). On any error the temporary files, and the folders this call created, go again.
    `new_folders` may be created (one level, inside an existing folder: a Markdown report's
    `<name>_files/`); every other target's folder must exist.
    """
    targets = [Path(path) for path in files]
    creatable = {Path(folder) for folder in new_folders}
    for target in targets:
        if target.exists() and not force:
            raise CnnCalcError(f"{target} already exists", hint="pass --force to overwrite it")
        if target.is_dir():
            raise CnnCalcError(f"{target} is a directory", hint="give a file name, e.g. out/model.onnx")
        folder = _folder(target)
        needed = _folder(folder) if folder in creatable and not folder.is_dir() else folder
        if not needed.is_dir():
            raise CnnCalcError(f"cannot write {target}: folder {needed} does not exist", hint=f"mkdir -p {needed}")
    umask = os.umask(0)
    os.umask(umask)
    created: list[Path] = []
    staged: list[tuple[str, Path]] = []
    current = Path(".")
    try:
        for target, data in zip(targets, files.values(), strict=True):
            current, folder = target, _folder(target)
            if not folder.is_dir():  # one of new_folders, checked above
                folder.mkdir()
                created.append(folder)
            payload = data.encode() if isinstance(data, str) else data
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            staged.append((temp, target))
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        for temp, target in staged:
            current = target
            os.replace(temp, target)
        created.clear()  # all in place: the new folders stay
    except OSError as error:
        raise CnnCalcError(f"cannot write {current}: {error.strerror or error}") from None
    finally:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.unlink(temp)
        for folder in created:  # only after a failure
            try:
                folder.rmdir()
            except OSError:  # not empty: something else wrote there meanwhile
                pass


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (NumPy's format description)
ZIP_MAGIC = b"PK\x03\x04"  # a .npz is a zip archive of .npy files


def numpy_file_kind(path: Path) -> str | None:
    """"npy" or "npz" by the file's first bytes, or None when it is neither; OSError when it cannot be read."""
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    return None


def numpy_load_problem(error: Exception) -> str:
    """NumPy's reason for refusing a file, reworded where it misleads (it blames pickling for any odd bytes)."""
    text = str(error)
    if "pickled" in text or "Python objects" in text or "Object arrays" in text:
        return "it holds Python objects (dtype object), not numbers"
    return text

