"""Benchmark: convcore against PyTorch and a plain NumPy im2col + matmul baseline.

Run it as ``python -m convcore bench [options]`` or ``python benchmarks/bench_conv.py [options]``;
``--help`` lists the options and ``benchmarks/README.md`` explains how to read the output.

For every shape of the suite and every dtype, the three libraries are timed in the same process,
at the same thread count, interleaved (convcore, torch, numpy, convcore, torch, ...), after a
warm-up and a check that they agree. Each sample runs enough calls to last ``--min-time``; the
figure reported is the median of ``--repeat`` samples. Ops:

- ``fwd``: ``y = conv2d(x, w, b)``
- ``bwd_input``: ``dx`` from ``dy`` (convcore ``conv2d_input``, torch ``convolution_backward``
  with output mask ``[True, False, False]``)
- ``bwd_weight``: ``dw`` and ``db`` from ``x`` and ``dy`` (mask ``[False, True, True]``)
- ``total``: the sum of the three medians

GFLOP/s count useful work only: ``2*mb*oc*oh*ow*(ic/groups)*kh*kw`` per op (multiplications by
padding or inserted zeros are not counted). Only NumPy is needed to import this module; PyTorch and
matplotlib are used when installed.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

OPS = ("fwd", "bwd_input", "bwd_weight")
LIBS = ("convcore", "torch", "torch_heap", "numpy")
LIB_TITLES = {"convcore": "convcore", "torch": "torch", "torch_heap": "torch(heap)", "numpy": "numpy"}

# glibc keeps freed blocks below the mmap threshold in its heap and returns the top of the heap
# to the system only above the trim threshold: raising both makes repeated same-size allocations
# reuse warm, already-mapped memory instead of fresh zeroed pages from the kernel.
HEAP_REUSE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}
HEAP_REUSE_ENV_FALLBACK = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}

ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
NUMPY_CALL_LIMIT_S = 2.0  # the baseline is skipped ("-") for an op whose first call takes longer
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}  # max |a - b| / max(1, max |b|)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One convolution of the suite (square kernel, symmetric padding)."""

    name: str
    mb: int
    ic: int
    ih: int
    iw: int
    oc: int
    k: int
    stride: int
    pad: int
    groups: int = 1

    @property
    def oh(self) -> int:
        return (self.ih + 2 * self.pad - self.k) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.iw + 2 * self.pad - self.k) // self.stride + 1

    @property
    def flops(self) -> int:
        """Useful floating-point operations of one op (forward, backward-input or backward-weight)."""
        return 2 * self.mb * self.oc * self.oh * self.ow * (self.ic // self.groups) * self.k * self.k

    @property
    def canonical(self) -> str:
        g = f"g{self.groups}" if self.groups != 1 else ""
        return (f"{g}mb{self.mb}ic{self.ic}ih{self.ih}iw{self.iw}oc{self.oc}kh{self.k}kw{self.k}"
                f"sh{self.stride}sw{self.stride}ph{self.pad}pw{self.pad}")


SUITE = [
    Shape("lenet1", 64, 1, 28, 28, 6, 5, 1, 0),
    Shape("lenet2", 64, 6, 12, 12, 16, 5, 1, 0),
    Shape("small1", 1, 3, 32, 32, 16, 3, 1, 1),
    Shape("small2", 8, 16, 32, 32, 32, 3, 1, 1),
    Shape("res3x3", 8, 64, 56, 56, 64, 3, 1, 1),
    Shape("res3x3s2", 8, 128, 28, 28, 128, 3, 2, 1),
    Shape("res3x3c256", 8, 256, 14, 14, 256, 3, 1, 1),
    Shape("res1x1", 8, 64, 56, 56, 256, 1, 1, 0),
    Shape("stem7x7s2", 8, 3, 224, 224, 64, 7, 2, 3),
    Shape("depthwise", 8, 128, 28, 28, 128, 3, 1, 1, groups=128),
    Shape("tiny", 1, 1, 5, 5, 1, 3, 1, 0),
]
SHAPES = {s.name: s for s in SUITE}
FLOAT64_SHAPES = ("lenet2", "res3x3")
QUICK_SHAPES = ("lenet1", "lenet2", "small1", "small2", "res3x3s2", "depthwise", "tiny")
OVERHEAD_SHAPE = "tiny"


# ------------------------------------------------------------------------------------ problems


def make_inputs(shape: Shape, dtype: str, seed: int = 0):
    """Random ``x, w, b, dy`` (standard normal) for ``shape``: the same values in every process."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.mb, shape.ic, shape.ih, shape.iw)).astype(dtype)
    w = rng.standard_normal((shape.oc, shape.ic // shape.groups, shape.k, shape.k)).astype(dtype)
    b = rng.standard_normal(shape.oc).astype(dtype)
    dy = rng.standard_normal((shape.mb, shape.oc, shape.oh, shape.ow)).astype(dtype)
    return x, w, b, dy


def convcore_ops(s: Shape, x, w, b, dy, method: str = "auto") -> Dict[str, Callable]:
    import convcore as cc

    kw = {"stride": s.stride, "padding": s.pad, "groups": s.groups}
    return {
        "fwd": lambda: cc.conv2d(x, w, b, **kw),
        "bwd_input": lambda: cc.conv2d_input(x.shape, w, dy, method=method, **kw),
        "bwd_weight": lambda: (cc.conv2d_weight(x, w.shape, dy, **kw), cc.conv2d_bias(dy)),
    }


def torch_ops(s: Shape, x, w, b, dy) -> Dict[str, Callable]:
    """PyTorch on tensors sharing the NumPy arrays' memory; exactly the gradients asked for."""
    import torch

    xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
    stride, padding, dilation = [s.stride] * 2, [s.pad] * 2, [1, 1]
    backward = torch.ops.aten.convolution_backward

    def bwd(mask):
        return backward(dyt, xt, wt, [s.oc], stride, padding, dilation, False, [0, 0], s.groups, mask)

    return {
        "fwd": lambda: torch.conv2d(xt, wt, bt, stride, padding, dilation, s.groups),
        "bwd_input": lambda: bwd([True, False, False])[0],
        "bwd_weight": lambda: bwd([False, True, True])[1:],
        "step": lambda: (torch.conv2d(xt, wt, bt, stride, padding, dilation, s.groups), bwd([True, True, True])),
    }


class NumpyConv:
    """The textbook baseline: im2col with ``sliding_window_view``, one matmul per group, col2im
    by a loop over the kernel offsets."""

    def __init__(self, s: Shape, x, w, b, dy):
        self.s, self.x, self.w, self.b, self.dy = s, x, w, b, dy
        self.icg, self.ocg = s.ic // s.groups, s.oc // s.groups
        self.m = s.mb * s.oh * s.ow
        self.wm = w.reshape(s.groups, self.ocg, self.icg * s.k * s.k)  # (g, ocg, K)

    def _col(self) -> np.ndarray:
        """col[g][(n, i, j)][(c, r, t)]: the im2col copy, (g, mb*oh*ow, icg*k*k)."""
        s, p = self.s, self.s.pad
        xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p))) if p else self.x
        win = sliding_window_view(xp, (s.k, s.k), axis=(2, 3))[:, :, :: s.stride, :: s.stride]
        win = win.reshape(s.mb, s.groups, self.icg, s.oh, s.ow, s.k, s.k)
        return win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(s.groups, self.m, -1)

    def _dy(self, layout: str) -> np.ndarray:
        s = self.s
        d = self.dy.reshape(s.mb, s.groups, self.ocg, s.oh, s.ow)
        if layout == "g,ocg,m":
            return d.transpose(1, 2, 0, 3, 4).reshape(s.groups, self.ocg, self.m)
        return d.transpose(1, 0, 3, 4, 2).reshape(s.groups, self.m, self.ocg)

    def fwd(self) -> np.ndarray:
        s = self.s
        y = np.matmul(self._col(), self.wm.transpose(0, 2, 1))  # (g, m, ocg)
        y = y.reshape(s.groups, s.mb, s.oh, s.ow, self.ocg).transpose(1, 0, 4, 2, 3).reshape(s.mb, s.oc, s.oh, s.ow)
        y += self.b[:, None, None]
        return y

    def bwd_input(self) -> np.ndarray:
        s, k, st = self.s, self.s.k, self.s.stride
        dcol = np.matmul(self._dy("g,m,ocg"), self.wm)  # (g, m, K)
        d = dcol.reshape(s.groups, s.mb, s.oh, s.ow, self.icg, k, k).transpose(1, 0, 4, 2, 3, 5, 6)
        hp, wp = s.ih + 2 * s.pad, s.iw + 2 * s.pad
        dxp = np.zeros((s.mb, s.groups, self.icg, hp, wp), dtype=self.x.dtype)
        for r in range(k):
            for t in range(k):
                dxp[..., r : r + st * (s.oh - 1) + 1 : st, t : t + st * (s.ow - 1) + 1 : st] += d[..., r, t]
        dxp = dxp.reshape(s.mb, s.ic, hp, wp)
        return np.ascontiguousarray(dxp[:, :, s.pad : s.pad + s.ih, s.pad : s.pad + s.iw])

    def bwd_weight(self):
        s = self.s
        dw = np.matmul(self._dy("g,ocg,m"), self._col()).reshape(s.oc, self.icg, s.k, s.k)
        return dw, self.dy.sum(axis=(0, 2, 3))

    def ops(self) -> Dict[str, Callable]:
        return {
            "fwd": self.fwd,
            "bwd_input": self.bwd_input,
            "bwd_weight": self.bwd_weight,
            "step": lambda: (self.fwd(), self.bwd_input(), self.bwd_weight()),
        }


