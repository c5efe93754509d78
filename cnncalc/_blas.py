"""How many threads NumPy's OpenBLAS gives one matmul, read and set through OpenBLAS's own C API.

The runtime splits a large batch over threads of its own (see `runtime.Runtime.run`); each of them must
then call BLAS single-threaded, or two threads would each start two BLAS threads on two cores. NumPy has
no API for this, so the functions are looked up (ctypes) in the OpenBLAS library NumPy has loaded, under
the names OpenBLAS and NumPy's scipy-openblas builds export. Where that fails (another BLAS, another OS)
`blas_threads()` is None and the runtime does not split.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: exported names of OpenBLAS's thread-count functions: plain builds, and NumPy's wheels (scipy-openblas,
#: 64-bit integers), which prefix "scipy_" and suffix "64_"
_NAME_FORMS = ("openblas_{}", "openblas_{}64_", "scipy_openblas_{}", "scipy_openblas_{}64_")

_lock = threading.Lock()
_single_threaded_users = 0
_threads_before = 0


@functools.cache
def _openblas_thread_api() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """OpenBLAS's get_num_threads and set_num_threads, or None when NumPy does not run on OpenBLAS here."""
    import numpy  # noqa: F401  (loads the BLAS library whose functions are looked up)

    path = _loaded_library("openblas")
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    found = []
    for function in ("get_num_threads", "set_num_threads"):
        for form in _NAME_FORMS:
            symbol = getattr(library, form.format(function), None)
            if symbol is not None:
                found.append(symbol)
                break
        else:
            return None
    get, set_ = found
    get.restype, get.argtypes = ctypes.c_int, []
    set_.restype, set_.argtypes = None, [ctypes.c_int]
    return get, set_


def _loaded_library(name_part: str) -> str | None:
    """Path of a shared library of this process whose file name contains `name_part` (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if name_part in path.rsplit("/", 1)[-1].lower() and ".so" in path:
                    return path
    except OSError:
        return None
    return None


def blas_threads() -> int | None:
    """Threads OpenBLAS uses for one call now (its OPENBLAS_NUM_THREADS or core count), None when unknown."""
    api = _openblas_thread_api()
    return None if api is None else max(1, int(api[0]()))


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block every BLAS call runs on its caller's thread; the previous count is restored after.

    The setting is process-wide in OpenBLAS; nested and concurrent users share one save and restore.
    """
    global _single_threaded_users, _threads_before
    api = _openblas_thread_api()
    if api is None:
        yield
        return
    get, set_ = api
    with _lock:
        if _single_threaded_users == 0:
            _threads_before = int(get())
            set_(1)
        _single_threaded_users += 1
    try:
        yield
    finally:
        with _lock:
            _single_threaded_users -= 1
            if _single_threaded_users == 0:
                set_(_threads_before)
