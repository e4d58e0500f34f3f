"""A small neural-network toolkit around the convolution layer: enough for a LeNet-style CNN.

Layers share one protocol (:class:`Module`): ``forward(x)`` computes the output and keeps what
the backward pass needs; ``backward(grad_output)`` takes dE/d(output), **adds** the layer's
parameter gradients to ``Parameter.grad`` and returns dE/d(input) for the layer below;
``parameters()`` lists the :class:`~convcore.Parameter` objects; ``zero_grad()`` clears their
gradients. Gradients accumulate across backward calls until ``zero_grad``, so the micro-batches
of a large batch add up to its gradient (see :func:`train_step`).

::

    import numpy as np
    import convcore as cc
    from convcore import nn

    model = nn.Sequential(
        nn.Conv2D(1, 16, 3, padding=1, activation="relu", seed=1), nn.MaxPool2D(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10, seed=2),
    )
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = cc.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss, correct = nn.train_step(model, loss_fn, opt, x_batch, labels, micro_batches=2)
    model.save("digits.npz")

:class:`Conv2D` is the library's convolution layer (``convcore.Conv2D``); :class:`MaxPool2D`,
:class:`Linear`, :class:`BatchNorm2D` and :class:`AvgPool2D` are native too, as is the backward
pass of :class:`ReLU`; :class:`Flatten`, :class:`GlobalAvgPool2D`, :class:`Dropout` and
:class:`SoftmaxCrossEntropy` are NumPy. :class:`Residual` adds a block's output to its input's
(or a projection's). Everything runs in float32 or float64, the dtype of the parameters.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Literal, Optional, Protocol, Tuple, Union, overload

import numpy as np

from . import _core
from . import _layout
from . import functional as F
from ._blas import one_blas_thread
from ._shown import shown
from .blocks import AvgPool2D, BatchNorm2D, Dropout, GlobalAvgPool2D, Residual
from .layers import (Conv1D, Conv2D, ConvTranspose2D, Module, WeightBiasModule, _call, _check_grad, _layer_input,
                     _need_forward, _takes_input_grad)
from .optim import SGD, Parameter
from ._public import public_dir as _public_dir

__all__ = [
    "AvgPool2D",
    "BatchNorm2D",
    "Conv1D",
    "Conv2D",
    "ConvTranspose2D",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Linear",
    "MaxPool2D",
    "Module",
    "ReLU",
    "Residual",
    "Sequential",
    "SoftmaxCrossEntropy",
    "max_pool2d",
    "max_pool2d_backward",
    "train_step",
]
__dir__ = _public_dir(globals())

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------- max pooling


def _pool_geometry(shape, kernel_size, stride, padding, dilation, layout: str = "NCHW") -> "_core.Geometry":
    """A pooling window as a depthwise convolution geometry (oc == ic == groups); ``shape`` is
    ``(N, C, H, W)`` whatever the activations' ``layout``."""
    mb, c, ih, iw = shape
    kh, kw = F._pair(kernel_size, "kernel_size")
    sh, sw = F._pair((kh, kw) if stride is None else stride, "stride")
    dh, dw = F._pair(dilation, "dilation")
    if min(kh, kw, sh, sw, dh, dw) < 1:
        msg = (f"max_pool2d: kernel_size {(kh, kw)}, stride {(sh, sw)} and dilation {(dh, dw)} "
               "must be >= 1")
        raise ValueError(msg)
    pt, pb, pl, pr = F._padding(padding, ih, iw, kh, kw, sh, sw, dh, dw)
    return _core.Geometry(mb, c, ih, iw, c, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, c, layout)