def library_ops(lib: str, s: Shape, arrays, method: str) -> Dict[str, Callable]:
    if lib == "convcore":
        ops = convcore_ops(s, *arrays, method=method)
        ops["step"] = lambda: tuple(ops[op]() for op in OPS)
        return ops
    if lib in ("torch", "torch_heap"):
        return torch_ops(s, *arrays)
    return NumpyConv(s, *arrays).ops()


def _as_numpy(result) -> List[np.ndarray]:
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [np.asarray(r.numpy() if hasattr(r, "numpy") else r) for r in items]


def relative_error(got, want) -> float:
    """max |got - want| / max(1, max |want|) over the arrays of one op's result."""
    err = 0.0
    for g, r in zip(_as_numpy(got), _as_numpy(want)):
        if g.shape != r.shape:
            return math.inf
        scale = max(1.0, float(np.max(np.abs(r), initial=0.0)))
        err = max(err, float(np.max(np.abs(g.astype(np.float64) - r), initial=0.0)) / scale)
    return err


# ------------------------------------------------------------------------------------- threads


class BlasThreads:
    """Pins NumPy's BLAS to a thread count (threadpoolctl when installed, else OpenBLAS by ctypes)."""

    _SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                "openblas_set_num_threads64_", "openblas_set_num_threads")
    _GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                "openblas_get_num_threads64_", "openblas_get_num_threads")

    def __init__(self, threads: int):
        self.threads, self.done, self.how = threads, False, "unchanged"
        self._undo: Optional[Callable[[], None]] = None
        try:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=threads, user_api="blas")
            self._undo, self.done, self.how = limits.restore_original_limits, True, "threadpoolctl"
            return
        except ImportError:
            pass
        for path in self._openblas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in self._SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in self._GETTERS if hasattr(lib, n)), None)
            if setter is None:
                continue
            before = getter() if getter is not None else None
            setter(threads)
            self.done, self.how = True, f"openblas ({os.path.basename(path)})"
            if before is not None:
                self._undo = lambda s=setter, n=before: s(n)
            return

    @staticmethod
    def _openblas_paths() -> List[str]:
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            return []
        return sorted(paths)

    def restore(self) -> None:
        if self._undo is not None:
            self._undo()


