"""Programs that tests/test_distributed.py runs under ``mpiexec -n N``: ``python mpi_worker.py
SCENARIO OUT_DIR [options]``. Each rank writes what the test checks to OUT_DIR; the test compares."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import convcore
import convcore.distributed as dist
from convcore import nn


def build_model(seed: int, width: int = 16, dtype=np.float32) -> nn.Sequential:
    """The demo's network shape on 8x8 single-channel images (``width`` first-layer channels)."""
    s = np.random.SeedSequence(seed).generate_state(3)
    return nn.Sequential(
        nn.Conv2D(1, width, 3, padding=1, activation="relu", seed=int(s[0]), dtype=dtype),
        nn.MaxPool2D(2),
        nn.Conv2D(width, 32, 3, padding=1, activation="relu", seed=int(s[1]), dtype=dtype),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10, seed=int(s[2]), dtype=dtype),
    )


def data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


def train(args, distributed: bool):
    """``args.epochs`` epochs over ``args.n`` random images in global batches of ``args.batch``;
    distributed: each rank on its share through DistributedOptimizer, else one process on all."""
    dtype = np.dtype(args.dtype)
    x, y = data(args.n, seed=7)
    x = x.astype(dtype)
    model = build_model(seed=0 if not distributed else 100 + dist.rank(), dtype=dtype)
    if distributed:
        dist.broadcast_parameters(model)  # rank 0's weights (seed 100) everywhere
    else:
        model = build_model(seed=100, dtype=dtype)
    loss_fn = nn.SoftmaxCrossEntropy()
    sgd = convcore.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt = (dist.DistributedOptimizer(sgd, model, overlap=args.overlap, bucket_bytes=args.bucket_bytes,
                                     backward_passes_per_step=args.micro) if distributed else sgd)
    losses = []
    sampler = dist.DistributedSampler(args.n, seed=3, rank=0 if not distributed else None,
                                      world_size=1 if not distributed else None)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for idx in sampler.batches(args.batch):
            if distributed:
                loss, _ = dist.train_step(model, loss_fn, opt, x[idx], y[idx], args.micro)
            else:
                loss, _ = nn.train_step(model, loss_fn, opt, x[idx], y[idx], min(args.micro, len(idx)))
            losses.append(loss)
    return model, np.array(losses), len(opt.buckets) if distributed else 0


def equivalence(args) -> None:
    model, losses, buckets = train(args, distributed=True)
    np.savez(os.path.join(args.out, f"rank{dist.rank()}.npz"), losses=losses, buckets=buckets,
             **model.state_dict())
    if dist.is_main():  # the single-process run on the same global batches, for comparison
        single, single_losses, _ = train(args, distributed=False)
        np.savez(os.path.join(args.out, "single.npz"), losses=single_losses, **single.state_dict())


def mismatch(args) -> None:
    """Rank 1 builds a network whose second convolution has other shapes."""
    model = build_model(seed=0, width=16 if dist.rank() != 1 else 8)
    dist.broadcast_parameters(model)
    print("broadcast returned", flush=True)


def raises(args) -> None:
    """Rank 1 fails in the middle of training while the others wait in the reduction."""
    model = build_model(seed=0)
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(convcore.SGD(model.parameters(), lr=0.1), model)
    x, y = data(64, seed=1)
    for step in range(4):
        if step == 2 and dist.rank() == 1:
            raise RuntimeError("injected failure on rank 1")
        dist.train_step(model, nn.SoftmaxCrossEntropy(), opt, x[:32], y[:32])
    print("training finished", flush=True)


def exits(args) -> None:
    """Rank 1 exits with status 3 inside abort_on_error while the others wait in a collective."""
    with dist.abort_on_error():
        if dist.rank() == 1:
            sys.exit(3)
        dist.allreduce(np.ones(3))
    print("allreduce returned", flush=True)


def allreduce_values(args) -> None:
    """Each rank contributes known values; rank 0 writes the results for the test to check."""
    r, n = dist.rank(), dist.world_size()
    a = np.arange(7, dtype=np.float64) * (r + 1)
    total = dist.allreduce(a)
    mean = dist.allreduce(a, average=True)
    ints = dist.allreduce(np.array([[r, 1]], np.int64))
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    model.zero_grad()
    model[0].weight_param.grad[...] = r + 1
    model[0].bias_param.grad[...] = 10 * (r + 1)
    dist.allreduce_gradients(model, average=False)
    summed = model[0].grad_weight.copy()
    model[0].weight_param.grad[...] = r + 1
    dist.allreduce_gradients(model, average=True, samples=r + 1)  # sum (r+1)^2 / sum (r+1)
    weighted = model[0].grad_weight.copy()
    if dist.is_main():
        np.savez(os.path.join(args.out, "allreduce.npz"), total=total, mean=mean, ints=ints,
                 summed=summed, weighted=weighted, size=n)


SCENARIOS = {"equivalence": equivalence, "mismatch": mismatch, "raises": raises, "exits": exits,
             "allreduce": allreduce_values}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("out")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--micro", type=int, default=1)
    p.add_argument("--overlap", action="store_true")
    p.add_argument("--bucket-bytes", type=int, default=4 << 20)
    p.add_argument("--dtype", default="float32")
    args = p.parse_args()
    convcore.set_num_threads(1)
    SCENARIOS[args.scenario](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
