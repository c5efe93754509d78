"""Files: writing so that a failure never leaves a half-written file (or set of files) behind (through a
symbolic link to its target; into a device, pipe or stream as it is), telling NumPy's .npy and .npz files
apart by their first bytes, whatever their names, and saying what a path that names nothing was meant to be."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import zipfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from .errors import CnnCalcError

if TYPE_CHECKING:
    import numpy as np


def write_atomic(path: str | Path, data: bytes | str, *, force: bool = True) -> Path:
    """Write to a temporary file beside `path`, then rename it into place in one step (see write_all_atomic)."""
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

    A symbolic link is followed: its target is replaced, the link stays. A device, a pipe or a stream
    (/dev/null, /dev/stdout, a FIFO) has no content to lose and cannot be renamed over: it is written
    in place, without --force, after every file is staged.
    """
    creatable = {Path(folder) for folder in new_folders}
    plans = [_plan(Path(target), force, creatable) for target in files]
    umask = os.umask(0)
    os.umask(umask)
    created: list[Path] = []
    staged: list[tuple[str, Path, Path]] = []  # (temporary file, where it goes, target as given)
    current = Path(".")
    try:
        payloads = [data.encode() if isinstance(data, str) else data for data in files.values()]
        for (given, where, in_place), payload in zip(plans, payloads, strict=True):
            if in_place:
                continue
            current, folder = given, _folder(where)
            with signals_held():  # a temporary file is always on the list that removes it
                if not folder.is_dir():  # one of new_folders, checked above
                    folder.mkdir()
                    created.append(folder)
                fd, temp = tempfile.mkstemp(prefix=_temp_prefix(where), suffix=".tmp", dir=folder)
                staged.append((temp, where, given))
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        for (given, where, in_place), payload in zip(plans, payloads, strict=True):
            if in_place:
                current = given
                _write_in_place(where, payload)
        with signals_held():  # every file or none: Ctrl-C between two renames would leave half a set
            for temp, where, given in staged:
                current = given
                os.replace(temp, where)
            created.clear()  # all in place: the new folders stay
    except OSError as error:
        raise CnnCalcError(f"cannot write {current}: {error.strerror or error}", hint=_write_hint(error)) from None
    finally:
        with signals_held():
            for temp, _, _ in staged:
                if os.path.exists(temp):
                    os.unlink(temp)
            for folder in created:  # only after a failure
                try:
                    folder.rmdir()
                except OSError:  # not empty: something else wrote there meanwhile
                    pass


#: characters of the target's name kept in its temporary file's name: `.NAME.XXXXXXXX.tmp` must stay within
#: the 255 bytes a file name may have, or a long but valid name could not be written
TEMP_NAME_KEEP = 100


def _temp_prefix(where: Path) -> str:
    """`.NAME.` for the temporary file beside `where`, the name cut short so the whole stays a valid name."""
    return f".{where.name[:TEMP_NAME_KEEP]}."


def _write_hint(error: OSError) -> str | None:
    """How to get past an error of the file system, where the reason alone does not say."""
    return {
        errno.ENOSPC: "free some space on that disk, or write elsewhere",
        errno.EDQUOT: "free some space within your disk quota, or write elsewhere",
        errno.EACCES: "choose a folder you may write to",
        errno.EPERM: "choose a folder you may write to",
        errno.EROFS: "that file system is read-only; choose another folder",
        errno.ENAMETOOLONG: "use a shorter file name (at most 255 bytes)",
        errno.EPIPE: "the program reading from it has stopped",
    }.get(error.errno or 0)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block takes effect when it ends, not in its middle.

    For steps that must finish as a unit (a temporary file created and put on the list that removes
    it; a set of files renamed into place): interrupted halfway, they leave litter or half a set.
    Only the main thread can set handlers; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    # a handler set outside Python (getsignal gives None) could not be put back: such a signal is not held
    previous = {signum: signal.signal(signum, hold) for signum in HELD_SIGNALS if signal.getsignal(signum) is not None}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held in dict.fromkeys(caught):  # delivered again, to the handlers that were there before
            signal.raise_signal(held)


def check_writable(path: str | Path, *, force: bool) -> None:
    """Refuse now what writing `path` later would refuse (an existing file without force, a missing folder):
    a command that computes before it writes (train, run) must not lose its work to the path."""
    _plan(Path(path), force, set())


def would_overwrite(path: str | Path) -> bool:
    """Whether writing `path` replaces a file's content, which needs --force; a device or pipe does not."""
    where, in_place = where_to_write(Path(path))
    return not in_place and where.exists()


def where_to_write(target: Path) -> tuple[Path, bool]:
    """(the path to write, whether to write it in place): a link's target, renamed over unless it is a stream.

    A link into /proc (/dev/stdout, /dev/fd/1) names an open stream even when that is a regular file
    (`> out.json`): renaming over the file would leave the stream writing to a deleted one.
    """
    where = target
    if os.path.islink(target):
        where, into_proc = _follow_links(target)
        if into_proc:
            return where, True
    try:
        mode = os.stat(where).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a new file, or a link to one; a bad folder is named later
        return where, False
    except OSError as error:
        raise CnnCalcError(f"cannot write {target}: {error.strerror or error}") from None
    if stat.S_ISBLK(mode):
        raise CnnCalcError(f"cannot write {target}: it is a block device (a disk or partition)",
                           hint="give the path of a regular file")
    return where, not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


