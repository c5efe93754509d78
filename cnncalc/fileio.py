"""Writing files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import CnnCalcError


def write_atomic(path: str | Path, data: bytes | str, *, force: bool = True) -> Path:
    """Write to a temporary file beside `path`, then rename it into place in one step."""
    target = Path(path)
    if target.exists() and not force:
        raise CnnCalcError(f"{target} already exists", hint="pass --force to overwrite it")
    if target.is_dir():
        raise CnnCalcError(f"{target} is a directory", hint="give a file name, e.g. out/model.onnx")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise CnnCalcError(f"cannot write {target}: folder {folder} does not exist", hint=f"mkdir -p {folder}")
    payload = data.encode() if isinstance(data, str) else data
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(temp, target)
    except OSError as error:
        raise CnnCalcError(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target
