"""Timing: interleaved samples and their medians, the per-call overhead, the heap-reuse child
process (convcore and PyTorch again, with glibc's heap-reuse settings), and the peak-memory mode (one fresh process per op)."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .libraries import TOLERANCE, BlasThreads, comparable, library_ops, relative_error, set_threads
from .suite import OPS, OVERHEAD_SHAPE, SHAPES, Shape, make_inputs

# glibc keeps freed blocks below the mmap threshold in its heap and returns the top of the heap
# to the system only above the trim threshold: raising both makes repeated same-size allocations
# reuse warm, already-mapped memory instead of fresh zeroed pages from the kernel.
HEAP_REUSE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}
HEAP_REUSE_ENV_FALLBACK = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}

NUMPY_CALL_LIMIT_S = 2.0  # the baseline is skipped ("-") for an op whose first call takes longer
BLAS_SETTLE_S = 0.5  # the pause after NumPy's BLAS calls, longer than OpenBLAS's idle polling
WAKE_S = 0.02  # untimed calls after a pause (see _interleaved)


# ------------------------------------------------------------------------------------ timing


def time_calls(fn: Callable, n: int) -> float:
    """Seconds per call of ``n`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _wake(fn: Callable) -> None:
    """Call ``fn`` untimed, at least twice and for at least WAKE_S seconds."""
    end = time.perf_counter() + WAKE_S
    calls = 0
    while calls < 2 or time.perf_counter() < end:
        fn()
        calls += 1


def _inner(seconds_per_call: float, min_time: float) -> int:
    return max(1, min(100000, math.ceil(min_time / max(seconds_per_call, 1e-9))))


def _interleaved(fns: Dict[Tuple[str, str], Callable], repeat: int, min_time: float,
                 settle: float = 0.0) -> Dict[Tuple[str, str], dict]:
    """Warm up and calibrate each callable, then ``repeat`` rounds through all of them in turn.

    Keys are ``(library, op)``. Before a sample of another library than the last one, sleep
    ``settle`` seconds: the idle worker threads of the previous library's thread pool (OpenMP,
    OpenBLAS) spin for a while before they sleep, and would compete for the cores. After such a
    pause the sample's callable runs untimed for WAKE_S seconds first: on a virtual machine the
    first parallel calls after an idle spell wait for the host to wake the idle virtual CPUs
    (measured on a 2-CPU VM: 4-10 ms for each of the first one or two calls, for convcore and
    PyTorch alike), which is not the op's cost.
    """
    inner = {}
    last = None

    def pause(lib, fn):
        nonlocal last
        if settle and last is not None and lib != last:
            time.sleep(settle)
            _wake(fn)
        last = lib

    for key, fn in fns.items():
        pause(key[0], fn)
        _wake(fn)
        inner[key] = _inner(time_calls(fn, 1), min_time)
    samples: Dict[Tuple[str, str], List[float]] = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            pause(key[0], fn)
            samples[key].append(time_calls(fn, inner[key]))
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
                err = relative_error(comparable(lib, op, first[lib][op]), comparable(oracle, op, first[oracle][op]))
                ok = err <= TOLERANCE[dtype]
                case["check"][f"{lib}/{op}"] = {"against": oracle, "rel_error": err, "ok": ok}
                if not ok:
                    log(f"  MISMATCH {s.name} {dtype} {lib} {op}: relative error {err:.3g} against {oracle}")
                    active[lib].remove(op)
                    case["skipped"][f"{lib}/{op}"] = f"wrong result (relative error {err:.3g} against {oracle})"
    del first
    # The peers alternate sample by sample. The NumPy baseline is a reference, not a peer: it is
    # timed in a pass of its own after them, because OpenBLAS's idle workers poll for about 2^28
    # cycles (0.1 s at 2.6 GHz) after each product, longer than --settle, and on a machine with as
    # many CPUs as threads they slowed the next library's sub-millisecond ops by up to 10x.
    peers = [lib for lib in libs if lib != "numpy"]
    if "numpy" in libs and args.settle:
        time.sleep(max(args.settle, BLAS_SETTLE_S))  # after NumPy's first calls above
    fns = {(lib, op): ops[lib][op] for op in OPS for lib in peers if op in active[lib]}
    timed = _interleaved(fns, args.repeat, args.min_time, args.settle)
    if "numpy" in libs:
        timed.update(_interleaved({("numpy", op): ops["numpy"][op] for op in active["numpy"]}, args.repeat,
                                  args.min_time))
        if args.settle:
            time.sleep(max(args.settle, BLAS_SETTLE_S))  # before the next case
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
    rows = {lib: (("fwd", "fwd"), ("fwd_bwd", "step")) for lib in libs}
    if "convcore" in libs:  # and through a plan made once
        rows["convcore_plan"] = (("fwd", "plan_fwd"), ("fwd_bwd", "plan_step"))
    src = {row: ops["convcore" if row == "convcore_plan" else row] for row in rows}
    fns = {(row, what): src[row][op] for row, pairs in rows.items() for what, op in pairs if row != "numpy"}
    timed = _interleaved(fns, args.repeat, args.min_time, args.settle)
    if "numpy" in rows:  # after the peers, as in run_case
        timed.update(_interleaved({("numpy", what): src["numpy"][op] for what, op in rows["numpy"]}, args.repeat,
                                  args.min_time))
    return {row: {what: timed[(row, what)]["median_s"] * 1e6 for what in ("fwd", "fwd_bwd")} for row in rows}


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


def memory_child(spec: str, threads: int) -> int:
    """One op of one library in this fresh process: print the peak extra memory of its first
    call and of a later call (after freed memory went back to the system) as JSON."""
    lib, op, name, dtype, method = spec.split(",")
    set_threads(threads, lib)
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


def heap_reuse_effective() -> Optional[bool]:
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


def run_heap_reuse(args, log) -> Optional[dict]:
    """convcore's and PyTorch's timings again, interleaved in one child process started with
    glibc's heap-reuse settings: both libraries' allocations then come from the same warm heap,
    a like-for-like comparison (the parent's columns keep the default allocator for both)."""
    for env_extra in (HEAP_REUSE_ENV, HEAP_REUSE_ENV_FALLBACK):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "heap.json")
            cmd = [sys.executable, "-m", "convcore.bench", "--libs", "convcore,torch_heap", "--no-torch-heap-reuse",
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
