"""Layer objects: the convolution layer with its parameters, gradients and update."""

from __future__ import annotations

import inspect

from typing import Dict, List, Optional, Tuple

import numpy as np

from . import _core
from . import functional as F
from ._layout import layout_of
from ._shown import shown
from .functional_1d import _one, conv1d, conv1d_backward, conv1d_bias, conv1d_weight
from .functional_transposed import (
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose2d_bias,
    conv_transpose2d_weight,
)
from .padding import check_padding_mode, pad, pad_backward
from .plan import Conv2dPlan
from .optim import SGD, Parameter
from ._public import public_dir as _public_dir

__all__ = ["Conv1D", "Conv2D", "ConvTranspose2D", "Module", "WeightBiasModule"]
__dir__ = _public_dir(globals())


class Module:
    """Base of the layers: ``forward``, ``backward``, ``parameters`` and ``zero_grad``.

    ``forward(x)`` computes the output and keeps what ``backward`` needs; ``backward(grad,
    input_grad=True)`` takes dE/d(output), **adds** the layer's parameter gradients to their
    buffers and returns dE/d(input) for the layer below (None, and not computed, with
    ``input_grad=False``). Layers without parameters inherit the empty list.

    Buffers: an array a layer returns is new unless a container (:class:`~convcore.nn.Sequential`)
    has said, for the duration of its own call, that the array goes only to a neighbouring layer
    (``_reuse_output`` for forward, ``_reuse_grad`` for backward). The layer then writes it into a
    buffer it keeps for the next step of the same shape: no allocation and no page faults after
    the first step. Arrays that never leave the layer (a pooling layer's indices) are always kept.

    Modes: ``train()`` / ``eval()`` set ``training`` on the layer and its sub-layers (batch
    normalisation and dropout behave differently in each). State: ``named_parameters()``,
    ``named_buffers()`` (non-trainable state, such as batch normalisation's running statistics)
    and ``state_dict()`` / ``load_state_dict()`` with PyTorch's dotted names
    (``"<sub-layer>.<name>"``), exact round trips and a ValueError naming the key on a mismatch.
    """

    _reuse_output = False
    _reuse_grad = False
    training = True

    def _children(self) -> List[Tuple[str, object]]:
        """The named sub-layers (containers override this); their state is prefixed by the name."""
        return []

    def _own_buffers(self) -> List[Tuple[str, np.ndarray]]:
        """The layer's own buffers, ``(name, array)``, updated in place by the layer."""
        return []

    def train(self, mode: bool = True) -> "Module":
        """Sets training mode (``mode=True``) or evaluation mode on this layer and its sub-layers;
        returns the layer."""
        self.training = bool(mode)
        for _, child in self._children():
            if callable(getattr(child, "train", None)):
                child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output, input_grad: bool = True):
        raise NotImplementedError

    def _buffer(self, key: str, shape, dtype, keep: bool = True) -> Optional[np.ndarray]:
        """The layer's kept buffer ``key`` of ``shape`` and ``dtype`` (made, or remade when the
        shape changes), or None when ``keep`` is False (the op then returns a new array)."""
        if not keep:
            return None
        buffers = self.__dict__.setdefault("_buffers", {})
        shape = tuple(shape)
        b = buffers.get(key)
        if b is None or b.shape != shape or b.dtype != dtype:
            b = buffers[key] = np.empty(shape, dtype)
        return b

    def parameters(self) -> List[Parameter]:
        """The trainable parameters, in a fixed order."""
        return []

    def named_parameters(self) -> List[Tuple[str, Parameter]]:
        """``(name, parameter)`` pairs in the order of :meth:`parameters`: a layer's own by their
        names (their position where a name is missing or repeated), a sub-layer's prefixed by
        the sub-layer's name (``"0.weight"``, ``"block.1.bias"``)."""
        children = self._children()
        if not children:
            return _named(self.parameters())
        out = []
        for prefix, child in children:
            inner = child.named_parameters() if isinstance(child, Module) else _named(child.parameters())
            out.extend((f"{prefix}.{name}", p) for name, p in inner)
        return out

    def named_buffers(self) -> List[Tuple[str, np.ndarray]]:
        """``(name, array)`` of the non-trainable state (the arrays themselves), named as
        :meth:`named_parameters`."""
        out = list(self._own_buffers())
        for prefix, child in self._children():
            if isinstance(child, Module):
                out.extend((f"{prefix}.{name}", b) for name, b in child.named_buffers())
        return out

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by name."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update((name, np.array(b, copy=True)) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state) -> None:
        """Copies ``state`` into the parameters and buffers, in place (optimisers keep their
        references).

        The names, shapes and dtypes must match exactly; otherwise ValueError naming the key and
        what is expected, and nothing is changed.
        """
        targets = {name: p.data for name, p in self.named_parameters()}
        targets.update(self.named_buffers())
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            msg = (f"load_state_dict: parameter names do not match this network: "
                   f"missing {missing}, unexpected {unexpected}")
            raise ValueError(msg)
        arrays = {}
        for name, target in targets.items():
            a = np.asarray(state[name])
            if a.shape != target.shape or a.dtype != target.dtype:
                msg = (f"load_state_dict: {name!r} is {a.dtype} {a.shape}, the network expects "
                       f"{target.dtype} {target.shape}")
                raise ValueError(msg)
            arrays[name] = a
        for name, target in targets.items():
            np.copyto(target, arrays[name])

    def zero_grad(self) -> None:
        """Clears the accumulated gradients of every parameter."""
        for p in self.parameters():
            p.zero_grad()

    def __call__(self, x):
        return self.forward(x)


