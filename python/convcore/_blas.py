"""NumPy's BLAS thread pool, as seen from convcore.

OpenBLAS (NumPy's wheels) keeps worker threads that spin for up to about 2**28 cycles (a tenth of
a second) after every multi-threaded product before they sleep. A program that calls ``np.matmul``
between convcore's layers therefore has those threads competing with convcore's own for the
cores, step after step. :func:`one_blas_thread` runs a block with NumPy's BLAS limited to one
thread, so that a product inside it leaves no spinning workers behind, and restores the previous
count after; :class:`convcore.nn.Sequential` and :func:`convcore.nn.train_step` run under it.

The BLAS libraries are found by their exported thread-count functions among the shared objects
mapped into the process (OpenBLAS under any of its symbol prefixes, and MKL), once and again
whenever Python has imported more modules; each is named by the object that defines the
functions. Setting and restoring costs two foreign calls per library, about a microsecond.
"""

from __future__ import annotations

import ctypes
import os
import sys
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


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _defining_library(fn, fallback: str) -> str:
    """The shared object that defines fn: a handle's symbol lookup also searches the library's
    dependencies, so an extension module linked to a BLAS (SciPy's _fblas) answers for it."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return fallback
    dladdr.argtypes, dladdr.restype = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)], ctypes.c_int
    info = _DlInfo()
    if dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
        return os.path.realpath(os.fsdecode(info.dli_fname))
    return fallback


def _load(path: str) -> Optional[BlasLibrary]:
    name = path.rsplit("/", 1)[-1].lower()
    if "blas" not in name and "mkl" not in name:
        return None
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)  # already loaded: never load one
    except OSError:
        return None
    names = [(f"{p}_get_num_threads{s}", f"{p}_set_num_threads{s}")
             for p in _OPENBLAS_PREFIXES for s in _OPENBLAS_SUFFIXES]
    for get_name, set_name in names + [("MKL_Get_Max_Threads", "MKL_Set_Num_Threads")]:
        get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if get is not None and set_ is not None:
            get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
            return BlasLibrary(_defining_library(set_, path), get, set_)
    return None


_found: Optional[Tuple[BlasLibrary, ...]] = None
_lock = threading.Lock()


_modules_seen = -1


def blas_libraries(refresh: bool = False) -> Tuple[BlasLibrary, ...]:
    """The BLAS libraries loaded in this process: found on first call, and again after Python
    has imported modules (which is how a new BLAS usually arrives: SciPy's own OpenBLAS), or with
    refresh."""
    global _found, _modules_seen
    with _lock:
        if _found is None or refresh or len(sys.modules) != _modules_seen:
            _modules_seen = len(sys.modules)
            found = {}
            for p in _mapped_paths():
                lib = _load(p)
                if lib is not None:
                    found.setdefault(lib.path, lib)  # one entry per library that defines the functions
            _found = tuple(found.values())
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
