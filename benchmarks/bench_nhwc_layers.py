#!/usr/bin/env python3
"""Channels-last (NHWC) against NCHW for the image layers beside the convolutions: max pooling,
average pooling and batch normalisation, forward and backward, timed side by side in one run.

Each sample is the process CPU time (``time.process_time``) of repeated calls on one thread by
default, which a busy shared machine disturbs less than wall time; the two layouts alternate
sample by sample and the median of each is reported, with the ratio NCHW / NHWC (above 1: NHWC
is faster).

    pip install .
    python benchmarks/bench_nhwc_layers.py [--threads 1] [--repeat 9] [--dtype float32] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time

import numpy as np

import convcore as cc
from convcore import nn

# (name, (N, C, H, W))
SHAPES = [("resnet-early", (16, 64, 56, 56)), ("resnet-mid", (16, 128, 28, 28)), ("small-c", (64, 16, 32, 32))]


def _layers(layout, c, dtype):
    """name -> (layer, train mode)."""
    return {
        "maxpool 2x2/2": (nn.MaxPool2D(2, layout=layout), True),
        "maxpool 3x3/2 p1": (nn.MaxPool2D(3, stride=2, padding=1, layout=layout), True),
        "avgpool 3x3/2 p1": (nn.AvgPool2D(3, stride=2, padding=1, layout=layout), True),
        "batchnorm train": (nn.BatchNorm2D(c, dtype=dtype, layout=layout), True),
        "batchnorm eval": (nn.BatchNorm2D(c, dtype=dtype, layout=layout).eval(), False),
    }


def _sample(fn, min_time):
    """CPU seconds per call of fn, repeated until a sample lasts min_time."""
    calls, t0 = 0, time.process_time()
    while True:
        fn()
        calls += 1
        t = time.process_time() - t0
        if t >= min_time:
            return t / calls


def _cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=9, help="samples per op and layout (median reported)")
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--shapes", default=",".join(n for n, _ in SHAPES))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cc.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    rows = []
    print(f"CPU: {_cpu_name()}, {args.threads} thread(s), {dtype}, CPU time per call (median of {args.repeat})")
    print(f"{'shape':14} {'op':18} {'dir':8} {'NCHW ms':>9} {'NHWC ms':>9} {'NCHW/NHWC':>10}")
    for name, shape in SHAPES:
        if name not in args.shapes.split(","):
            continue
        x = rng.standard_normal(shape).astype(dtype)
        inputs = {"NCHW": x, "NHWC": np.ascontiguousarray(x.transpose(0, 2, 3, 1))}
        layers = {lay: _layers(lay, shape[1], dtype) for lay in inputs}
        for op in layers["NCHW"]:
            calls = {}
            for lay in inputs:
                layer, _ = layers[lay][op]
                y = layer.forward(inputs[lay])
                dy = np.ones_like(y)
                calls[lay] = {"forward": (lambda layer=layer, v=inputs[lay]: layer.forward(v)),
                              "backward": (lambda layer=layer, dy=dy: layer.backward(dy))}
            for direction in ("forward", "backward"):
                times = {lay: [] for lay in inputs}
                for _ in range(args.repeat):  # alternate the layouts sample by sample
                    for lay in inputs:
                        if direction == "backward":
                            layers[lay][op][0].forward(inputs[lay])
                        times[lay].append(_sample(calls[lay][direction], args.min_time))
                med = {lay: statistics.median(t) for lay, t in times.items()}
                ratio = med["NCHW"] / med["NHWC"]
                rows.append(dict(shape=name, dims=shape, op=op, direction=direction, nchw_s=med["NCHW"],
                                 nhwc_s=med["NHWC"], ratio=ratio))
                print(f"{name:14} {op:18} {direction:8} {med['NCHW'] * 1e3:9.3f} {med['NHWC'] * 1e3:9.3f} "
                      f"{ratio:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpu=_cpu_name(), threads=args.threads, dtype=str(dtype), timing="process_time",
                           rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
