"""Ranks, fault handling, the deterministic sum over the ranks, gradient buckets, parameter
broadcast and the data sampler (see the package notes for the reduction order)."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import traceback
import weakref
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mpi4py import MPI

from ..optim import Parameter

DEFAULT_BUCKET_BYTES = 4 << 20


# ----------------------------------------------------------------------------- where am I


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD``, 0 .. world_size()-1."""
    return MPI.COMM_WORLD.Get_rank()


def world_size() -> int:
    """The number of ranks (1 when run without a launcher)."""
    return MPI.COMM_WORLD.Get_size()


def is_main() -> bool:
    """True on rank 0, the rank that prints and writes files."""
    return rank() == 0


@functools.lru_cache(maxsize=None)
def local_size() -> int:
    """The number of ranks on this host (they share its cores). Collective on first call."""
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


@functools.lru_cache(maxsize=None)
def _module_comms() -> Tuple["MPI.Intracomm", "MPI.Intracomm"]:
    """Two private duplicates of COMM_WORLD for the module-level collectives (made on first use,
    by every rank in the same call): the user's own COMM_WORLD traffic never matches ours."""
    return MPI.COMM_WORLD.Dup(), MPI.COMM_WORLD.Dup()


def new_comms() -> Tuple["MPI.Intracomm", "MPI.Intracomm"]:
    """A fresh pair of communicators: the first carries the all-to-alls of reductions, the second
    their all-gathers, so each sees its collectives posted in the same order on every rank even
    when non-blocking reductions interleave. Collective."""
    return MPI.COMM_WORLD.Dup(), MPI.COMM_WORLD.Dup()


# --------------------------------------------------------------------------------- faults


def _report_and_abort(exc_type, exc, tb) -> None:
    """Prints the failure with the rank, then aborts every rank of the job."""
    sys.stdout.flush()
    sys.stderr.write(f"\nconvcore.distributed: rank {rank()} of {world_size()} failed with "
                     f"{exc_type.__name__}: {exc}\n")
    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
    sys.stderr.write(f"convcore.distributed: aborting all {world_size()} ranks\n")
    sys.stderr.flush()
    time.sleep(0.2)  # lets the launcher forward the message before the abort ends every process
    MPI.COMM_WORLD.Abort(1)


_previous_excepthook = sys.excepthook


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, SystemExit) and exc.code in (None, 0):
        return _previous_excepthook(exc_type, exc, tb)
    return _report_and_abort(exc_type, exc, tb)


def install_excepthook() -> None:
    """Makes an uncaught exception on any rank abort the whole job (when more than one rank
    runs): importing ``convcore.distributed`` calls this."""
    if world_size() > 1 and sys.excepthook is not _excepthook:
        sys.excepthook = _excepthook


@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """Runs a block; if it raises (or exits with a non-zero status) on any rank while more than one
    rank runs, prints the error with its rank and aborts all ranks, so none waits forever in a
    collective. With one rank the exception propagates as usual."""
    try:
        yield
    except SystemExit as e:
        if world_size() > 1 and e.code not in (None, 0):
            _report_and_abort(type(e), e, e.__traceback__)
        raise
    except BaseException as e:
        if world_size() > 1:
            _report_and_abort(type(e), e, e.__traceback__)
        raise


# ------------------------------------------------------------------------------ reductions


