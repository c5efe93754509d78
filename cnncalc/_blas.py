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
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: exported names of OpenBLAS's thread-count functions: plain builds, and NumPy's wheels (scipy-openblas,
#: 64-bit integers), which prefix "scipy_" and suffix "64_"
_NAME_FORMS = ("openblas_{}", "openblas_{}64_", "scipy_openblas_{}", "scipy_openblas_{}64_")

_lock = threading.Lock()
_users = 0  # callers inside limited_blas
_threads_before = 0  # OpenBLAS's count before the first of them
_limit = 0  # the count while they are inside


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
    """Within the block every BLAS call runs on its caller's thread; the previous count is restored after."""
    with limited_blas(1):
        yield


@contextmanager
def limited_blas(threads: int) -> Iterator[None]:
    """Within the block BLAS calls use at most `threads` threads; the previous count is restored after.

    The setting is process-wide in OpenBLAS; nested and concurrent users share one save and restore, and
    while several are inside, the smallest limit holds.
    """
    global _users, _threads_before, _limit
    api = _openblas_thread_api()
    if api is None:
        yield
        return
    get, set_ = api
    with _lock:
        if _users == 0:
            _threads_before = _limit = int(get())
        if threads < _limit:
            _limit = max(1, threads)
            set_(_limit)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_(_threads_before)


def cores_busy_elsewhere() -> int:
    """How many of the cores this process may use other processes are running on right now (Linux; else 0).

    OpenBLAS's threads wait for each other at the end of every matmul, so one of them sharing its core
    with another program holds up all of them: with one busy loop beside it, ResNet-18 at batch 1 took
    86 ms on two BLAS threads against 49 on one (43 and 49 on an idle machine; docs/runtime.md). Read from
    the kernel's count of running threads (/proc/loadavg) less this process's own, less the cores
    outside this process's affinity that the others may be running on.
    """
    try:
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            running_everywhere = running_threads(loadavg.read())
        own = sum(_running(tid) for tid in os.listdir("/proc/self/task"))
        ours = len(os.sched_getaffinity(0))
    except (OSError, ValueError, AttributeError):
        return 0
    return busy_on_our_cores(running_everywhere - own, os.cpu_count() or ours, ours)


def running_threads(loadavg_text: str) -> int:
    """The running threads of /proc/loadavg's fourth field ('1 0.5 0.2 2/79 1234' -> 2)."""
    return int(loadavg_text.split()[3].split("/")[0])


def busy_on_our_cores(running_elsewhere: int, host_cores: int, our_cores: int) -> int:
    """Others' running threads that must be on our cores: the scheduler puts them on the other cores first."""
    return max(0, min(our_cores, running_elsewhere - (host_cores - our_cores)))


def _running(tid: str) -> bool:
    """Whether one of this process's threads is running or runnable (state R in /proc/self/task/TID/stat)."""
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # the name in brackets may hold spaces
    except OSError:  # the thread ended meanwhile
        return False
    return bool(fields) and fields[0] == "R"
