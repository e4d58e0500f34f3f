"""NumPy's BLAS thread pool, as seen from convcore.

OpenBLAS (NumPy's wheels) keeps worker threads that spin for up to about 2**28 cycles (a tenth of
a second) after every multi-threaded product before they sleep. A program that calls ``np.matmul``
between convcore's layers therefore has those threads competing with convcore's own for the
cores, step after step. :func:`one_blas_thread` runs a block with NumPy's BLAS limited to one
thread, so that a product inside it leaves no spinning workers behind, and restores the previous
count after; :class:`convcore.nn.Sequential` and :func:`convcore.nn.train_step` run under it.

The BLAS libraries are found once, by their exported thread-count functions, among the shared
objects mapped into the process (OpenBLAS under any of its symbol prefixes, and MKL). Setting
and restoring costs two foreign calls per library, about a microsecond.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import List, Optional, Tuple

__all__ = ["BlasLibrary", "blas_libraries", "one_blas_thread"]

_OPENBLAS_PREFIXES = ("scipy_openblas", "openblas")
_OPENBLAS_SUFFIXES = ("64_", "")


class BlasLibrary:
    """One loaded BLAS: its path and its thread-count getter and setter."""

    def __init__(self, path: str, get, set_):
        self.path, self._get, self._set = path, get, set_

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))

    def __repr__(self) -> str:
        return f"BlasLibrary({self.path!r}, threads={self.get()})"


def _mapped_paths() -> List[str]:
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip()
                if path.startswith("/") and ".so" in path.rsplit("/", 1)[-1]:
                    paths.add(path)
    except OSError:
        return []
    return sorted(paths)


def _load(path: str) -> Optional[BlasLibrary]:
    name = path.rsplit("/", 1)[-1].lower()
    if "blas" not in name and "mkl" not in name:
        return None
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)  # already loaded: never load one
    except OSError:
        return None
    for prefix in _OPENBLAS_PREFIXES:
        for suffix in _OPENBLAS_SUFFIXES:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                return BlasLibrary(path, get, set_)
    get, set_ = getattr(lib, "MKL_Get_Max_Threads", None), getattr(lib, "MKL_Set_Num_Threads", None)
    if get is not None and set_ is not None:
        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
        return BlasLibrary(path, get, set_)
    return None


_found: Optional[Tuple[BlasLibrary, ...]] = None
_lock = threading.Lock()


def blas_libraries(refresh: bool = False) -> Tuple[BlasLibrary, ...]:
    """The BLAS libraries loaded in this process (found on first call, or again with refresh)."""
    global _found
    with _lock:
        if _found is None or refresh:
            libs = (_load(p) for p in _mapped_paths())
            _found = tuple(lib for lib in libs if lib is not None)
        return _found


class _OneBlasThread(threading.local):
    """The context manager behind :func:`one_blas_thread` (one per Python thread; re-entrant)."""

    def __init__(self):
        self.depth = 0
        self.changed: List[Tuple[BlasLibrary, int]] = []

    def __enter__(self) -> None:
        self.depth += 1
        if self.depth == 1:
            for lib in blas_libraries():
                n = lib.get()
                if n > 1:
                    lib.set(1)
                    self.changed.append((lib, n))

    def __exit__(self, *exc) -> None:
        self.depth -= 1
        if self.depth == 0:
            changed, self.changed = self.changed, []
            for lib, n in changed:
                lib.set(n)


_one = _OneBlasThread()


def one_blas_thread() -> _OneBlasThread:
    """A context manager: the block runs with every loaded BLAS on one thread, and their thread
    counts are restored after it. Nested blocks cost nothing; libraries already on one thread
    are left alone."""
    return _one