def _batched(x: np.ndarray, name: str, layout: str) -> Tuple[np.ndarray, bool]:
    """A 4-D activation in ``layout`` as is; a 3-D one as a batch of one (and a flag to drop it)."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x[None], True
    msg = (f"{name}: expected a 4-D {_layout.shape_text(layout)} or 3-D "
           f"{_layout.shape_text(layout, batched=False)} array, got shape {x.shape}")
    raise ValueError(msg)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
               layout: str = "NCHW"):
    """Max pooling of ``(N, C, H, W)`` (or ``(C, H, W)``) over ``kernel_size`` windows.

    With ``layout="NHWC"`` the input is ``(N, H, W, C)`` (or ``(H, W, C)``) and so is the output,
    ``(N, oh, ow, C)``: the NCHW result transposed, computed natively with the channels last.

    ``stride`` defaults to ``kernel_size``. Padded cells count as -inf (PyTorch's semantics);
    each padding must be at most half the (dilated) window. On ties the first maximum in
    row-by-row scan order of the window wins; NaN propagates (the first NaN of a window wins).
    With ``return_indices`` also returns int64 indices, shaped like the output, of the cells that
    won: flat positions ``h * W + w`` within each ``H x W`` input plane, in both layouts (as
    PyTorch's channels_last pooling), which is what :func:`max_pool2d_backward` needs.
    """
    layout = _layout.layout_of(layout)
    x, single = _batched(F._array(input, "input"), "input", layout)
    g = _pool_geometry(_layout.to_nchw_shape(x.shape, layout), kernel_size, stride, padding, dilation, layout)
    y, idx = _core.max_pool2d_forward(g, F._contiguous(x, F._dtype(x)))
    if single:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride=None, padding=0,
                        dilation=1, layout: str = "NCHW") -> np.ndarray:
    """Gradient of :func:`max_pool2d`: every ``grad_output`` entry added to the cell that won.

    Where windows overlap (stride < kernel) a cell that wins several windows receives the sum of
    their gradients. ``indices`` come from ``max_pool2d(..., return_indices=True)``;
    ``input_size`` is ``(N, C, H, W)`` or ``(C, H, W)`` — ``(N, H, W, C)`` or ``(H, W, C)`` with
    ``layout="NHWC"``, where ``grad_output`` and ``indices`` are ``(N, oh, ow, C)`` and the
    result ``(N, H, W, C)``.
    """
    layout = _layout.layout_of(layout)
    if layout == "NHWC" and len(input_size) not in (3, 4):
        msg = f"input_size: expected (N, H, W, C) or (H, W, C), got {tuple(input_size)}"
        raise ValueError(msg)
    size, single = F._size(input_size, "input_size")
    size = _layout.to_nchw_shape(size, layout)
    dy = F._array(grad_output, "grad_output")
    idx = np.asarray(indices)
    if single:
        dy, idx = dy[None], idx[None]
    if idx.dtype.kind not in "iu":
        msg = f"indices: expected an integer array, got dtype {idx.dtype}"
        raise TypeError(msg)
    g = _pool_geometry(size, kernel_size, stride, padding, dilation, layout)
    want = _layout.from_nchw_shape((g.mb, g.ic, g.oh, g.ow), layout)
    for name, a in (("grad_output", dy), ("indices", idx)):
        if a.shape != want:
            msg = f"{name}: expected shape {want} {_layout.shape_text(layout)} for this pooling, got {a.shape}"
            raise ValueError(msg)
    dx = _core.max_pool2d_backward(g, np.ascontiguousarray(idx, dtype=np.int64),
                                   F._contiguous(dy, F._dtype(dy)))
    return dx[0] if single else dx


# -------------------------------------------------------------------------------------- layers


class MaxPool2D(Module):
    """Max pooling over ``kernel_size`` windows (native). See :func:`max_pool2d` for the rules.

    ``(N, C, H, W)`` -> ``(N, C, oh, ow)``; with ``layout="NHWC"``, ``(N, H, W, C)`` ->
    ``(N, oh, ow, C)`` (channels-last kernels; the NCHW result transposed). 3-D inputs are one
    image. ``backward`` adds each output gradient into the input cell that won its window, so
    cells that win overlapping windows receive the sum.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, layout: str = "NCHW") -> None:
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")
        self.padding = padding
        self.dilation = F._pair(dilation, "dilation")
        self.layout = _layout.layout_of(layout)
        self._input_shape: Optional[Tuple[int, ...]] = None
        self._indices: Optional[np.ndarray] = None
        self._geometry = None
        self._single = False

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation)

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` -> ``(N, C, oh, ow)``, or ``(N, H, W, C)`` -> ``(N, oh, ow, C)`` in NHWC."""
        x, single = _batched(F._array(x, "input"), "input", self.layout)
        x = F._contiguous(x, F._dtype(x))
        g = _pool_geometry(_layout.to_nchw_shape(x.shape, self.layout), **self._args(), layout=self.layout)
        shape = _layout.from_nchw_shape((g.mb, g.ic, g.oh, g.ow), self.layout)
        out = self._buffer("output", shape, x.dtype, self._reuse_output and not single)
        # The indices never leave the layer: always kept.
        y, self._indices = _core.max_pool2d_forward(g, x, out, self._buffer("indices", shape, np.int64))
        self._geometry, self._input_shape, self._single = g, x.shape, single
        return y[0] if single else y

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy (the output's shape) -> dE/dx (the input's shape)."""
        _need_forward(self._indices, "MaxPool2D")
        want = self._indices.shape[1:] if self._single else self._indices.shape
        dy = _check_grad(grad_output, want, "MaxPool2D")
        if not input_grad:
            return None
        dy = F._contiguous(dy[None] if self._single else dy, F._dtype(dy))
        out = self._buffer("grad_input", self._input_shape, dy.dtype, self._reuse_grad and not self._single)
        dx = _core.max_pool2d_backward(self._geometry, self._indices, dy, out)
        return dx[0] if self._single else dx

    def __repr__(self) -> str:
        layout = "" if self.layout == "NCHW" else f", layout={self.layout!r}"
        return (f"MaxPool2D(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{layout})")


class ReLU(Module):
    """``max(x, 0)``; the gradient passes where the output is positive (NaN inputs give 0, as a
    comparison with 0 does). float32/float64 run natively in one pass each way, on convcore's
    threads (the activation and its derivative of the convolutions); other dtypes through a NumPy
    mask."""

    def __init__(self) -> None:
        self._mask: Optional[np.ndarray] = None
        self._output: Optional[np.ndarray] = None

    def forward(self, x) -> np.ndarray:
        x = F._array(x, "input")
        if x.dtype in (np.float32, np.float64):
            out = self._buffer("output", x.shape, x.dtype, self._reuse_output)
            y = _core.activation_forward("relu", F._contiguous(x, x.dtype), out=out)
            self._mask, self._output = None, y
            return y
        self._mask, self._output = x > 0, None
        return np.where(self._mask, x, x.dtype.type(0))

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        if self._output is None:
            _need_forward(self._mask, "ReLU")
            g = _check_grad(grad_output, self._mask.shape, "ReLU")
            return np.where(self._mask, g, g.dtype.type(0)) if input_grad else None
        g = _check_grad(grad_output, self._output.shape, "ReLU")
        if not input_grad:
            return None
        y = self._output
        if g.dtype != y.dtype:
            return np.where(y > 0, g, g.dtype.type(0))
        out = self._buffer("grad_input", y.shape, y.dtype, self._reuse_grad)
        return _core.activation_backward("relu", F._contiguous(g, y.dtype), np.ascontiguousarray(y), out=out)

    def __repr__(self) -> str:
        return "ReLU()"


class Flatten(Module):
    """``(N, d1, d2, ...)`` -> ``(N, d1*d2*...)``; backward restores the shape.

    It flattens whatever it gets, in memory order: an NHWC activation ``(N, H, W, C)`` becomes
    ``(N, H*W*C)`` ordered ``(h, w, c)``, not the ``(c, h, w)`` order of the same activation in
    NCHW, so a following :class:`Linear` trained on one layout needs its weight's columns
    permuted to be used with the other.
    """

    def __init__(self) -> None:
        self._shape: Optional[Tuple[int, ...]] = None

    def forward(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 1:
            msg = "Flatten: expected an array with a batch dimension"
            raise ValueError(msg)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        _need_forward(self._shape, "Flatten")
        n = int(np.prod(self._shape[1:], dtype=np.int64))
        g = _check_grad(grad_output, (self._shape[0], n), "Flatten")
        return g.reshape(self._shape) if input_grad else None

    def __repr__(self) -> str:
        return "Flatten()"


class Linear(WeightBiasModule):
    """Fully connected layer ``y = x W^T + b``: x ``(N, in_features)``, W ``(out, in)``.

    W is drawn, like :class:`Conv2D`'s, uniformly from ``±1/sqrt(in_features)`` with
    ``numpy.random.default_rng(seed)``; b starts at 0. ``backward`` adds ``dy^T x`` and the sum
    of ``dy`` over the batch to the gradients and returns ``dy W``. Native: the products run on
    convcore's GEMM and threads (not NumPy's BLAS).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                 seed: Optional[int] = None):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            msg = f"dtype: expected float32 or float64, got {dtype}"
            raise TypeError(msg)
        in_features, out_features = F._int(in_features, "in_features"), F._int(out_features, "out_features")
        if in_features < 1 or out_features < 1:
            msg = f"in_features={in_features} and out_features={out_features} must be >= 1"
            raise ValueError(msg)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / np.sqrt(in_features)
        w = np.random.default_rng(seed).uniform(-bound, bound, size=(out_features, in_features))
        self.weight_param = Parameter(w.astype(dtype), decay=True, name="weight")
        self.bias_param = Parameter(np.zeros(out_features, dtype), decay=False, name="bias") if bias else None
        self._input: Optional[np.ndarray] = None

    def forward(self, x) -> np.ndarray:
        x = _layer_input(x, self.weight.dtype, "Linear input")
        if x.ndim != 2 or x.shape[1] != self.in_features:
            msg = f"Linear: expected input of shape (N, {self.in_features}), got {x.shape}"
            raise ValueError(msg)
        x = F._contiguous(x, x.dtype)
        self._input = x
        out = self._buffer("output", (x.shape[0], self.out_features), x.dtype, self._reuse_output)
        return _core.linear_forward(x, self.weight, self.bias, out)

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        _need_forward(self._input, "Linear")
        dy = _check_grad(grad_output, (self._input.shape[0], self.out_features), "Linear")
        dy = F._contiguous(dy, self.weight.dtype)
        out = self._buffer("grad_input", self._input.shape, dy.dtype, input_grad and self._reuse_grad)
        dx, _, _ = _core.linear_backward(self._input, self.weight, dy, weight_out=self.grad_weight,
                                         bias_out=self.grad_bias, accumulate=True,
                                         input_grad=input_grad, input_out=out)
        return dx

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias_param is not None})"


class SoftmaxCrossEntropy:
    """Softmax followed by the cross-entropy with integer class labels.

    ``forward(logits, labels)`` takes logits ``(N, classes)`` and labels ``(N,)`` in
    ``[0, classes)`` and returns the loss as a float: the mean over the batch (``reduction=
    "mean"``) or the sum (``"sum"``), computed stably (log-sum-exp after subtracting the row
    maximum). ``backward(grad=1.0)`` returns ``grad * dloss/dlogits`` (``(softmax - onehot) / N``
    for the mean); ``grad`` is the weight of this loss in a larger one — e.g. ``n_i / N`` for a
    micro-batch of ``n_i`` of the ``N`` samples of a batch.
    """

    def __init__(self, reduction: str = "mean"):
        if reduction not in ("mean", "sum"):
            msg = f"reduction: expected 'mean' or 'sum', got {shown(reduction)}"
            raise ValueError(msg)
        self.reduction = reduction
        self._probs: Optional[np.ndarray] = None
        self._labels: Optional[np.ndarray] = None

    def forward(self, logits, labels) -> float:
        z = np.asarray(logits)
        if z.ndim != 2 or z.shape[0] < 1 or z.dtype.kind != "f":
            msg = f"logits: expected a non-empty float array (N, classes), got {z.dtype} {z.shape}"
            raise ValueError(msg)
        y = np.asarray(labels)
        if y.shape != (z.shape[0],) or y.dtype.kind not in "iu":
            msg = f"labels: expected integers of shape ({z.shape[0]},), got {y.dtype} {y.shape}"
            raise ValueError(msg)
        if y.min() < 0 or y.max() >= z.shape[1]:
            msg = f"labels: expected values in [0, {z.shape[1]}), got [{y.min()}, {y.max()}]"
            raise ValueError(msg)
        shifted = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probs = shifted - log_norm
        self._probs = np.exp(log_probs)
        self._labels = y
        losses = -log_probs[np.arange(z.shape[0]), y]
        return float(losses.mean() if self.reduction == "mean" else losses.sum())

    __call__ = forward

    def backward(self, grad: float = 1.0) -> np.ndarray:
        _need_forward(self._probs, "SoftmaxCrossEntropy")
        n = self._probs.shape[0]
        d = self._probs.copy()
        d[np.arange(n), self._labels] -= 1
        scale = float(grad) / n if self.reduction == "mean" else float(grad)
        d *= d.dtype.type(scale)
        return d

    def __repr__(self) -> str:
        return f"SoftmaxCrossEntropy(reduction={self.reduction!r})"


# ---------------------------------------------------------------------------------- Sequential


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    Parameters are named ``"<layer index>.<parameter name>"`` (``"0.weight"``, ``"4.bias"``);
    :meth:`state_dict` / :meth:`load_state_dict` and :meth:`save` / :meth:`load` (``.npz``)
    use these names and round-trip every value exactly.
    """

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            if not all(callable(getattr(layer, a, None)) for a in ("forward", "backward", "parameters")):
                msg = (f"Sequential: layer {i} ({type(layer).__name__}) needs forward, backward "
                       "and parameters methods")
                raise TypeError(msg)
        self.layers = list(layers)
        # Whether each layer's backward takes input_grad (user layers may not).
        self._skips_input_grad = [_takes_input_grad(layer) for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self) -> Iterator:
        return iter(self.layers)

    def forward(self, x) -> np.ndarray:
        """Runs the layers in order. Every output but the last goes only to the next layer, so
        those layers write it into buffers they keep from step to step (see
        :class:`~convcore.Module`); the array returned is new."""
        last = len(self.layers) - 1
        with one_blas_thread():
            for i, layer in enumerate(self.layers):
                x = _call(layer, "_reuse_output", i < last or self._reuse_output, layer.forward, x)
        return x

    @overload
    def backward(self, grad_output: Any, input_grad: Literal[True]) -> np.ndarray: ...

    @overload
    def backward(self, grad_output: Any, input_grad: bool = False) -> Optional[np.ndarray]: ...

    def backward(self, grad_output: Any, input_grad: bool = False) -> Optional[np.ndarray]:
        """Runs the layers' backward passes in reverse order and returns dE/d(input) when
        ``input_grad`` is True; by default the first layer's input gradient, which training does
        not use, is not computed and None is returned."""
        with one_blas_thread():
            g = grad_output
            for i in range(len(self.layers) - 1, 0, -1):
                layer = self.layers[i]
                g = _call(layer, "_reuse_grad", True, layer.backward, g)
            first = self.layers[0]
            if input_grad:
                return _call(first, "_reuse_grad", self._reuse_grad, first.backward, g)
            if self._skips_input_grad[0]:
                return first.backward(g, input_grad=False)
            first.backward(g)
            return None

    def parameters(self) -> List[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def _children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def save(self, path: PathLike) -> None:
        """Writes the parameters to ``path`` as an uncompressed ``.npz`` (exactly that path)."""
        with open(path, "wb") as f:
            np.savez(f, **self.state_dict())

    def load(self, path: PathLike) -> None:
        """Reads parameters written by :meth:`save` (see :meth:`load_state_dict` for the checks)."""
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            msg = f"load: {os.fspath(path)!r} holds a single array, expected an .npz archive"
            raise ValueError(msg)
        with data:
            state = {k: data[k] for k in data.files}
        self.load_state_dict(state)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


# ------------------------------------------------------------------------------------ training


class _Optimizer(Protocol):
    """What :func:`train_step` needs of an optimiser: an :class:`~convcore.SGD`, or a
    ``convcore.distributed.DistributedOptimizer`` wrapping one."""

    def step(self) -> Any: ...


def train_step(model: Module, loss_fn: SoftmaxCrossEntropy, optimizer: _Optimizer, x, labels,
               micro_batches: int = 1) -> Tuple[float, int]:
    """One optimiser step on a batch, computed in ``micro_batches`` pieces.

    Clears the gradients, runs forward and backward on each of ``micro_batches`` consecutive
    slices of ``x``/``labels`` (sizes differ by at most one), weighting each slice's loss
    gradient by its share of the batch, then calls ``optimizer.step()`` once. The update equals
    that of the whole batch in one piece, to rounding; only the memory held at once shrinks.
    Returns the batch's mean loss and the number of correct predictions (argmax of the logits).
    """
    x = np.asarray(x)
    labels = np.asarray(labels)
    n = x.shape[0]
    k = F._int(micro_batches, "micro_batches")
    if not 1 <= k <= max(n, 1) or labels.shape[:1] != (n,):
        msg = f"train_step: need 1 <= micro_batches <= batch size {n} and {n} labels, got {k}, {labels.shape}"
        raise ValueError(msg)
    with one_blas_thread():
        model.zero_grad()
        loss, correct = 0.0, 0
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            logits = model.forward(x[lo:hi])
            # A mean over the batch is the slices' means weighted by their shares; a sum just adds.
            share = (hi - lo) / n if loss_fn.reduction == "mean" else 1.0
            loss += loss_fn.forward(logits, labels[lo:hi]) * share
            model.backward(loss_fn.backward(share))
            correct += int(np.count_nonzero(logits.argmax(axis=1) == labels[lo:hi]))
        optimizer.step()
    return float(loss), correct

