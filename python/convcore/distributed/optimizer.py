"""The optimiser wrapper that all-reduces gradients before each step, optionally overlapping the
reduction with the backward pass, and a distributed ``train_step``."""

from __future__ import annotations

import functools
from typing import Callable, List, Tuple

import numpy as np
from mpi4py import MPI

from .. import nn
from .comm import (DEFAULT_BUCKET_BYTES, allreduce, check_same_network, make_buckets, new_comms,
                   unique_parameters)


def _leaves(module) -> List:
    """The layers whose ``backward`` finishes their parameters' gradients: ``module.layers``
    flattened (nested containers included), or the module itself when it has no ``layers``."""
    children = getattr(module, "layers", None)
    if children is None:
        return [module]
    return [leaf for child in children for leaf in _leaves(child)]


class DistributedOptimizer:
    """Wraps an optimiser (:class:`convcore.SGD` or any object with ``step()``) so that ``step()``
    first replaces every gradient of ``model`` by its value over all ranks, then steps.

    With ``average=True`` (for mean losses, the default) the result is the mean over the global
    batch: each rank's gradient weighted by the samples it back-propagated since the last step,
    counted from the first axis of the gradient passed to ``model.backward`` (a rank may have
    none: an empty share of a short last batch). ``average=False`` (for summed losses) gives the
    plain sum. Either way N ranks on their shares take the same step as one process on the whole
    batch, to rounding, with bitwise repeatable results.

    Gradients are reduced in contiguous buckets of up to ``bucket_bytes`` per dtype. With
    ``overlap=True`` a bucket's non-blocking reduction starts during the last of
    ``backward_passes_per_step`` backward passes (the micro-batches of a step), as soon as every
    layer holding one of its parameters has finished its backward; ``step()`` then waits for the
    rest. Overlap needs the layers of ``model.layers`` (as :class:`convcore.nn.Sequential` has) to
    know when a gradient is final; other models reduce after their whole backward pass.

    The wrapper hooks ``model.backward`` and ``model.zero_grad`` (and, with ``overlap``, each
    parameterised layer's ``backward``) by setting instance attributes; :meth:`close` removes
    them. Construction is collective (every rank, the same network: checked).
    """

    def __init__(self, optimizer, model, overlap: bool = False, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 backward_passes_per_step: int = 1, average: bool = True):
        if not callable(getattr(optimizer, "step", None)):
            msg = f"optimizer: expected an object with a step() method, got {type(optimizer).__name__}"
            raise TypeError(msg)
        for name in ("backward", "parameters", "zero_grad"):
            if not callable(getattr(model, name, None)):
                msg = f"model: expected a Module with {name}(), got {type(model).__name__}"
                raise TypeError(msg)
        for name, value in (("bucket_bytes", bucket_bytes), ("backward_passes_per_step", backward_passes_per_step)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                msg = f"{name}: expected an integer >= 1, got {value!r}"
                raise ValueError(msg)
        self.optimizer, self.model = optimizer, model
        self.overlap, self.average = bool(overlap), bool(average)
        self.backward_passes_per_step = int(backward_passes_per_step)
        params = unique_parameters(model)
        known = {id(p) for p in params}
        stray = [i for i, p in enumerate(getattr(optimizer, "params", [])) if id(p) not in known]
        if stray:
            msg = (f"optimizer: its parameters at positions {stray} are not the model's, so their "
                   "gradients would not be reduced and the ranks would drift apart")
            raise ValueError(msg)
        check_same_network(model, "DistributedOptimizer")
        self._comms = new_comms()
        self.buckets = make_buckets(params, int(bucket_bytes), self._comms)
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b.params}
        self._hooks: List[Tuple[object, str, bool, object]] = []
        self._reset()
        self._hook(model, "backward", self._model_backward)
        self._hook(model, "zero_grad", self._model_zero_grad)
        if self.overlap:
            for layer in _leaves(model):
                if layer is not model and layer.parameters():
                    self._hook(layer, "backward", self._layer_backward(layer))

    # -- hooks

    def _hook(self, obj, name: str, wrap: Callable) -> None:
        """Replaces ``obj.name`` by ``wrap(original)`` for this instance only."""
        original = getattr(obj, name)
        had_own = name in vars(obj)
        setattr(obj, name, wrap(original))
        self._hooks.append((obj, name, had_own, original))

    def _model_backward(self, original):
        @functools.wraps(original)
        def backward(grad_output, *args, **kwargs):
            if self._started:
                msg = (f"DistributedOptimizer: more backward passes than backward_passes_per_step="
                       f"{self.backward_passes_per_step} before step(); the gradients are already "
                       "being reduced (set backward_passes_per_step to the micro-batches per step)")
                raise RuntimeError(msg)
            shape = np.shape(grad_output)
            self._samples += shape[0] if shape else 1
            self._passes += 1
            result = original(grad_output, *args, **kwargs)
            if self.overlap and self._passes == self.backward_passes_per_step:
                self._mark_final(self.model.parameters())  # whatever no layer hook reported
            return result
        return backward

    def _layer_backward(self, layer):
        def wrap(original):
            @functools.wraps(original)
            def backward(grad_output, *args, **kwargs):
                result = original(grad_output, *args, **kwargs)
                if self._passes == self.backward_passes_per_step:
                    self._mark_final(layer.parameters())
                return result
            return backward
        return wrap

    def _model_zero_grad(self, original):
        @functools.wraps(original)
        def zero_grad():
            if self._started:
                msg = "DistributedOptimizer: zero_grad() while gradients are being reduced; call step() first"
                raise RuntimeError(msg)
            original()
            self._reset()
        return zero_grad

    def close(self) -> None:
        """Removes the hooks from the model and its layers and frees the wrapper's communicators
        (collective; the wrapper is unusable after)."""
        if self._started:
            msg = "DistributedOptimizer.close: gradients are being reduced; call step() first"
            raise RuntimeError(msg)
        for obj, name, had_own, original in reversed(self._hooks):
            if had_own:
                setattr(obj, name, original)
            else:
                delattr(obj, name)
        self._hooks.clear()
        for comm in self._comms:
            if comm != MPI.COMM_NULL:
                comm.Free()

    # -- reduction

    def _reset(self) -> None:
        self._passes = 0
        self._samples = 0
        self._started = 0
        self._pending = [len(b.params) for b in self.buckets]
        self._final = set()

    def _weight(self) -> int:
        return self._samples if self.average else 1

    def _mark_final(self, params) -> None:
        for p in params:
            b = self._bucket_of.get(id(p))
            if b is not None and id(p) not in self._final:
                self._final.add(id(p))
                self._pending[b] -= 1
        # Start buckets strictly in order (collectives must be posted in the same order everywhere).
        while self._started < len(self.buckets) and self._pending[self._started] == 0:
            self.buckets[self._started].start(self._weight())
            self._started += 1
        for bucket in self.buckets[:self._started]:
            bucket.reduction.progress()
            if bucket.reduction.phase == 1:  # its all-gather is not posted yet: later ones wait
                break

    def synchronize(self) -> None:
        """Finishes the reduction of every gradient (starting the buckets not started yet)."""
        for bucket in self.buckets[self._started:]:
            bucket.start(self._weight())
        self._started = len(self.buckets)
        totals = [bucket.finish(self.average) for bucket in self.buckets]
        self._reset()
        if self.average and totals and totals[0] == 0:
            msg = ("DistributedOptimizer.step: no rank ran model.backward since the last step (the "
                   "samples are counted there), so there is no gradient to average")
            raise RuntimeError(msg)

    def step(self) -> None:
        """Reduces the gradients across the ranks, then steps the wrapped optimiser. Collective."""
        self.synchronize()
        self.optimizer.step()

    def zero_grad(self) -> None:
        """Clears the model's gradients (and the sample count)."""
        self.model.zero_grad()

    @property
    def lr(self) -> float:
        """The wrapped optimiser's learning rate."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def __repr__(self) -> str:
        sizes = ", ".join(str(b.nbytes) for b in self.buckets)
        return (f"DistributedOptimizer({self.optimizer!r}, buckets of [{sizes}] bytes, "
                f"overlap={self.overlap}, average={self.average})")


def train_step(model, loss_fn, optimizer: DistributedOptimizer, x, labels,
               micro_batches: int = 1) -> Tuple[float, int]:
    """:func:`convcore.nn.train_step` on this rank's share ``x``/``labels`` of a global batch,
    with the gradients reduced across the ranks by ``optimizer``. A rank whose share is empty
    still takes part in the reduction. Returns the global batch's mean loss (or summed loss, for
    a ``"sum"`` loss) and its number of correct predictions, the same on every rank. Collective.
    """
    if not isinstance(optimizer, DistributedOptimizer):
        msg = (f"optimizer: expected a DistributedOptimizer (a plain {type(optimizer).__name__} "
               "would let the ranks drift apart)")
        raise TypeError(msg)
    n = len(x)
    if n == 0:
        optimizer.zero_grad()
        optimizer.step()
        loss, correct = 0.0, 0
    else:
        loss, correct = nn.train_step(model, loss_fn, optimizer, x, labels, min(micro_batches, n))
    mean = getattr(loss_fn, "reduction", "mean") == "mean"
    total = allreduce(np.array([loss * n if mean else loss, correct, n], np.float64))
    return (float(total[0] / total[2]) if mean else float(total[0])), int(total[1])