MAX_LINKS = 40  # links followed before giving up, as Linux does (ELOOP)


def _follow_links(link: Path) -> tuple[Path, bool]:
    """The file a chain of symbolic links ends at, and whether the chain passes through /proc."""
    current = os.path.abspath(link)
    for _ in range(MAX_LINKS):
        folder = os.path.realpath(os.path.dirname(current))
        current = os.path.join(folder, os.path.basename(current))
        if folder == "/proc" or folder.startswith("/proc/"):
            return Path(current), True
        if not os.path.islink(current):
            return Path(current), False
        current = os.path.join(folder, os.readlink(current))
    raise CnnCalcError(f"cannot write {link}: its symbolic links form a loop",
                       hint=f"check where the link points (ls -l {link})")


def _plan(target: Path, force: bool, creatable: set[Path]) -> tuple[Path, Path, bool]:
    """(target as given, the path to write, whether in place), refused here when it cannot be written."""
    where, in_place = where_to_write(target)
    if in_place:
        return target, where, True
    if where.is_dir():
        # the example keeps the command's own suffix out of it: export writes .onnx, analyze .json/.csv/.md
        raise CnnCalcError(f"{target} is a directory",
                           hint=f"give a file's path, e.g. {target / 'NAME'} with the suffix of the file you want")
    if where.exists() and not force:
        raise CnnCalcError(f"{target} already exists", hint="pass --force to overwrite it")
    folder = _folder(where)
    needed = _folder(folder) if folder in creatable and not folder.is_dir() else folder
    if not needed.is_dir():
        blocking = next((parent for parent in (needed, *needed.parents) if parent.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise CnnCalcError(f"cannot write {target}: {blocking} is a file, not a folder",
                               hint=f"choose another path, or move {blocking} out of the way")
        raise CnnCalcError(f"cannot write {target}: folder {needed} does not exist", hint=f"mkdir -p {needed}")
    return target, where, False


def _write_in_place(where: Path, payload: bytes) -> None:
    """Write to a device, pipe or stream as it is. Our own descriptor (/proc/self/fd/N) is shared, not reopened:
    the bytes then land where the shell's redirection points, after what was printed before."""
    own = re.fullmatch(rf"/proc/(?:self|{os.getpid()})/fd/(\d+)", str(where))
    if own:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.dup(int(own.group(1)))
    else:
        fd = os.open(where, os.O_WRONLY | os.O_APPEND)  # no O_CREAT: it exists; no O_TRUNC: a stream keeps going
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


MAX_LISTED = 10_000  # folder entries compared with a mistyped name; a huge folder is not read whole


def looks_like_path(text: str) -> bool:
    """Whether an argument that names no existing file was meant as a path rather than spec text: it has a
    folder separator or a file suffix (`specs/lenet5.yam`), which chain text has only inside options `(...)`."""
    if any(opener in text for opener in "|[("):  # chain text: items, groups, options
        return False
    return "/" in text or os.sep in text or re.search(r"\.[A-Za-z][A-Za-z0-9]{0,7}\Z", text) is not None


def missing_file_hint(path: str | Path) -> str:
    """How to fix a path that names nothing: the closest name in its folder, or the folder that is missing."""
    import difflib
    import itertools

    folder, name = os.path.split(str(path))
    if folder and not os.path.isdir(folder):
        return f"there is no folder {folder}; check the path"
    try:
        with os.scandir(folder or ".") as entries:
            names = [entry.name for entry in itertools.islice(entries, MAX_LISTED)]
    except OSError:
        return "check the path"
    stem = os.path.splitext(name)[0]
    same_stem = [other for other in names if os.path.splitext(other)[0] == stem]  # lenet5.onnx -> lenet5.yaml
    close = same_stem or difflib.get_close_matches(name, names, n=1, cutoff=0.8)  # a typo, not a shared suffix
    return f"did you mean {os.path.join(folder, close[0])}?" if close else "check the path"


NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (NumPy's format description)
ZIP_MAGIC = b"PK\x03\x04"  # a .npz is a zip archive of .npy files
EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # a zip with no members starts with its end record: np.savez() with no arrays


def numpy_file_kind(path: Path) -> str | None:
    """"npy" or "npz" by the file's first bytes, or None when it is neither; OSError when it cannot be read."""
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return "npz"
    return None


def npz_array_names(path: Path) -> list[str]:
    """The members of a .npz in file order, as np.load names them (an array's name without .npy).

    Raises zipfile.BadZipFile or OSError when the archive cannot be read.
    """
    with zipfile.ZipFile(path) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist()]


def npz_array_stand_in(path: Path, name: str) -> np.ndarray:
    """An array with the shape and dtype of one .npz member that takes no memory (a broadcast zero): checks
    on it run before anything is decompressed, as a memory-mapped .npy is checked before it is read.

    Raises ValueError when the member is not a .npy array (np.load would hand over its raw bytes).
    """
    import numpy as np

    with zipfile.ZipFile(path) as archive:
        if f"{name}.npy" not in archive.namelist():
            raise ValueError(f"its member {name!r} is not a .npy array")
        with archive.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def numpy_load_problem(error: Exception) -> str:
    """NumPy's reason for refusing a file, reworded where it misleads (it blames pickling for any odd bytes)."""
    text = str(error)
    if "pickled" in text or "Python objects" in text or "Object arrays" in text:
        return "it holds Python objects (dtype object), not numbers"
    return text