class _Reduction:
    """A deterministic sum over the ranks of ``buffer`` (1-D, length a multiple of the world size),
    in place: all-to-all of equal chunks on ``comms[0]``, a local sum in rank order, all-gather on
    ``comms[1]``. ``start`` posts the all-to-all; ``progress`` advances without blocking (or to
    the end with ``block``)."""

    def __init__(self, buffer: np.ndarray, comms):
        self.buffer, self.comms = buffer, comms
        size = comms[0].Get_size()
        self.received = np.empty((size, buffer.size // size), buffer.dtype)
        self.mine = np.empty(buffer.size // size, buffer.dtype)
        self.request = None
        self.phase = 0  # 0 idle or done, 1 all-to-all in flight, 2 all-gather in flight

    def start(self) -> None:
        if self.comms[0].Get_size() > 1:
            self.request = self.comms[0].Ialltoall(self.buffer, self.received)
            self.phase = 1

    def progress(self, block: bool = False) -> bool:
        """Advances the reduction; True once ``buffer`` holds the sum."""
        while self.phase:
            if block:
                self.request.Wait()
            elif not self.request.Test():
                return False
            if self.phase == 1:
                np.copyto(self.mine, self.received[0])
                for r in range(1, self.received.shape[0]):  # rank order: the fixed summation order
                    self.mine += self.received[r]
                self.request = self.comms[1].Iallgather(self.mine, self.buffer)
                self.phase = 2
            else:
                self.request, self.phase = None, 0
        return True


def _padded(n: int, size: int) -> int:
    return -(-n // size) * size


def allreduce(array, average: bool = False) -> np.ndarray:
    """Sum (or mean) over the ranks of ``array`` (any shape, float or integer), returned as a new
    array of the same shape and dtype (float for a mean) on every rank. Deterministic: the
    ranks' values are added in rank order. Collective: every rank must call it with the same
    shape and dtype."""
    a = np.asarray(array)
    comms = _module_comms()
    size = comms[0].Get_size()
    buf = np.zeros(_padded(max(a.size, 1), size), a.dtype)
    buf[:a.size] = a.ravel()
    r = _Reduction(buf, comms)
    r.start()
    r.progress(block=True)
    out = buf[:a.size].reshape(a.shape)
    return out / size if average else out


# ------------------------------------------------------------------------------ parameters


def named_parameters(model) -> List[Tuple[str, Parameter]]:
    """``model.named_parameters()`` when it has one, else ``(position, parameter)`` pairs."""
    named = getattr(model, "named_parameters", None)
    if callable(named):
        return list(named())
    return [(p.name or str(i), p) for i, p in enumerate(model.parameters())]


def check_same_network(model, what: str) -> List[Tuple[str, Parameter]]:
    """Compares the parameters' names, shapes and dtypes across the ranks (one small all-gather)
    and raises the same ValueError on every rank when they differ, before any bulk message."""
    named = named_parameters(model)
    mine = [(name, tuple(p.data.shape), p.data.dtype.str) for name, p in named]
    every = _module_comms()[0].allgather(mine)
    ref = every[0]
    for r, theirs in enumerate(every[1:], start=1):
        for (n0, s0, d0), (n1, s1, d1) in zip(ref, theirs):
            if (n0, s0, d0) != (n1, s1, d1):
                msg = (f"{what}: parameter {n1!r} is {np.dtype(d1)} {s1} on rank {r} but parameter "
                       f"{n0!r} is {np.dtype(d0)} {s0} on rank 0: every rank must build the same "
                       "network")
                raise ValueError(msg)
        if len(theirs) != len(ref):
            msg = (f"{what}: rank 0 has {len(ref)} parameters, rank {r} has {len(theirs)}: every "
                   "rank must build the same network")
            raise ValueError(msg)
    return named


def broadcast_parameters(model, root: int = 0) -> None:
    """Copies ``root``'s parameter values into every rank's ``model``, in place (one broadcast per
    dtype, not per tensor). Collective. Raises ValueError on every rank, naming the parameter,
    when the ranks' networks differ in parameter names, shapes or dtypes; nothing is sent then."""
    size = world_size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < size:
        msg = f"root: expected a rank in [0, {size}), got {root!r}"
        raise ValueError(msg)
    named = check_same_network(model, "broadcast_parameters")
    for dtype in sorted({p.data.dtype.str for _, p in named}):
        params = [p for _, p in named if p.data.dtype.str == dtype]
        flat = np.concatenate([p.data.ravel() for p in params])
        _module_comms()[0].Bcast(flat, root=int(root))
        offset = 0
        for p in params:
            np.copyto(p.data, flat[offset:offset + p.data.size].reshape(p.data.shape))
            offset += p.data.size


# --------------------------------------------------------------------------------- buckets


class Bucket:
    """Contiguous fusion buffer for some parameters' gradients of one dtype:
    ``[grad of p0 | grad of p1 | ... | weight | zero padding to a multiple of the world size]``.
    The weight slot sums to the total weight, the divisor of a weighted average."""

    def __init__(self, params: List[Parameter], comms):
        self.params = params
        dtype = params[0].grad.dtype
        self.sizes = [p.grad.size for p in params]
        self.weight_slot = int(sum(self.sizes))
        self.buffer = np.zeros(_padded(self.weight_slot + 1, comms[0].Get_size()), dtype)
        self.reduction = _Reduction(self.buffer, comms)

    @property
    def nbytes(self) -> int:
        """Bytes of gradient the bucket carries (without its weight slot and padding)."""
        return self.weight_slot * self.buffer.itemsize

    def _views(self):
        offset = 0
        for p, n in zip(self.params, self.sizes):
            yield p, self.buffer[offset:offset + n].reshape(p.grad.shape)
            offset += n

    def start(self, weight: float) -> None:
        """Copies the gradients in (scaled by ``weight``) and starts the reduction."""
        w = self.buffer.dtype.type(weight)
        for p, view in self._views():
            if weight == 1:
                np.copyto(view, p.grad)
            else:
                np.multiply(p.grad, w, out=view)
        self.buffer[self.weight_slot] = w
        self.reduction.start()

    def finish(self, average: bool) -> float:
        """Waits for the sum and copies it back into the gradients in place, divided by the
        total weight when ``average``; returns the total weight."""
        self.reduction.progress(block=True)
        total = self.buffer[self.weight_slot]
        for p, view in self._views():
            if not average:
                np.copyto(p.grad, view)
            elif total == 0:  # no rank had a sample: nothing to average
                p.grad.fill(0)
            else:
                np.divide(view, total, out=p.grad)
        return float(total)


def make_buckets(params: Sequence[Parameter], bucket_bytes: int, comms) -> List[Bucket]:
    """Buckets in backward order (the last parameters first, as the backward pass finishes them),
    one dtype each, closed before they would exceed ``bucket_bytes`` (a larger tensor gets its
    own bucket)."""
    buckets, current, nbytes = [], [], 0
    for p in reversed(list(params)):
        if current and (p.grad.dtype != current[0].grad.dtype or nbytes + p.grad.nbytes > bucket_bytes):
            buckets.append(Bucket(current, comms))
            current, nbytes = [], 0
        current.append(p)
        nbytes += p.grad.nbytes
    if current:
        buckets.append(Bucket(current, comms))
    return buckets


def unique_parameters(model) -> List[Parameter]:
    """``model.parameters()`` without repeats (a shared parameter is reduced once)."""
    seen, out = set(), []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


_cached_buckets: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def allreduce_gradients(model, average: bool = True, samples: Optional[int] = None) -> None:
    """Replaces every parameter's gradient by its average over the ranks (or sum), in place.

    ``average=True`` divides the sum by the number of ranks; with ``samples`` (this rank's number
    of samples, when each rank's gradient is the mean over its own samples) it gives the
    sample-weighted mean ``sum_r samples_r * g_r / sum_r samples_r`` instead: the mean over the
    global batch, also when the ranks' shares differ. ``average=False`` gives the plain sum
    (``samples`` must then be None). Gradients travel in contiguous buckets of up to 4 MiB per
    dtype; the sum is bitwise repeatable. Collective: every rank must call it with the same
    network (checked on the first call for a model).
    """
    if samples is not None and not average:
        msg = "samples: only used with average=True (it weights the average)"
        raise ValueError(msg)
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, (int, np.integer))
                                or samples < 0):
        msg = f"samples: expected an integer >= 0, got {samples!r}"
        raise ValueError(msg)
    params = unique_parameters(model)
    key = tuple(id(p) for p in params)
    cached = _cached_buckets.get(model)
    if cached is None or cached[0] != key:
        check_same_network(model, "allreduce_gradients")
        cached = (key, make_buckets(params, DEFAULT_BUCKET_BYTES, _module_comms()))
        _cached_buckets[model] = cached
    for bucket in cached[1]:
        bucket.start(1 if samples is None else samples)
    for bucket in cached[1]:
        bucket.finish(average)


# ---------------------------------------------------------------------------------- sampler


def shard(indices, rank: Optional[int] = None, world_size: Optional[int] = None) -> np.ndarray:
    """This rank's share of ``indices`` (1-D): the ``rank``-th of ``world_size`` consecutive pieces,
    split as :func:`convcore.nn.train_step` splits a batch into micro-batches (sizes differ by at
    most one, the first pieces larger). The shares are disjoint and cover ``indices``; a share is
    empty when there are fewer indices than ranks."""
    r = MPI.COMM_WORLD.Get_rank() if rank is None else int(rank)
    n = MPI.COMM_WORLD.Get_size() if world_size is None else int(world_size)
    if n < 1 or not 0 <= r < n:
        msg = f"rank, world_size: expected 0 <= rank < world_size, got {r} and {n}"
        raise ValueError(msg)
    a = np.asarray(indices)
    lo = r * (len(a) // n) + min(r, len(a) % n)
    return a[lo:lo + len(a) // n + (1 if r < len(a) % n else 0)]


class DistributedSampler:
    """Indices of a dataset of ``n`` samples, split across the ranks.

    Each epoch's order is a permutation of ``range(n)`` drawn from
    ``numpy.random.default_rng([seed, epoch])`` (``range(n)`` itself without ``shuffle``), the same
    on every rank. Iterating yields this rank's share of it (:func:`shard`): disjoint across the
    ranks and covering the dataset, no sample repeated or dropped, shares differing by at most
    one. :meth:`batches` splits each global batch of that order instead, so N ranks together
    take exactly the batches one process would. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            msg = f"n: expected the dataset size, an integer >= 0, got {n!r}"
            raise ValueError(msg)
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.world_size = MPI.COMM_WORLD.Get_size() if world_size is None else int(world_size)
        self.rank = MPI.COMM_WORLD.Get_rank() if rank is None else int(rank)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            msg = f"rank: expected 0 <= rank < world_size={self.world_size}, got {self.rank}"
            raise ValueError(msg)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next iteration (or :meth:`batches`) uses."""
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """The epoch's global order of the ``n`` indices (int64, the same on every rank)."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[int]:
        return iter(shard(self.order(), self.rank, self.world_size).tolist())

    def __len__(self) -> int:
        return self.n // self.world_size + (1 if self.rank < self.n % self.world_size else 0)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """This rank's share of each consecutive global batch of ``batch_size`` indices of the
        epoch's order: ``ceil(n / batch_size)`` arrays on every rank (so the ranks' collectives
        stay matched), of ``batch_size // world_size`` indices or one more — none when the last
        global batch is smaller than the world size."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            msg = f"batch_size: expected an integer >= 1, got {batch_size!r}"
            raise ValueError(msg)
        order = self.order()
        for lo in range(0, self.n, batch_size):
            yield shard(order[lo:lo + batch_size], self.rank, self.world_size)
