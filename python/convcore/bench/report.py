"""Output and machine facts: the printed tables, the summary, the JSON file, the PNG plot, and the
machine's CPU, thread count, versions and estimated peak."""

from __future__ import annotations

import json
import math
import os
import platform
from typing import Dict, List, Optional, Sequence

import numpy as np

from .libraries import LIB_TITLES, LIBS, BlasThreads
from .suite import OPS
from .timing import time_calls

ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


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


def measured_peak(seconds: float = 0.3) -> Dict[str, Dict[str, object]]:
    """The FMA peak measured by convcore's own probe: its active micro-kernel run on panels that
    stay in L1, on all the threads convcore uses (set before the call); and the machine's ceiling,
    independent register-only FMA chains of the same instruction set (None on the portable path)."""
    import convcore as cc

    out = {}
    cc._core.register_peak_gflops("float32", 0.05)  # warm-up: threads started, clocks up
    for dt in ("float32", "float64"):
        register = cc._core.register_peak_gflops(dt, seconds)
        out[dt] = {"gflops": cc._core.kernel_peak_gflops(dt, seconds), "isa": cc._core.isa(),
                   "source": "convcore micro-kernel on L1-resident panels, at the thread count",
                   "register_gflops": register or None,
                   "register_source": "independent register-only vector FMA chains, at the thread count"}
    return out


def blas_matmul_rate(dtype: str, n: int, repeat: int = 3) -> float:
    """GFLOP/s of NumPy's BLAS on an n x n x n matrix product: a practical upper reference."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    best = min(time_calls(lambda: a @ b, 1) for _ in range(repeat))
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
        "load_average_start": loadavg(),
    }


def loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


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
    """``lib``'s time over convcore's. torch(heap) is divided by convcore timed in the same
    heap-reuse process (convcore(heap)) where the run has it, so that both sides of that ratio ran
    under the same allocator settings; older JSON without it falls back to convcore."""
    base = "convcore_heap" if lib == "torch_heap" and _get(case, "convcore_heap", op, "ms") else "convcore"
    a, b = _get(case, lib, op, "ms"), _get(case, base, op, "ms")
    return a / b if a and b else None


def geomean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def format_tables(result: dict) -> str:
    lines = []
    peak = result["peak"]
    head = ["shape", "op", "convcore ms", "cc(heap) ms", "torch ms", "torch(heap) ms", "numpy ms", "cc GFLOP/s",
            "% peak", "% reg", "torch/cc", "heap/cc"]
    for dtype in ("float32", "float64"):
        cases = [c for c in result["cases"] if c["dtype"] == dtype]
        if not cases:
            continue
        measured = peak.get("measured", {}).get(dtype, {}).get("gflops")
        register = peak.get("measured", {}).get(dtype, {}).get("register_gflops")
        pk = measured or peak["theoretical"][dtype]["gflops"]
        rows = []
        for c in cases:
            for op in (*OPS, "total"):
                g = _get(c, "convcore", op, "gflops")
                rows.append([c["shape"] if op == "fwd" else "", op] + [_fmt(_get(c, lib, op, "ms")) for lib in LIBS]
                            + [_fmt(g), _fmt(100 * g / pk, 3) if g and pk else "-",
                               _fmt(100 * g / register, 3) if g and register else "-",
                               _fmt(_ratio(c, "torch", op), 3), _fmt(_ratio(c, "torch_heap", op), 3)])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines.append(f"\n{dtype}  (peak {_fmt(measured)} GFLOP/s measured by the kernel probe, "
                     f"{_fmt(register)} register FMA ceiling (% reg), "
                     f"{_fmt(peak['theoretical'][dtype]['gflops'])} theoretical, "
                     f"{_fmt(peak['blas'].get(dtype))} NumPy BLAS matmul; % peak of the "
                     f"{'measured' if measured else 'theoretical'})")
        lines.append("  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    lines += _layout_table(result["cases"])
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


def _layout_table(cases: List[dict]) -> List[str]:
    """With --layout nhwc: convcore NHWC beside convcore NCHW (and PyTorch channels_last beside
    PyTorch), milliseconds and the NHWC / NCHW time ratio per op."""
    if not any("convcore_nhwc" in c["libs"] for c in cases):
        return []
    head = ["shape", "dtype", "op", "cc NCHW ms", "cc NHWC ms", "NHWC/NCHW", "torch ms", "torch cl ms", "cl/torch"]
    rows = []
    for c in cases:
        for op in (*OPS, "total"):
            a, b = _get(c, "convcore", op, "ms"), _get(c, "convcore_nhwc", op, "ms")
            t, tc = _get(c, "torch", op, "ms"), _get(c, "torch_cl", op, "ms")
            rows.append([c["shape"] if op == "fwd" else "", c["dtype"] if op == "fwd" else "", op, _fmt(a), _fmt(b),
                         _fmt(b / a if a and b else None, 3), _fmt(t), _fmt(tc), _fmt(tc / t if t and tc else None, 3)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = ["\nlayouts: convcore on NHWC activations vs NCHW (PyTorch: channels_last vs contiguous); ratio < 1: "
           "NHWC faster"]
    out.append("  ".join(h.rjust(w) if i > 2 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))))
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.rjust(w) if i > 2 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    return out


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
    nhwc = [r for r in (_ratio_to(c, "convcore_nhwc", "convcore") for c in cases) if r]
    if nhwc:
        out["geomean_convcore_nhwc_over_nchw_total"] = {"all": geomean(nhwc), "n": len(nhwc)}
    return out


def _ratio_to(case: dict, lib: str, base: str) -> Optional[float]:
    a, b = _get(case, lib, "total", "ms"), _get(case, base, "total", "ms")
    return a / b if a and b else None


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
    if "torch_heap" in libs:  # the total against PyTorch with heap reuse, over the total's bar
        heap = [_ratio(c, "torch_heap", "total") for c in cases]
        at = [(xi + (len(ops) - 1) / 2 * width, v) for xi, v in zip(x, heap) if v]
        ax2.plot([a for a, _ in at], [v for _, v in at], "kD", markersize=5,
                 label="total vs torch(heap)")
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


def write_json(result: dict, path: str, log) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    log(f"JSON written to {path}")
