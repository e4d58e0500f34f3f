#!/usr/bin/env python3
"""Data-parallel training throughput over MPI, and the communication model it implies.

Trains the demo's digits network (``convcore.demo.build_model``) on random 8x8 images with the
two-line distributed loop (``DistributedOptimizer`` with overlap, ``nn.train_step``) and reports
images per second for the same global batch run as 1 rank x 1 thread, 1 rank x 2 threads and
2 ranks x 1 thread (each configuration a separate ``mpiexec`` job). It also times, on 1 rank x 1
thread, one training step at a per-rank batch of 32 for the demo network and for ResNet-8's
convolutions, and from those compute times and the gradient sizes gives the network bandwidth at
which 8, 64 and 512 ranks keep 90 % efficiency under a ring all-reduce (docs/distributed.md).

    pip install ".[mpi]"
    python benchmarks/bench_distributed.py [--batches 32,256] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)
RING_RANKS = (8, 64, 512)
EFFICIENCY = 0.9


# ------------------------------------------------------------------------------ ResNet-8


def resnet8_layers():
    """ResNet-8 for 3x32x32 input (He et al.'s CIFAR ResNet, n=1): a 3x3 stem to 16 channels,
    three stages of one basic block (two 3x3 convolutions) at 16, 32 and 64 channels (stride 2
    into stages 2 and 3), each convolution followed by batch norm; global average pooling and a
    linear layer to 10 classes. Returns the convolutions as (in, out, stride, input size)."""
    convs = [(3, 16, 1, 32)]
    size, c_in = 32, 16
    for c_out, stride in ((16, 1), (32, 2), (64, 2)):
        convs.append((c_in, c_out, stride, size))
        size //= stride
        convs.append((c_out, c_out, 1, size))
        c_in = c_out
    return convs


def resnet8_parameters(projection: bool = False) -> dict:
    """Trainable parameters of ResNet-8 by kind. Convolutions have no bias (batch norm follows);
    each batch norm has a scale and a shift per channel. The shortcuts into stages 2 and 3 are
    parameter-free (option A: stride and zero-padded channels) unless ``projection`` (option B:
    1x1 convolution + batch norm)."""
    convs = resnet8_layers()
    count = {"conv": sum(9 * ci * co for ci, co, _, _ in convs),
             "batchnorm": sum(2 * co for _, co, _, _ in convs),
             "linear": 64 * 10 + 10, "shortcut": 0}
    if projection:
        count["shortcut"] = sum(ci * co + 2 * co for ci, co in ((16, 32), (32, 64)))
    count["total"] = sum(count.values())
    return count


# ---------------------------------------------------------------------------------- child


def _median_time(fn, repeat: int, comm=None) -> float:
    times = []
    for _ in range(repeat):
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        fn()
        if comm is not None:
            comm.Barrier()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def child(args) -> None:
    """Runs inside ``mpiexec``: rank 0 prints one JSON line."""
    import convcore
    import convcore.distributed as dist
    from convcore import nn
    from convcore.demo import build_model
    from mpi4py import MPI

    convcore.set_num_threads(args.threads)
    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(0)
    pool = 4096
    x = rng.random((pool, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, pool)
    loss_fn = nn.SoftmaxCrossEntropy()
    result = {"ranks": dist.world_size(), "threads": args.threads, "throughput": {}}
    for batch in args.batches:
        model = build_model(0)
        dist.broadcast_parameters(model)
        opt = dist.DistributedOptimizer(convcore.SGD(model.parameters(), lr=0.01, momentum=0.9), model,
                                        overlap=True)
        steps = max(4, args.images // batch)
        state = {"s": 0}

        def train(steps=steps, batch=batch, model=model, opt=opt):
            for _ in range(steps):
                lo = (state["s"] * batch) % (pool - batch)
                mine = dist.shard(np.arange(lo, lo + batch))
                nn.train_step(model, loss_fn, opt, x[mine], y[mine])
                state["s"] += 1

        train()  # warm-up: plans made, buffers allocated
        t = _median_time(train, args.repeat, comm)
        reduce_s = _median_time(lambda model=model: dist.allreduce_gradients(model), args.repeat * 20, comm)
        result["throughput"][str(batch)] = {"images_per_s": steps * batch / t, "step_ms": 1e3 * t / steps,
                                            "allreduce_ms": 1e3 * reduce_s,
                                            "gradient_bytes": sum(b.nbytes for b in opt.buckets)}
        opt.close()
    if args.compute and dist.world_size() == 1:
        result["compute_ms_per_step_at_32"] = compute_times(convcore, nn, build_model, args.repeat)
    if dist.is_main():
        print(json.dumps(result), flush=True)


def compute_times(convcore, nn, build_model, repeat: int) -> dict:
    """One rank's compute time per step at a batch of 32: the demo network's whole training
    step, and ResNet-8's convolutions forward and backward (batch norm, the residual additions and
    pooling, all elementwise, are left out, so the time is a lower bound)."""
    rng = np.random.default_rng(1)
    model = build_model(0)
    opt = convcore.SGD(model.parameters(), lr=0.01)
    x, y = rng.random((32, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 32)
    demo_step = lambda: [nn.train_step(model, nn.SoftmaxCrossEntropy(), opt, x, y) for _ in range(20)]
    demo_step()
    layers = []
    for ci, co, stride, size in resnet8_layers():
        conv = nn.Conv2D(ci, co, 3, stride=stride, padding=1, activation="relu", bias=False, seed=0)
        xi = rng.random((32, ci, size, size), dtype=np.float32)
        dy = rng.random(conv.forward(xi).shape, dtype=np.float32)
        layers.append((conv, xi, dy))

    def resnet_step():
        for conv, xi, dy in layers:
            conv.forward(xi)
            conv.backward(dy)

    resnet_step()
    return {"demo": 1e3 * _median_time(demo_step, repeat) / 20,
            "resnet8_convolutions": 1e3 * _median_time(resnet_step, repeat)}


# --------------------------------------------------------------------------------- parent


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit('mpiexec not found: pip install "convcore[mpi]"')
    return found


def launch(ranks: int, threads: int, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, __file__, "--child", "--threads", str(threads),
           "--batches", ",".join(map(str, args.batches)), "--images", str(args.images),
           "--repeat", str(args.repeat)] + (["--compute"] if (ranks, threads) == (1, 1) else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def ring_bandwidth(nbytes: int, ranks: int, compute_s: float) -> float:
    """Bytes/s a ring all-reduce of ``nbytes`` over ``ranks`` needs so that communication, not
    overlapped, takes at most (1/EFFICIENCY - 1) of the compute time: each rank sends
    2 (ranks-1)/ranks x nbytes per step."""
    return 2 * (ranks - 1) / ranks * nbytes / ((1 / EFFICIENCY - 1) * compute_s)


def ring_latency(ranks: int, compute_s: float) -> float:
    """Seconds per message at which the ring's 2 (ranks-1) sequential messages alone take the
    whole (1/EFFICIENCY - 1) share of the compute time."""
    return (1 / EFFICIENCY - 1) * compute_s / (2 * (ranks - 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="32,256", help="global batch sizes (default 32,256)")
    p.add_argument("--images", type=int, default=8192, help="images per timed sample (default 8192)")
    p.add_argument("--repeat", type=int, default=5, help="samples per job; the median is kept (default 5)")
    p.add_argument("--rounds", type=int, default=5,
                   help="jobs per configuration, in turn; the best is reported (default 5)")
    p.add_argument("--json", default=None, help="write the results as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compute", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        child(args)
        return 0

    facts = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
             "load_average_start": [round(v, 2) for v in os.getloadavg()]}
    # Rounds in turn, so that a burst of load from other processes hits every configuration
    # alike; each configuration keeps its best round (the least disturbed).
    rounds = [[launch(r, t, args) for r, t in CONFIGS] for _ in range(args.rounds)]
    runs = []
    for i in range(len(CONFIGS)):
        best = copy.deepcopy(rounds[0][i])
        for b in map(str, args.batches):
            best["throughput"][b] = max((rnd[i]["throughput"][b] for rnd in rounds),
                                        key=lambda t: t["images_per_s"])
        if "compute_ms_per_step_at_32" in best:
            best["compute_ms_per_step_at_32"] = {k: min(rnd[i]["compute_ms_per_step_at_32"][k] for rnd in rounds)
                                                 for k in best["compute_ms_per_step_at_32"]}
        runs.append(best)
    facts["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"CPU: {facts['cpu']} ({facts['logical_cpus']} logical CPUs); load average "
          f"{facts['load_average_start']} -> {facts['load_average_end']}")
    print(f"\nDemo network, training throughput (images/s; best of {args.rounds} jobs, each the median "
          f"of {args.repeat}), same global batch in every column:")
    label = lambda r, t: f"{r} rank{'s' * (r > 1)} x {t} thread{'s' * (t > 1)}"
    header = "| global batch | " + " | ".join(label(r, t) for r, t in CONFIGS) + " |"
    print(header)
    print("|" + " --- |" * (len(CONFIGS) + 1))
    for b in args.batches:
        cells = [f"{run['throughput'][str(b)]['images_per_s']:,.0f}" for run in runs]
        print(f"| {b} | " + " | ".join(cells) + " |")
    two = runs[CONFIGS.index((2, 1))]["throughput"]
    print("\n2 ranks: all-reduce of the demo gradients alone: " + ", ".join(
        f"{two[str(b)]['allreduce_ms'] * 1e3:.0f} us" for b in args.batches[:1]))

    compute = runs[0]["compute_ms_per_step_at_32"]
    demo_bytes = runs[0]["throughput"][str(args.batches[0])]["gradient_bytes"]
    resnet = resnet8_parameters()
    models = {"demo": (demo_bytes, compute["demo"] / 1e3),
              "resnet8": (4 * resnet["total"], compute["resnet8_convolutions"] / 1e3)}
    print(f"\nRing all-reduce, {int(EFFICIENCY * 100)} % efficiency without overlap, 32 images per rank "
          "per step (compute time measured at 1 thread):")
    print("| network | gradient bytes per step | compute per step | " +
          " | ".join(f"bandwidth for {n} ranks" for n in RING_RANKS) + " |")
    print("|" + " --- |" * (3 + len(RING_RANKS)))
    model_table = {}
    for name, (nbytes, t) in models.items():
        bws = [ring_bandwidth(nbytes, n, t) for n in RING_RANKS]
        model_table[name] = {"bytes": nbytes, "compute_s": t,
                             "bandwidth_bytes_per_s": dict(zip(map(str, RING_RANKS), bws))}
        print(f"| {name} | {nbytes:,} | {t * 1e3:.2f} ms | " + " | ".join(f"{bw / 1e9:.2f} GB/s" for bw in bws) + " |")
    print("\nLatency per message at which the ring's 2 (N-1) steps alone use the whole budget:")
    print("| network | " + " | ".join(f"{n} ranks" for n in RING_RANKS) + " |")
    print("|" + " --- |" * (1 + len(RING_RANKS)))
    for name, (nbytes, t) in models.items():
        lat = [ring_latency(n, t) for n in RING_RANKS]
        model_table[name]["latency_budget_s"] = dict(zip(map(str, RING_RANKS), lat))
        print(f"| {name} | " + " | ".join(f"{v * 1e6:.2f} us" for v in lat) + " |")
    print(f"\nResNet-8 parameters: {resnet}; with projection shortcuts: {resnet8_parameters(True)['total']:,}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": facts, "runs": runs, "rounds": rounds, "ring_model": model_table,
                       "resnet8_parameters": resnet}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
