"""Data-parallel training over MPI: every rank holds the whole network and trains on its share of
each batch; the gradients are summed across the ranks before every update.

Needs the ``mpi`` extra (``pip install "convcore[mpi]"``: mpi4py and the MPICH library) and a
launcher: ``mpiexec -n 4 python train.py``. A training loop needs two more lines::

    import convcore.distributed as dist

    model = build_model(seed=0)
    dist.broadcast_parameters(model)                           # 1: rank 0's weights everywhere
    opt = dist.DistributedOptimizer(cc.SGD(model.parameters(), lr=0.05), model)   # 2
    sampler = dist.DistributedSampler(len(x), seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for idx in sampler.batches(32):                        # this rank's share of 32 images
            nn.train_step(model, loss_fn, opt, x[idx], y[idx])

**Same step as one process.** ``opt.step()`` replaces every gradient by the average over the
ranks, weighted by the number of samples each rank back-propagated (counted from the batch axis
of the gradient given to ``model.backward``), then steps the wrapped optimiser. N ranks on their
shares of a batch therefore take the step one process takes on the whole batch, to float
rounding, even when the ranks' shares differ in size (a world size that does not divide the
batch). Every rank ends with identical bits, so the replicas never drift apart.

**Fixed reduction order: bitwise repeatable.** ``MPI_Allreduce`` does not promise the order in
which it adds the ranks' values; it may depend on the algorithm the library picks and, in some
libraries, on message arrival. Here a sum over the ranks is built from data movement only plus
local arithmetic: (1) an all-to-all sends chunk r of every rank's buffer to rank r (the
reduce-scatter's traffic), (2) rank r adds the N copies of its chunk **in rank order
0, 1, ..., N-1**, (3) an all-gather hands every rank all the summed chunks. Each element is
therefore always ``((g0 + g1) + g2) + ...``, whatever the chunking, so a run is bitwise repeatable
for a given number of ranks, and every rank receives the same bits. Each rank sends and receives
``2 (N-1)/N`` times the buffer, the volume of a ring all-reduce.

**Buckets.** Gradients travel in a few contiguous buffers per dtype (``bucket_bytes`` each, in
backward order), never one message per tensor. A bucket is a fusion buffer: the gradients are
copied in when it starts and the result copied back into ``Parameter.grad`` in place, so arrays a
layer holds on to stay valid. With ``overlap=True`` a bucket's non-blocking reduction starts as
soon as the backward pass has finished every layer whose parameters it holds, and later layers'
backward calls drive its progress, so communication overlaps the rest of the backward pass.

**Faults.** Importing this module under a launcher with more than one rank installs a
``sys.excepthook`` that prints which rank failed and calls ``MPI_Abort``, so an exception on one
rank stops all of them instead of leaving the others waiting in a collective;
:func:`abort_on_error` does the same around a block. Networks whose parameters differ between
ranks are refused, naming the parameter, before anything is sent.
"""

from __future__ import annotations

INSTALL_HINT = 'pip install "convcore[mpi]"'

try:
    from mpi4py import MPI  # noqa: F401  (initialises MPI)
except (ImportError, RuntimeError, OSError) as exc:  # no mpi4py, or no MPI library for it to load
    _msg = (f"convcore.distributed needs mpi4py and an MPI library ({exc}): {INSTALL_HINT} "
            "installs both (mpi4py and the mpich wheel)")
    raise ImportError(_msg, name="mpi4py") from exc

from .comm import (
    DistributedSampler,
    abort_on_error,
    allreduce,
    allreduce_gradients,
    broadcast_parameters,
    is_main,
    local_size,
    rank,
    shard,
    world_size,
)
from .comm import install_excepthook as _install_excepthook
from .optimizer import DistributedOptimizer, train_step
from .._public import public_dir as _public_dir

_install_excepthook()

__all__ = [
    "DistributedOptimizer",
    "DistributedSampler",
    "INSTALL_HINT",
    "abort_on_error",
    "allreduce",
    "allreduce_gradients",
    "broadcast_parameters",
    "is_main",
    "local_size",
    "rank",
    "shard",
    "train_step",
    "world_size",
]
__dir__ = _public_dir(globals())
