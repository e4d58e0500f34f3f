"""Command line: the options, the plan of cases, and the run from the first case to the JSON and plot."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import List, Optional, Sequence, Tuple

from .libraries import TOLERANCE, BlasThreads, set_threads
from .report import (available_cpus, blas_matmul_rate, format_tables, loadavg, machine_info, plot, summarize,
                     measured_peak, theoretical_peak, write_json)
from .suite import FLOAT64_SHAPES, QUICK_SHAPES, SHAPES, SUITE, Shape
from .timing import (HEAP_REUSE_ENV, NUMPY_CALL_LIMIT_S, heap_reuse_effective, measure_memory, memory_child,
                     run_case, run_heap_reuse)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    description = sys.modules[__package__].__doc__.split("\n\n")[0]  # the package docstring's first paragraph
    p = argparse.ArgumentParser(prog="python -m convcore bench", description=description,
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
    p.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw",
                   help="nhwc: also time convcore on NHWC activations (layout='NHWC') and PyTorch on "
                        "channels_last tensors, side by side with NCHW (default: nchw only)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--no-numpy", action="store_true", help="do not time the NumPy baseline")
    p.add_argument("--torch-heap-reuse", dest="heap", action="store_true", default=True,
                   help="also time convcore and PyTorch in a child process with glibc heap reuse (default)")
    p.add_argument("--no-torch-heap-reuse", dest="heap", action="store_false", help="skip the heap-reuse columns")
    p.add_argument("--memory", action="store_true", help="measure each op's peak extra memory (a fresh process per op)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="float32 peak GFLOP/s at the thread count, instead of the cpuinfo estimate (float64: half)")
    p.add_argument("--json", default=None, metavar="PATH", help="write every number and the machine facts as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="write a bar chart PNG (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--network", default=None, metavar="NAMES",
                   help="time a whole training step instead of the suite: comma-separated networks (digits, "
                   "lenet-cifar, resnet8) in convcore and in PyTorch eager")
    p.add_argument("--steps", type=int, default=20,
                   help="with --network: training steps per sample (default 20)")
    p.add_argument("--user-matmul", action="store_true",
                   help="with --network: the classifier is the user's own NumPy layer (np.matmul between layers)")
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
    if args.threads < 1 or args.repeat < 1 or args.min_time < 0 or args.steps < 1:
        p.error("--threads, --repeat and --steps must be >= 1, --min-time >= 0")
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
        return memory_child(args.memory_child, args.threads)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    import convcore as cc

    if args.network:
        from .network import main as network_main

        threads_before = cc._core._num_threads_override()  # 0: none; restored after
        try:
            return network_main(args.network.split(","), args, log)
        finally:
            cc.set_num_threads(threads_before or None)

    torch = None
    if args.libs:
        libs = args.libs.split(",")
    else:
        libs = ["convcore"] + (["convcore_nhwc"] if args.layout == "nhwc" else [])
        if not args.no_torch:
            try:
                import torch
            except ImportError:
                log("PyTorch is not installed: timing convcore and NumPy only")
            else:
                libs += ["torch"] + (["torch_cl"] if args.layout == "nhwc" else [])
        if not args.no_numpy:
            libs.append("numpy")
    if any(lib.startswith("torch") for lib in libs):
        import torch
    threads_before = cc._core._num_threads_override()  # 0: none; restored after
    torch_threads_before = torch.get_num_threads() if torch is not None else None
    blas = BlasThreads(args.threads)
    try:
        return _run(args, libs, torch, blas, log)
    finally:
        blas.restore()
        cc.set_num_threads(threads_before or None)
        if torch is not None:
            torch.set_num_threads(torch_threads_before)


def _run(args, libs, torch, blas, log) -> int:
    set_threads(args.threads, "torch" if torch is not None else "")
    child = args.libs is not None
    result = {
        "schema": "convcore-bench/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": args.argv,
        "machine": machine_info(args.threads, torch, blas),
        "settings": {"threads": args.threads, "repeat": args.repeat, "min_time_s": args.min_time,
                     "quick": args.quick, "settle_s": args.settle, "input_method": args.input_method, "layout": args.layout, "libraries": libs,
                     "numpy_call_limit_s": NUMPY_CALL_LIMIT_S, "tolerance": TOLERANCE},
        "cases": [],
    }
    if child:
        result["heap_reuse_effective"] = heap_reuse_effective()
    else:
        n = 1024 if args.quick else 2048
        result["peak"] = {"measured": measured_peak(),
                          "theoretical": theoretical_peak(args.threads, args.peak_gflops),
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
        log("heap reuse: timing convcore and PyTorch again in a child process with "
            + " ".join(f"{k}=..." for k in HEAP_REUSE_ENV))
        heap = run_heap_reuse(args, log)
        if heap is not None:
            result["torch_heap"] = {"env": heap["env"], "effective": heap.get("heap_reuse_effective")}
            for case, hcase in zip(result["cases"], heap["cases"]):
                case["libs"]["torch_heap"] = hcase["libs"].get("torch_heap", {})
                case["libs"]["convcore_heap"] = hcase["libs"].get("convcore", {})
                for key, why in hcase["skipped"].items():
                    case["skipped"][f"heap child {key}"] = why
                failed |= any(not v["ok"] for k, v in hcase["check"].items() if k.startswith("convcore/"))
                rename = {"convcore": "convcore_heap", "convcore_plan": "convcore_plan_heap"}
                if "overhead_us" in hcase:
                    case.setdefault("overhead_us", {}).update(
                        {rename.get(lib, lib): v for lib, v in hcase["overhead_us"].items()})
    if args.memory and not child:
        log("memory: one fresh process per library and op")
        measure_memory(result["cases"], libs, args, log)
        result["memory"] = True
    result["machine"]["load_average_end"] = loadavg()
    result["summary"] = summarize(result["cases"])
    if not child:
        log(format_tables(result))
    if args.json:
        write_json(result, args.json, log)
    if args.plot and not child:
        plot(result, args.plot, log)
    if failed:
        print("convcore gave a wrong result on at least one op (see MISMATCH above): not timed", file=sys.stderr)
    return 1 if failed else 0