def _named(params) -> List[Tuple[str, Parameter]]:
    """Parameters by their names; by their position where a name is missing or repeated."""
    params = list(params)
    names = [getattr(p, "name", "") for p in params]
    return [(n if n and names.count(n) == 1 else str(j), p) for j, (n, p) in enumerate(zip(names, params))]


class WeightBiasModule(Module):
    """A layer with a weight and an optional bias: ``weight_param`` and ``bias_param``
    (:class:`Parameter`), their arrays and gradient buffers, and ``parameters()``."""

    weight_param: Parameter
    bias_param: Optional[Parameter]

    @property
    def weight(self) -> np.ndarray:
        return self.weight_param.data

    @property
    def bias(self) -> Optional[np.ndarray]:
        return None if self.bias_param is None else self.bias_param.data

    @property
    def grad_weight(self) -> np.ndarray:
        return self.weight_param.grad

    @property
    def grad_bias(self) -> Optional[np.ndarray]:
        return None if self.bias_param is None else self.bias_param.grad

    def parameters(self) -> List[Parameter]:
        """The trainable parameters: weight, then bias (when the layer has one)."""
        return [p for p in (self.weight_param, self.bias_param) if p is not None]

    def step(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        """One SGD update of W and b from the accumulated gradients (velocity kept in the layer)."""
        SGD(self.parameters(), lr, momentum, weight_decay).step()

    def _grad_output(self, grad_output, kept: str) -> np.ndarray:
        """dE/d(output) checked against the shape of what forward kept in attribute ``kept`` (the
        output, or its shape) and cast to the layer's dtype: a convolution layer's backward
        preamble."""
        if getattr(self, "_input", None) is None:
            msg = "backward: call forward first"
            raise RuntimeError(msg)
        shape = getattr(self, kept)
        shape = getattr(shape, "shape", shape)
        dy = np.asarray(grad_output)
        if dy.shape != tuple(shape):
            msg = f"grad_output: expected shape {tuple(shape)}, got {dy.shape}"
            raise ValueError(msg)
        return dy.astype(self.weight.dtype, copy=False)


class Conv2D(WeightBiasModule):
    """A 2-D convolution layer: ``a = f(conv(x, W) + b)`` with its training step.

    ``forward(x)`` takes ``(N, in_channels, H, W)`` (or one ``(C, H, W)`` sample) and returns
    ``(N, out_channels, oh, ow)``. ``backward(grad_output)`` takes dE/da of that shape, applies
    the activation's derivative, **adds** the weight and bias gradients to ``grad_weight`` /
    ``grad_bias`` and returns dE/dx for the layer below. ``zero_grad()`` clears the gradients;
    ``step(lr, ...)`` or ``convcore.SGD(layer.parameters(), lr).step()`` updates W and b.

    Weights ``(out_channels, in_channels/groups, kh, kw)`` are drawn, like PyTorch's default,
    uniformly from ``±1/sqrt(fan_in)`` (He-scaled ``±sqrt(6/fan_in)`` when activation is
    ``"relu"``), from ``numpy.random.default_rng(seed)``; biases start at 0.

    ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, as
    ``torch.nn.Conv2d``: the other modes pad the input explicitly, and the plan is then that of
    the padded input with no padding.

    ``layout="NHWC"``: activations are channels last, ``(N, H, W, in_channels)`` (or
    ``(H, W, C)``) in and ``(N, oh, ow, out_channels)`` out, computed natively; the weights keep
    their shape.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, activation: Optional[str] = None,
                 dtype=np.float32, seed: Optional[int] = None, method: str = "auto",
                 padding_mode: str = "zeros", layout: str = "NCHW"):
        self.layout = layout_of(layout)
        F._activation(activation)
        kh, kw = F._pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.activation = activation
        self.method = method
        self.padding_mode = check_padding_mode(padding_mode)
        self._pads = None  # explicit per-side padding of the last input (padding modes)
        _layer_params(self, in_channels, out_channels, groups, lambda icg, ocg: (out_channels, icg, kh, kw),
                      activation == "relu", bias, dtype, seed)
        self._input: Optional[np.ndarray] = None
        self._output: Optional[np.ndarray] = None
        self._plan = None  # the plan of the last input shape

    def plan(self, input_shape) -> Conv2dPlan:
        """The layer's plan for inputs of ``input_shape`` (made on first use, kept while the shape
        stays the same): the paths its forward and backward passes take (``plan(...).describe()``).
        With a ``padding_mode`` other than ``"zeros"``, ``input_shape`` is the padded input's."""
        shape = tuple(input_shape)
        if self._plan is None or self._plan.input_shape != shape:
            self._plan = Conv2dPlan(shape, self.weight.shape, dtype=self.weight.dtype,
                                    activation=self.activation, bias=self.bias_param is not None,
                                    paths={"backward_input": self.method}, layout=self.layout,
                                    **self._conv_args())
        return self._plan

    def _conv_args(self):
        padding = self.padding if self.padding_mode == "zeros" else 0  # else the input is padded
        return dict(stride=self.stride, padding=padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` or ``(C, H, W)`` (NHWC: ``(N, H, W, C)`` or ``(H, W, C)``) ->
        activation of the convolution, kept for backward."""
        x = _layer_input(x, self.weight.dtype)
        if x.ndim not in (3, 4):
            F._batched(x, "input", self.layout)  # raises with the expected layouts
        self._check_channels(x)
        if self.padding_mode != "zeros":
            self._pads = F._explicit_pads(x.shape, self.weight.shape, self.stride, self.padding, self.dilation,
                                          self.padding_mode, self.layout)
            x = pad(x, self._pads, self.padding_mode, self.layout)
        plan = self.plan(x.shape)
        out = self._buffer("output", plan.output_shape, x.dtype, self._reuse_output)
        y = plan.forward(x, self.weight, self.bias, out=out)
        self._input, self._output = x, y
        return y

    __call__ = forward

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/da -> dE/dx (None with ``input_grad=False``); adds dE/dW and dE/db to the gradient
        buffers."""
        dy = F._contiguous(self._grad_output(grad_output, "_output"), self.weight.dtype)
        if self.activation not in (None, "identity"):
            delta = self._buffer("delta", dy.shape, dy.dtype)  # never leaves the layer
            dy = _core.activation_backward(self.activation, dy, self._output, out=delta)
        plan = self.plan(self._input.shape)
        # Under a padding mode the plan's dx (the padded input's) never leaves the layer: kept.
        keep = self._reuse_grad or (self.padding_mode != "zeros" and any(self._pads))
        dx_out = self._buffer("grad_input", plan.input_shape, dy.dtype, input_grad and keep)
        dx, _, _ = plan.backward(
            self._input, self.weight, dy, weight_out=self.grad_weight, bias_out=self.grad_bias,
            accumulate=True, input_out=dx_out, input_grad=input_grad)
        if self.padding_mode == "zeros" or dx is None:
            return dx
        # the padded input's gradient folded back
        return pad_backward(dx, self._pads, self.padding_mode, self.layout)

    def _check_channels(self, x: np.ndarray) -> None:
        axis, other = (x.ndim - 1, x.ndim - 3) if self.layout == "NHWC" else (x.ndim - 3, x.ndim - 1)
        c = x.shape[axis]
        if c != self.in_channels:
            hint = ""
            if x.shape[other] == self.in_channels:
                hint = (" (an NCHW array? this layer was made with layout='NHWC', (N, H, W, C))"
                        if self.layout == "NHWC" else " (an NHWC array? convcore takes (N, C, H, W))")
            msg = f"input: expected {self.in_channels} channels on axis {axis} for {self!r}, got {c}{hint}"
            raise ValueError(msg)

    def __repr__(self) -> str:
        mode = "" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"
        layout = "" if self.layout == "NCHW" else f", layout={self.layout!r}"
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}{mode}, activation={self.activation!r}{layout})")


def _takes_input_grad(layer) -> bool:
    """Whether layer.backward takes the input_grad flag (user layers may not)."""
    try:
        return "input_grad" in inspect.signature(layer.backward).parameters
    except (TypeError, ValueError):
        return False


def _call(layer, flag: str, reuse: bool, method, arg):
    """``method(arg)`` with the layer's reuse flag set for the call (layers of the Module
    protocol only; other objects are called as they are)."""
    if not reuse or not isinstance(layer, Module):
        return method(arg)
    setattr(layer, flag, True)
    try:
        return method(arg)
    finally:
        setattr(layer, flag, False)


def _layer_input(x, dtype: np.dtype, name: str = "input") -> np.ndarray:
    """``x`` in the layer's dtype; widening is fine, narrowing (float64 into float32) is refused."""
    x = np.asarray(x)
    if x.dtype != dtype:
        if x.dtype.kind not in "fiu" or not np.can_cast(x.dtype, dtype, "safe"):
            msg = f"{name}: dtype {x.dtype} would be narrowed to the layer's {dtype}"
            raise TypeError(msg)
        x = x.astype(dtype)
    return x


def _need_forward(state, name: str) -> None:
    if state is None:
        msg = f"{name}.backward: call forward first"
        raise RuntimeError(msg)


def _check_grad(grad_output, shape, name: str) -> np.ndarray:
    g = np.asarray(grad_output)
    if g.shape != tuple(shape):
        msg = f"{name}.backward: grad_output must have shape {tuple(shape)}, got {g.shape}"
        raise ValueError(msg)
    return g


def _layer_params(layer: WeightBiasModule, in_channels: int, out_channels: int, groups: int, w_shape,
                  relu: bool, bias: bool, dtype, seed) -> None:
    """Checks the channel counts, then draws the weight of ``w_shape`` uniformly from
    ``±1/sqrt(fan_in)`` (``±sqrt(6/fan_in)`` before a ReLU), ``fan_in`` the product of the
    weight's axes after the first, as PyTorch; the bias starts at 0."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        msg = f"dtype: expected float32 or float64, got {dtype}"
        raise TypeError(msg)
    if in_channels < 1 or out_channels < 1 or groups < 1 or in_channels % groups or out_channels % groups:
        msg = (f"in_channels={in_channels} and out_channels={out_channels} must be >= 1 and "
               f"divisible by groups={groups}")
        raise ValueError(msg)
    shape = tuple(w_shape(in_channels // groups, out_channels // groups))
    if min(shape) < 1:
        msg = f"kernel_size: must be >= 1, got weight shape {shape}"
        raise ValueError(msg)
    fan_in = int(np.prod(shape[1:]))
    bound = np.sqrt(6.0 / fan_in) if relu else 1.0 / np.sqrt(fan_in)
    w = np.random.default_rng(seed).uniform(-bound, bound, size=shape)
    layer.weight_param = Parameter(w.astype(dtype), decay=True, name="weight")
    layer.bias_param = Parameter(np.zeros(out_channels, dtype), decay=False, name="bias") if bias else None


class Conv1D(WeightBiasModule):
    """A 1-D convolution layer ``a = f(conv1d(x, W) + b)`` (the 2-D core with height 1).

    ``forward(x)`` takes ``(N, in_channels, L)`` (or one ``(C, L)`` sample) and returns
    ``(N, out_channels, ol)``; ``backward(grad_output)`` applies the activation's derivative,
    **adds** the weight and bias gradients to ``grad_weight`` / ``grad_bias`` and returns dE/dx.
    Arguments as ``torch.nn.Conv1d`` (``padding`` also ``"valid"``, ``"same"`` or a pair
    ``(left, right)``; ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"``,
    ``"circular"``), plus ``activation`` and ``method`` as :class:`Conv2D`.

    Weights ``(out_channels, in_channels/groups, k)`` are drawn uniformly from ``±1/sqrt(fan_in)``
    with ``fan_in = in_channels/groups * k`` (PyTorch's bound; ``±sqrt(6/fan_in)`` for ``"relu"``)
    from ``numpy.random.default_rng(seed)``; biases start at 0.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 activation: Optional[str] = None, dtype=np.float32, seed: Optional[int] = None,
                 method: str = "auto"):
        F._activation(activation)
        k = _one(kernel_size, "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.padding_mode = check_padding_mode(padding_mode)
        self.activation, self.method = activation, method
        _layer_params(self, in_channels, out_channels, groups, lambda icg, ocg: (out_channels, icg, k),
                      activation == "relu", bias, dtype, seed)
        self._input: Optional[np.ndarray] = None
        self._output: Optional[np.ndarray] = None

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode)

    def forward(self, x) -> np.ndarray:
        """``(N, C, L)`` or ``(C, L)`` -> activation of the convolution, kept for backward."""
        x = _layer_input(x, self.weight.dtype)
        if x.ndim not in (2, 3) or x.shape[-2] != self.in_channels:
            msg = f"input: expected (N, {self.in_channels}, L) or ({self.in_channels}, L) for {self!r}, got {x.shape}"
            raise ValueError(msg)
        y = conv1d(x, self.weight, self.bias, activation=self.activation, **self._args())
        self._input, self._output = x, y
        return y

    __call__ = forward

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/da -> dE/dx (None, and not computed, with ``input_grad=False``); adds dE/dW and
        dE/db to the gradient buffers."""
        dy = self._grad_output(grad_output, "_output")
        if self.activation not in (None, "identity"):
            dy = F.activation_backward(dy, self._output, self.activation)
        if not input_grad:
            conv1d_weight(self._input, self.weight.shape, dy, out=self.grad_weight, accumulate=True, **self._args())
            if self.bias_param is not None:
                conv1d_bias(dy, out=self.grad_bias, accumulate=True)
            return None
        dx, _, _ = conv1d_backward(self._input, self.weight, dy, bias=self.bias_param is not None,
                                   method=self.method, weight_out=self.grad_weight, bias_out=self.grad_bias,
                                   accumulate=True, **self._args())
        return dx

    def __repr__(self) -> str:
        return (f"Conv1D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, padding_mode={self.padding_mode!r}, "
                f"activation={self.activation!r})")


class ConvTranspose2D(WeightBiasModule):
    """A transposed 2-D convolution layer, as ``torch.nn.ConvTranspose2d`` (see
    :func:`convcore.conv_transpose2d`).

    ``forward(x)`` takes ``(N, in_channels, H, W)`` (or ``(C, H, W)``) and returns
    ``(N, out_channels, oh, ow)``, ``oh = (H-1)*sh - 2*ph + dh*(kh-1) + output_padding_h + 1``;
    ``backward(grad_output)`` **adds** the weight and bias gradients to ``grad_weight`` /
    ``grad_bias`` and returns dE/dx. ``method`` picks the path of the forward pass
    (``"auto"``, ``"flip"``, ``"col2im"``).

    Weights ``(in_channels, out_channels/groups, kh, kw)`` are drawn, as PyTorch's, uniformly
    from ``±1/sqrt(fan_in)`` with ``fan_in = out_channels/groups * kh * kw`` (the weight's second
    axis) from ``numpy.random.default_rng(seed)``; biases start at 0.

    ``layout="NHWC"``: activations are channels last, ``(N, H, W, in_channels)`` in and
    ``(N, oh, ow, out_channels)`` out, computed natively; the weights keep their shape.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, dtype=np.float32,
                 seed: Optional[int] = None, method: str = "auto", layout: str = "NCHW"):
        self.layout = layout_of(layout)
        if method not in F.METHODS:
            msg = f"method: expected one of {F.METHODS}, got {shown(method)}"
            raise ValueError(msg)
        kh, kw = F._pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups, self.dilation, self.method = groups, dilation, method
        _layer_params(self, in_channels, out_channels, groups, lambda icg, ocg: (in_channels, ocg, kh, kw),
                      False, bias, dtype, seed)
        self._input: Optional[np.ndarray] = None
        self._output_shape = None

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation, layout=self.layout)

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` or ``(C, H, W)`` (NHWC: ``(N, H, W, C)`` or ``(H, W, C)``) -> the
        transposed convolution; the input is kept."""
        x = _layer_input(x, self.weight.dtype)
        nhwc = self.layout == "NHWC"
        if x.ndim not in (3, 4) or x.shape[-1 if nhwc else -3] != self.in_channels:
            c = self.in_channels
            want = f"(N, H, W, {c}) or (H, W, {c})" if nhwc else f"(N, {c}, H, W) or ({c}, H, W)"
            msg = f"input: expected {want} for {self!r}, got {x.shape}"
            raise ValueError(msg)
        y = conv_transpose2d(x, self.weight, self.bias, method=self.method, **self._args())
        self._input, self._output_shape = x, y.shape
        return y

    __call__ = forward

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy -> dE/dx (None, and not computed, with ``input_grad=False``); adds dE/dW and
        dE/db to the gradient buffers."""
        dy = self._grad_output(grad_output, "_output_shape")
        if not input_grad:
            conv_transpose2d_weight(self._input, self.weight.shape, dy, out=self.grad_weight, accumulate=True,
                                    **self._args())
            if self.bias_param is not None:
                conv_transpose2d_bias(dy, out=self.grad_bias, accumulate=True, layout=self.layout)
            return None
        dx, _, _ = conv_transpose2d_backward(self._input, self.weight, dy, bias=self.bias_param is not None,
                                             weight_out=self.grad_weight, bias_out=self.grad_bias,
                                             accumulate=True, **self._args())
        return dx

    def __repr__(self) -> str:
        layout = "" if self.layout == "NCHW" else f", layout={self.layout!r}"
        return (f"ConvTranspose2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}{layout})")