# ---------------------------------------------------------------------------------- machine, peak


def _cpuinfo() -> Dict[str, object]:
    facts: Dict[str, object] = {"model": platform.processor() or platform.machine(), "flags": set(), "mhz": None,
                                "vendor": "", "family": None}
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    phys = core = None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            facts["model"] = value
        elif key == "flags" and not facts["flags"]:
            facts["flags"] = set(value.split())
        elif key == "cpu MHz" and facts["mhz"] is None:
            facts["mhz"] = float(value)
        elif key == "vendor_id":
            facts["vendor"] = value
        elif key == "cpu family" and facts["family"] is None:
            facts["family"] = int(value)
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
            cores.add((phys, core))
    facts["physical_cores"] = len(cores) or os.cpu_count() or 1
    return facts


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def theoretical_peak(threads: int, override_f32: Optional[float]) -> Dict[str, Dict[str, object]]:
    """FMA peak = cores x clock x FLOP/cycle, from /proc/cpuinfo (or --peak-gflops)."""
    cpu = _cpuinfo()
    cores = min(threads, int(cpu["physical_cores"]))
    flags = cpu["flags"]
    if override_f32:
        f32 = {"gflops": override_f32, "source": "--peak-gflops"}
        return {"float32": f32, "float64": {"gflops": override_f32 / 2, "source": "--peak-gflops / 2"}}
    ghz, clock_source = None, None
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            ghz, clock_source = int(f.read()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        if cpu["mhz"]:
            ghz, clock_source = float(cpu["mhz"]) / 1e3, "/proc/cpuinfo cpu MHz"
    # fp32 FLOP per cycle per core: 2 FMA units x SIMD lanes x 2. Zen 3/4 (family 25) run
    # 256-bit FMA pipes even with AVX-512, so they count as AVX2.
    if "avx512f" in flags and not (cpu["vendor"] == "AuthenticAMD" and (cpu["family"] or 0) < 26):
        per_cycle, isa = 64, "AVX-512: 2 FMA x 16 lanes x 2"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2: 2 FMA x 8 lanes x 2"
    elif "avx" in flags:
        per_cycle, isa = 16, "AVX: 8-lane add + 8-lane mul"
    elif "sse2" in flags:
        per_cycle, isa = 8, "SSE2: 4-lane add + 4-lane mul"
    else:
        per_cycle, isa = None, "unknown ISA (use --peak-gflops)"
    out = {}
    for dt, div in (("float32", 1), ("float64", 2)):
        gflops = cores * ghz * per_cycle / div if ghz and per_cycle else None
        out[dt] = {"gflops": gflops, "cores": cores, "ghz": ghz, "clock_source": clock_source,
                   "flop_per_cycle": per_cycle / div if per_cycle else None, "isa": isa,
                   "source": "theoretical: cores x clock x FLOP/cycle (nominal clock, no turbo measurement)"}
    return out


def blas_matmul_rate(dtype: str, n: int, repeat: int = 3) -> float:
    """GFLOP/s of NumPy's BLAS on an n x n x n matrix product: a practical upper reference."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    best = min(_time_calls(lambda: a @ b, 1) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def machine_info(threads: int, torch_mod, blas: BlasThreads) -> Dict[str, object]:
    import convcore as cc

    cpu = _cpuinfo()
    return {
        "cpu_model": cpu["model"],
        "logical_cpus": os.cpu_count(),
        "available_cpus": available_cpus(),
        "physical_cores": cpu["physical_cores"],
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas_threads": threads if blas.done else None,
        "numpy_blas_pinned_by": blas.how,
        "torch": getattr(torch_mod, "__version__", None),
        "convcore": cc.info(),
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "load_average_start": _loadavg(),
    }


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


# ------------------------------------------------------------------------------------ timing


def _time_calls(fn: Callable, n: int) -> float:
    """Seconds per call of ``n`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _inner(seconds_per_call: float, min_time: float) -> int:
    return max(1, min(100000, math.ceil(min_time / max(seconds_per_call, 1e-9))))


def _interleaved(fns: Dict[Tuple[str, str], Callable], repeat: int, min_time: float,
                 settle: float = 0.0) -> Dict[Tuple[str, str], dict]:
    """Warm up and calibrate each callable, then ``repeat`` rounds through all of them in turn.

    Keys are ``(library, op)``. Before a sample of another library than the last one, sleep
    ``settle`` seconds: the idle worker threads of the previous library's thread pool (OpenMP,
    OpenBLAS) spin for a while before they sleep, and would compete for the cores.
    """
    inner = {}
    last = None

    def pause(lib):
        nonlocal last
        if settle and last is not None and lib != last:
            time.sleep(settle)
        last = lib

    for key, fn in fns.items():
        pause(key[0])
        fn()
        inner[key] = _inner(_time_calls(fn, 1), min_time)
    samples: Dict[Tuple[str, str], List[float]] = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            pause(key[0])
            samples[key].append(_time_calls(fn, inner[key]))
    return {key: {"median_s": statistics.median(v), "samples_s": v, "inner": inner[key]} for key, v in samples.items()}


def run_case(s: Shape, dtype: str, libs: Sequence[str], args, log) -> dict:
    """Check, then time, every library on one shape and dtype."""
    arrays = make_inputs(s, dtype)
    ops = {lib: library_ops(lib, s, arrays, args.input_method) for lib in libs}
    case = {"shape": s.name, "dtype": dtype, "canonical": s.canonical, "geometry": dataclasses.asdict(s),
            "output": [s.mb, s.oc, s.oh, s.ow], "flops": {op: s.flops for op in OPS}, "check": {}, "libs": {},
            "skipped": {}}
    case["flops"]["total"] = 3 * s.flops
    # first calls: results for the check, and the NumPy time limit
    first: Dict[str, Dict[str, object]] = {lib: {} for lib in libs}
    active = {lib: list(OPS) for lib in libs}
    for lib in libs:
        for op in OPS:
            t0 = time.perf_counter()
            first[lib][op] = ops[lib][op]()
            if lib == "numpy" and time.perf_counter() - t0 > NUMPY_CALL_LIMIT_S:
                active[lib].remove(op)
                case["skipped"][f"numpy/{op}"] = f"one call took more than {NUMPY_CALL_LIMIT_S:g} s"
    oracle = next((lib for lib in ("torch", "torch_heap", "numpy") if lib in libs), None)
    if oracle is not None:
        for lib in libs:
            if lib == oracle:
                continue
            for op in list(active[lib]):
                if op not in active[oracle]:
                    continue
                err = relative_error(first[lib][op], first[oracle][op])
                ok = err <= TOLERANCE[dtype]
                case["check"][f"{lib}/{op}"] = {"against": oracle, "rel_error": err, "ok": ok}
                if not ok:
                    log(f"  MISMATCH {s.name} {dtype} {lib} {op}: relative error {err:.3g} against {oracle}")
                    active[lib].remove(op)
                    case["skipped"][f"{lib}/{op}"] = f"wrong result (relative error {err:.3g} against {oracle})"
    del first
    fns = {(lib, op): ops[lib][op] for op in OPS for lib in libs if op in active[lib]}
    timed = _interleaved(fns, args.repeat, args.min_time, args.settle)
    for lib in libs:
        entry = {}
        for op in OPS:
            if (lib, op) in timed:
                entry[op] = _op_entry(timed[(lib, op)], s.flops)
        if all(op in entry for op in OPS):
            total = sum(entry[op]["ms"] for op in OPS) / 1e3
            entry["total"] = {"ms": total * 1e3, "gflops": 3 * s.flops / total / 1e9}
        case["libs"][lib] = entry
    if s.name == OVERHEAD_SHAPE and dtype == "float32":
        case["overhead_us"] = _overhead(ops, libs, args)
    return case


def _op_entry(t: dict, flops: int) -> dict:
    return {"ms": t["median_s"] * 1e3, "gflops": flops / t["median_s"] / 1e9, "inner": t["inner"],
            "samples_ms": [v * 1e3 for v in t["samples_s"]]}


def _overhead(ops, libs, args) -> Dict[str, Dict[str, float]]:
    """Microseconds per Python call on the tiny shape: forward alone, and forward + backward."""
    fns = {(lib, what): ops[lib][op] for lib in libs for what, op in (("fwd", "fwd"), ("fwd_bwd", "step"))}
    timed = _interleaved(fns, args.repeat, args.min_time, args.settle)
    return {lib: {what: timed[(lib, what)]["median_s"] * 1e6 for what in ("fwd", "fwd_bwd")} for lib in libs}


# ------------------------------------------------------------------------------------ memory


def _rss_hwm_kib() -> Tuple[Optional[int], Optional[int]]:
    """(VmRSS, VmHWM) in KiB from /proc/self/status, or (None, None)."""
    rss = hwm = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _release_free_heap() -> None:
    """Give freed heap memory back to the system (glibc), so reused pages count again."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_of_call(fn: Callable) -> Tuple[int, str]:
    """Bytes the resident set grew by, at its peak, during one call of ``fn``."""
    import resource

    _release_free_heap()
    reset = _reset_peak_rss()
    rss0, _ = _rss_hwm_kib()
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fn()
    _, hwm1 = _rss_hwm_kib()
    maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    if reset and rss0 is not None and hwm1 is not None:
        return (hwm1 - rss0) * 1024, "VmHWM - VmRSS before, after clear_refs"
    return (maxrss1 - maxrss0) * 1024, "ru_maxrss growth (a lower bound)"


def _memory_child(spec: str, threads: int) -> int:
    """One op of one library in this fresh process: print the peak extra memory of its first
    call and of a later call (after freed memory went back to the system) as JSON."""
    lib, op, name, dtype, method = spec.split(",")
    _set_threads(threads, lib)
    BlasThreads(threads)
    library_ops(lib, SHAPES["tiny"], make_inputs(SHAPES["tiny"], dtype), method)[op]()  # thread pools, lazy init
    arrays = make_inputs(SHAPES[name], dtype)
    fn = library_ops(lib, SHAPES[name], arrays, method)[op]
    out_bytes = {"fwd": arrays[3].nbytes, "bwd_input": arrays[0].nbytes,
                 "bwd_weight": arrays[1].nbytes + arrays[2].nbytes}[op]
    first, how = _peak_of_call(fn)
    later, _ = _peak_of_call(fn)
    print(json.dumps({"output_bytes": out_bytes, "first_peak_bytes": first, "later_peak_bytes": later,
                      "first_workspace_bytes": max(0, first - out_bytes),
                      "workspace_bytes": max(0, later - out_bytes), "method": how}))
    return 0


def measure_memory(cases: List[dict], libs: Sequence[str], args, log) -> None:
    """Peak extra memory of the first call of each op, one fresh process per library and op."""
    for case in cases:
        case["memory"] = {}
        for lib in libs:
            if lib == "torch_heap":
                continue
            for op in OPS:
                if f"{lib}/{op}" in case["skipped"]:
                    continue
                spec = ",".join((lib, op, case["shape"], case["dtype"], args.input_method))
                cmd = [sys.executable, "-m", "convcore.bench", "--memory-child", spec, "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    log(f"  memory: {lib} {op} {case['shape']} failed: {proc.stderr.strip()[-200:]}")
                    continue
                case["memory"][f"{lib}/{op}"] = json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- heap-reuse child


def _heap_reuse_effective() -> Optional[bool]:
    """Whether a 64 MiB malloc lands in the brk heap (so the raised thresholds took effect)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        p = libc.malloc(64 << 20)
        with open("/proc/self/maps") as f:
            heap = [line.split()[0].split("-") for line in f if "[heap]" in line]
        libc.free(ctypes.c_void_p(p))
    except (OSError, AttributeError):
        return None
    return any(int(lo, 16) <= (p or 0) < int(hi, 16) for lo, hi in heap)


def run_torch_heap(args, log) -> Optional[dict]:
    """The torch timings again, in a child process started with glibc's heap-reuse settings."""
    for env_extra in (HEAP_REUSE_ENV, HEAP_REUSE_ENV_FALLBACK):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "heap.json")
            cmd = [sys.executable, "-m", "convcore.bench", "--libs", "torch_heap", "--no-torch-heap-reuse",
                   "--threads", str(args.threads), "--repeat", str(args.repeat), "--min-time", str(args.min_time),
                   "--settle", str(args.settle),
                   "--shapes", ",".join(args.shape_names), "--dtype", args.dtype, "--json", path, "--quiet"]
            proc = subprocess.run(cmd, env={**os.environ, **env_extra}, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not os.path.exists(path):
                log(f"torch(heap) child failed: {proc.stderr.strip()[-400:]}")
                return None
            with open(path) as f:
                data = json.load(f)
        data["env"] = env_extra
        if data.get("heap_reuse_effective") is not False:
            return data
    return data


# ------------------------------------------------------------------------------------- output


def _fmt(v: Optional[float], digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if v >= 10 ** (digits - 1):
        return f"{v:.0f}"
    return f"{v:.{max(0, digits - 1 - math.floor(math.log10(abs(v)))) if v else 1}f}"


def _get(case: dict, lib: str, op: str, key: str) -> Optional[float]:
    return case["libs"].get(lib, {}).get(op, {}).get(key)


def _ratio(case: dict, lib: str, op: str) -> Optional[float]:
    a, b = _get(case, lib, op, "ms"), _get(case, "convcore", op, "ms")
    return a / b if a and b else None


def geomean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def format_tables(result: dict) -> str:
    lines = []
    peak = result["peak"]
    head = ["shape", "op", "convcore ms", "torch ms", "torch(heap) ms", "numpy ms", "cc GFLOP/s", "% peak",
            "torch/cc", "heap/cc"]
    for dtype in ("float32", "float64"):
        cases = [c for c in result["cases"] if c["dtype"] == dtype]
        if not cases:
            continue
        pk = peak["theoretical"][dtype]["gflops"]
        rows = []
        for c in cases:
            for op in (*OPS, "total"):
                g = _get(c, "convcore", op, "gflops")
                rows.append([c["shape"] if op == "fwd" else "", op] + [_fmt(_get(c, lib, op, "ms")) for lib in LIBS]
                            + [_fmt(g), _fmt(100 * g / pk, 3) if g and pk else "-",
                               _fmt(_ratio(c, "torch", op), 3), _fmt(_ratio(c, "torch_heap", op), 3)])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines.append(f"\n{dtype}  (peak {_fmt(pk)} GFLOP/s theoretical, "
                     f"{_fmt(peak['blas'].get(dtype))} GFLOP/s NumPy BLAS matmul)")
        lines.append("  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    for c in result["cases"]:
        if "overhead_us" in c:
            lines.append(f"\nper-call overhead, {c['shape']} {c['canonical']} {c['dtype']} (microseconds)")
            lines.append(f"{'library':<12} {'fwd':>10} {'fwd+bwd':>10}")
            for lib, v in c["overhead_us"].items():
                lines.append(f"{LIB_TITLES[lib]:<12} {_fmt(v['fwd']):>10} {_fmt(v['fwd_bwd']):>10}")
    if result.get("memory"):
        mem_libs = ("convcore", "torch", "numpy")
        lines.append("\npeak extra memory of one call beyond its output, MiB: first call / a later call")
        lines.append(f"{'shape':<11} {'dtype':<8} {'op':<11} " + " ".join(f"{lib:>19}" for lib in mem_libs))
        for c in result["cases"]:
            for op in OPS:
                cells = []
                for lib in mem_libs:
                    m = c.get("memory", {}).get(f"{lib}/{op}")
                    cells.append("-" if m is None else f"{_fmt(m['first_workspace_bytes'] / 2**20, 3)} / "
                                 f"{_fmt(m['workspace_bytes'] / 2**20, 3)}")
                lines.append(f"{c['shape']:<11} {c['dtype']:<8} {op:<11} " + " ".join(f"{v:>19}" for v in cells))
    s = result["summary"]
    lines.append("")
    for key, title in (("torch", "torch"), ("torch_heap", "torch(heap)")):
        per = s[f"geomean_{key}_over_convcore_total"]
        if per["all"] is not None:
            lines.append(f"geometric mean of {title}/convcore total time: {per['all']:.3f} over {per['n']} cases"
                         + "".join(f", {dt} {v:.3f}" for dt, v in per["by_dtype"].items() if v is not None)
                         + "  (> 1: convcore faster)")
    for case in result["cases"]:
        for key, why in case["skipped"].items():
            lines.append(f"skipped {case['shape']} {case['dtype']} {key}: {why}")
    return "\n".join(lines)


def summarize(cases: List[dict]) -> dict:
    out = {}
    for lib in ("torch", "torch_heap"):
        ratios = [(c["dtype"], _ratio(c, lib, "total")) for c in cases]
        ratios = [(dt, r) for dt, r in ratios if r]
        out[f"geomean_{lib}_over_convcore_total"] = {
            "all": geomean([r for _, r in ratios]),
            "n": len(ratios),
            "by_dtype": {dt: geomean([r for d, r in ratios if d == dt]) for dt in ("float32", "float64")},
        }
    return out


def plot(result: dict, path: str, log) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log(f"matplotlib is not installed: no plot written to {path}")
        return
    cases = result["cases"]
    labels = [f"{c['shape']}\n{c['dtype'].replace('float', 'f')}" for c in cases]
    libs = [lib for lib in LIBS if any(lib in c["libs"] for c in cases)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(cases) + 2), 9))
    width = 0.8 / max(1, len(libs))
    x = np.arange(len(cases))
    for i, lib in enumerate(libs):
        vals = [_get(c, lib, "total", "gflops") or 0 for c in cases]
        ax1.bar(x + (i - (len(libs) - 1) / 2) * width, vals, width, label=LIB_TITLES[lib])
    ax1.set_ylabel("GFLOP/s (total of fwd + bwd_input + bwd_weight)")
    ax1.set_yscale("log")
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.legend()
    ax1.set_title(f"{result['machine']['cpu_model']}, {result['machine']['threads']} threads")
    ops = (*OPS, "total")
    width = 0.8 / len(ops)
    for i, op in enumerate(ops):
        vals = [_ratio(c, "torch", op) or 0 for c in cases]
        ax2.bar(x + (i - (len(ops) - 1) / 2) * width, vals, width, label=op)
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_ylabel("torch time / convcore time (> 1: convcore faster)")
    ax2.set_yscale("log")
    ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log(f"plot written to {path}")


# --------------------------------------------------------------------------------------- main


def _set_threads(threads: int, lib: str = "") -> None:
    import convcore as cc

    cc.set_num_threads(threads)
    if lib.startswith("torch"):
        import torch

        torch.set_num_threads(threads)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m convcore bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Shapes: " + ", ".join(f"{s.name} ({s.canonical})" for s in SUITE))
    p.add_argument("--quick", action="store_true", help=f"a subset ({', '.join(QUICK_SHAPES)}), fewer repeats")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all available CPUs)")
    p.add_argument("--repeat", type=int, default=None, help="samples per op; the median is reported (default 7, --quick 5)")
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per sample, by repeating fast calls (default 0.02)")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds to sleep when switching library, so that idle worker threads stop spinning "
                   "(default 0.1 when --threads is more than half the CPUs, else 0)")
    p.add_argument("--shapes", default=None, help="comma-separated shape names (default: the whole suite)")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both",
                   help="both (default): float32 for every shape, float64 for " + " and ".join(FLOAT64_SHAPES)
                   + "; float32 or float64: that dtype for every selected shape")
    p.add_argument("--input-method", choices=("auto", "flip", "col2im"), default="auto",
                   help="convcore's conv2d_input method (default auto)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--no-numpy", action="store_true", help="do not time the NumPy baseline")
    p.add_argument("--torch-heap-reuse", dest="heap", action="store_true", default=True,
                   help="also time PyTorch in a child process with glibc heap reuse (default)")
    p.add_argument("--no-torch-heap-reuse", dest="heap", action="store_false", help="skip the torch(heap) column")
    p.add_argument("--memory", action="store_true", help="measure each op's peak extra memory (a fresh process per op)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="float32 peak GFLOP/s at the thread count, instead of the cpuinfo estimate (float64: half)")
    p.add_argument("--json", default=None, metavar="PATH", help="write every number and the machine facts as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="write a bar chart PNG (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--libs", default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(argv or [])
    if args.threads is None:
        args.threads = available_cpus()
    if args.repeat is None:
        args.repeat = 5 if args.quick else 7
    if args.settle is None:
        args.settle = 0.1 if 2 * args.threads > available_cpus() else 0.0
    if args.threads < 1 or args.repeat < 1 or args.min_time < 0:
        p.error("--threads and --repeat must be >= 1, --min-time >= 0")
    names = args.shapes.split(",") if args.shapes else list(QUICK_SHAPES if args.quick else SHAPES)
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    args.shape_names = names
    return args


def plan(args) -> List[Tuple[Shape, str]]:
    cases = []
    for dtype in ("float32", "float64"):
        for name in args.shape_names:
            if args.dtype == dtype or (args.dtype == "both" and (dtype == "float32" or name in FLOAT64_SHAPES)):
                cases.append((SHAPES[name], dtype))
    return cases


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.memory_child:
        return _memory_child(args.memory_child, args.threads)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    import convcore as cc

    torch = None
    if args.libs:
        libs = args.libs.split(",")
    else:
        libs = ["convcore"]
        if not args.no_torch:
            try:
                import torch
            except ImportError:
                log("PyTorch is not installed: timing convcore and NumPy only")
            else:
                libs.append("torch")
        if not args.no_numpy:
            libs.append("numpy")
    if any(lib.startswith("torch") for lib in libs):
        import torch
    threads_before = cc.get_num_threads()
    torch_threads_before = torch.get_num_threads() if torch is not None else None
    blas = BlasThreads(args.threads)
    try:
        return _run(args, libs, torch, blas, log)
    finally:
        blas.restore()
        cc.set_num_threads(threads_before)
        if torch is not None:
            torch.set_num_threads(torch_threads_before)


def _run(args, libs, torch, blas, log) -> int:
    _set_threads(args.threads, "torch" if torch is not None else "")
    child = args.libs is not None
    result = {
        "schema": "convcore-bench/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": args.argv,
        "machine": machine_info(args.threads, torch, blas),
        "settings": {"threads": args.threads, "repeat": args.repeat, "min_time_s": args.min_time,
                     "quick": args.quick, "settle_s": args.settle, "input_method": args.input_method, "libraries": libs,
                     "numpy_call_limit_s": NUMPY_CALL_LIMIT_S, "tolerance": TOLERANCE},
        "cases": [],
    }
    if child:
        result["heap_reuse_effective"] = _heap_reuse_effective()
    else:
        n = 1024 if args.quick else 2048
        result["peak"] = {"theoretical": theoretical_peak(args.threads, args.peak_gflops),
                          "blas": {dt: blas_matmul_rate(dt, n) for dt in ("float32", "float64")},
                          "blas_note": f"NumPy matmul {n}x{n}x{n} at the thread count: a BLAS rate, not a peak"}
        time.sleep(args.settle)
        m = result["machine"]
        log(f"convcore {m['convcore']['version']} ({m['convcore']['isa']}), torch {m['torch'] or '-'}, "
            f"numpy {m['numpy']}; {m['cpu_model']}, {args.threads} threads of {m['available_cpus']} CPUs; "
            f"{result['date']}")
        load = m["load_average_start"]
        if load and load[0] > max(1.5, m["available_cpus"] / 4):
            log(f"warning: load average {load[0]} with {m['available_cpus']} CPUs: other work competes for the "
                "cores, timings will be unreliable (see benchmarks/README.md)")
    failed = False
    for s, dtype in plan(args):
        log(f"{s.name:<11} {dtype}  {s.canonical}")
        case = run_case(s, dtype, libs, args, log)
        failed |= any(not v["ok"] for k, v in case["check"].items() if k.startswith("convcore/"))
        result["cases"].append(case)
    if not child and "torch" in libs and args.heap:
        log("torch(heap): timing PyTorch again in a child process with " + " ".join(f"{k}=..." for k in HEAP_REUSE_ENV))
        heap = run_torch_heap(args, log)
        if heap is not None:
            result["torch_heap"] = {"env": heap["env"], "effective": heap.get("heap_reuse_effective")}
            for case, hcase in zip(result["cases"], heap["cases"]):
                case["libs"]["torch_heap"] = hcase["libs"].get("torch_heap", {})
                if "overhead_us" in hcase:
                    case.setdefault("overhead_us", {}).update(hcase["overhead_us"])
    if args.memory and not child:
        log("memory: one fresh process per library and op")
        measure_memory(result["cases"], libs, args, log)
        result["memory"] = True
    result["machine"]["load_average_end"] = _loadavg()
    result["summary"] = summarize(result["cases"])
    if not child:
        log(format_tables(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        log(f"JSON written to {args.json}")
    if args.plot and not child:
        plot(result, args.plot, log)
    if failed:
        print("convcore gave a wrong result on at least one op (see MISMATCH above): not timed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
