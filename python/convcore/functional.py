"""PyTorch-style functions over NumPy arrays: the convolution, its gradients and the update.

Layouts (PyTorch's): input ``(N, C, H, W)`` or one sample ``(C, H, W)``; weight
``(out_channels, in_channels / groups, kh, kw)``; bias ``(out_channels,)``; output and
grad_output ``(N, out_channels, oh, ow)``. With ``layout="NHWC"`` the activations are channels
last: input ``(N, H, W, C)`` or ``(H, W, C)``, output and grad_output ``(N, oh, ow, out_channels)``,
computed natively in that layout (no transposition); weights and biases are the same in both.

Arguments shared by the functions:

- ``stride``, ``dilation``: an int or a pair ``(h, w)``.
- ``padding``: an int, a pair ``(ph, pw)``, per-side pairs ``((top, bottom), (left, right))``,
  ``"valid"`` (no padding) or ``"same"`` (output size ``ceil(input / stride)``; the extra row or
  column goes to the bottom/right when the total is odd, as TensorFlow does).

dtypes: computations run in float32 or float64. Inputs of other real dtypes are promoted as NumPy
would (float16 -> float32, integers -> float64; float32 with float64 -> float64); nothing is
narrowed. Bool, complex, object and string arrays are refused with TypeError. Output buffers
(``out=``, SGD parameters) must already have the exact dtype and be C-contiguous and writeable.
"""

from __future__ import annotations

import functools
import operator
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._layout import from_nchw_shape, layout_of, to_nchw_shape
from ._shown import shown
from .padding import check_padding_mode, pad, pad_backward

IntPair = Union[int, Tuple[int, int]]
Padding = Union[int, str, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]

from ._public import public_dir as _public_dir

__all__ = [
    "conv2d",
    "conv2d_input",
    "conv2d_weight",
    "conv2d_bias",
    "conv2d_backward",
    "activation_backward",
    "expand_stride",
    "flip_kernels",
    "im2col",
    "col2im",
    "sgd_update",
    "output_size",
]
__dir__ = _public_dir(globals())

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")
METHODS = ("auto", "flip", "col2im")


# --------------------------------------------------------------------------- argument normalising


def _int(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        msg = f"{name}: expected an int, got {shown(value)}"
        raise TypeError(msg) from None


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            msg = f"{name}: expected an int or a pair of ints, got {shown(value)}"
            raise ValueError(msg)
        return _int(value[0], name), _int(value[1], name)
    v = _int(value, name)
    return v, v


def _same_padding(size: int, k: int, s: int, d: int) -> Tuple[int, int]:
    if s < 1 or d < 1:  # refused with the geometry; nothing to compute
        return 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(padding, ih, iw, kh, kw, sh, sw, dh, dw) -> Tuple[int, int, int, int]:
    """Per-side padding (top, bottom, left, right) from any accepted form."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            return _same_padding(ih, kh, sh, dh) + _same_padding(iw, kw, sw, dw)
        msg = f"padding: expected an int, a pair, 'valid' or 'same', got {shown(padding)}"
        raise ValueError(msg)
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
        isinstance(p, (tuple, list)) for p in padding
    ):
        (pt, pb), (pl, pr) = (_pair(p, "padding") for p in padding)
        return pt, pb, pl, pr
    ph, pw = _pair(padding, "padding")
    return ph, ph, pw, pw


def _array(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        msg = f"{name}: expected a real numeric array, got dtype {arr.dtype}"
        raise TypeError(msg)
    return arr


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(*arrays: Optional[np.ndarray]) -> np.dtype:
    """The computation dtype: NumPy's promotion of the inputs, at least float32."""
    first = arrays[0].dtype
    if first in _FLOAT_DTYPES:
        for a in arrays:
            if a is not None and a.dtype != first:
                break
        else:
            return first  # the common case, without the cost of result_type
    dt = np.result_type(*(a.dtype for a in arrays if a is not None), np.float32)
    if dt not in (np.float32, np.float64):
        msg = f"dtype {dt} is not supported: convcore computes in float32 or float64"
        raise TypeError(msg)
    return dt


def _contiguous(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


_DIMS = {"NCHW": ("(N, C, H, W)", "(C, H, W)"), "NHWC": ("(N, H, W, C)", "(H, W, C)")}


def _batched(x: np.ndarray, name: str, layout: str = "NCHW") -> Tuple[np.ndarray, bool]:
    """(N, C, H, W) as is; (C, H, W) as a batch of one (and a flag to drop it again); with
    layout "NHWC", (N, H, W, C) and (H, W, C)."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x[None], True
    four, three = _DIMS[layout]
    msg = f"{name}: expected a 4-D {four} or 3-D {three} array, got shape {x.shape}"
    raise ValueError(msg)


def _grad_output(grad_output, single: bool, layout: str = "NCHW") -> np.ndarray:
    """grad_output as an array, batched like the input it goes with (a 3-D one when the input
    was a single sample: its shape is then checked by the caller against the batched one)."""
    dy = _array(grad_output, "grad_output")
    return _batched(dy, "grad_output", layout)[0] if single else dy


def _spatial(size, name: str) -> Tuple[int, int]:
    """``(H, W)`` from an int, a pair, or a full shape whose last two entries are used."""
    if isinstance(size, (tuple, list)):
        if len(size) < 2:
            msg = f"{name}: expected an int, (H, W) or a shape ending in (H, W), got {shown(size)}"
            raise ValueError(msg)
        return _int(size[-2], name), _int(size[-1], name)
    try:
        v = operator.index(size)
    except TypeError:
        msg = f"{name}: expected an int, (H, W) or a shape ending in (H, W), got {shown(size)}"
        raise TypeError(msg) from None
    return v, v


def _size(size, name: str, layout: str = "NCHW") -> Tuple[Tuple[int, int, int, int], bool]:
    """A 4-D shape in ``layout`` from a 4-D or (one sample) 3-D one, and whether it was 3-D."""
    dims = tuple(_int(v, name) for v in size)
    if len(dims) == 4:
        return dims, False
    if len(dims) == 3:
        return (1, *dims), True
    four, three = _DIMS[layout]
    msg = f"{name}: expected {four} or {three}, got {tuple(size)}"
    raise ValueError(msg)


def _weight_shape(weight_size, name: str) -> Tuple[int, int, int, int]:
    try:
        dims = tuple(map(operator.index, weight_size))
    except TypeError:
        dims = tuple(_int(v, name) for v in weight_size)
    if len(dims) != 4:
        msg = f"{name}: expected a 4-D (out_channels, in_channels/groups, kh, kw), got {dims}"
        raise ValueError(msg)
    return dims


def _geometry(x_shape, w_shape, stride, padding, dilation, groups, layout="NCHW") -> "_core.Geometry":
    """The one place arguments become a geometry. It is not validated here: the native code
    validates it, once, where it is used (a plan when it is made, the helper ops per call).
    ``x_shape`` is 4-D in ``layout`` ("NCHW" or "NHWC", already normalised by ``layout_of``).

    Recent geometries are cached (a training loop asks for the same few again and again); the
    cache is keyed on the arguments as given, so unhashable ones (lists) skip it.
    """
    try:
        return _geometry_cached(x_shape, w_shape, stride, padding, dilation, groups, layout)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
    return _make_geometry(x_shape, w_shape, stride, padding, dilation, groups, layout)


def _make_geometry(x_shape, w_shape, stride, padding, dilation, groups, layout="NCHW") -> "_core.Geometry":
    mb, ic, ih, iw = to_nchw_shape(tuple(x_shape), layout)
    oc, icg, kh, kw = w_shape
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    groups = _int(groups, "groups")
    if groups >= 1 and ic % groups == 0 and icg * groups != ic:
        msg = (
            f"weight: expected shape (out_channels, {ic // groups}, kh, kw) for {ic} input "
            f"channels and groups={groups}, got {tuple(w_shape)}"
        )
        raise ValueError(msg)
    pt, pb, pl, pr = _padding(padding, ih, iw, kh, kw, sh, sw, dh, dw)
    return _core.Geometry(mb, ic, ih, iw, oc, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups, layout)


_geometry_cached = functools.lru_cache(maxsize=512)(_make_geometry)


def _make_plan(x_shape, w_shape, stride, padding, dilation, groups, dtype, activation, bias, method,
               layout="NCHW"):
    g = _geometry(x_shape, w_shape, stride, padding, dilation, groups, layout)
    forced = "" if method == "auto" else method
    return _core.Conv2dPlan(g, np.dtype(dtype).name, False, activation, bias, "", forced, "", "")


_plan_cached = functools.lru_cache(maxsize=64)(_make_plan)


def _plan(x_shape, w_shape, stride, padding, dilation, groups, dtype, activation="identity", bias=True,
          method="auto", layout="NCHW") -> "_core.Conv2dPlan":
    """The plan of a functional call: from a small bounded cache (a training loop asks for the
    same few again and again), keyed on the arguments as given; unhashable ones (lists) skip it.
    Plans never hold weights, so a cached plan cannot go stale. ``x_shape`` is in ``layout``."""
    try:
        return _plan_cached(x_shape, w_shape, stride, padding, dilation, groups, dtype, activation, bias, method,
                            layout)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
    return _make_plan(x_shape, w_shape, stride, padding, dilation, groups, dtype, activation, bias, method, layout)


def _as(a: np.ndarray, dtype) -> np.ndarray:
    """a in the computation dtype (a copy only when it differs); layout is the plan's concern."""
    return a if a.dtype == dtype else a.astype(dtype)


def _check_grad_output(dy: np.ndarray, g) -> None:
    want = (g.mb, g.oc, g.oh, g.ow)
    if dy.shape != want:
        msg = f"grad_output: expected shape {want} for this convolution, got {dy.shape}"
        raise ValueError(msg)


def _check_out(out: Optional[np.ndarray], *inputs: np.ndarray, name: str = "out") -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        msg = f"{name}: expected a numpy.ndarray, got {type(out).__name__}"
        raise TypeError(msg)
    for a in inputs:
        if np.may_share_memory(out, a):
            msg = f"{name}: must not share memory with an input"
            raise ValueError(msg)


def _explicit_pads(shape, w_shape, stride, padding, dilation, padding_mode, layout="NCHW"):
    """Per-side pads ``(top, bottom, left, right)`` when ``padding_mode`` pads the input itself
    (the convolution then runs unpadded on the padded input); None for ``"zeros"``. ``shape`` is
    the input's, in ``layout``."""
    if check_padding_mode(padding_mode) == "zeros":
        return None
    kh, kw = w_shape[-2:]
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    ih, iw = shape[-3:-1] if layout == "NHWC" else shape[-2:]
    return _padding(padding, ih, iw, kh, kw, sh, sw, dh, dw)


def _activation(activation: Optional[str]) -> str:
    act = "identity" if activation is None else activation
    if act not in ACTIVATIONS:
        msg = f"activation: expected None or one of {ACTIVATIONS}, got {shown(activation)}"
        raise ValueError(msg)
    return act


# --------------------------------------------------------------------------------------- the ops


def output_size(input_size, kernel_size, stride=1, padding: Padding = 0, dilation=1):
    """Output ``(oh, ow)`` of a convolution of an ``(H, W)`` (or N, C, H, W) input.

    input_size: an int (square), ``(H, W)`` or a full shape whose last two entries are used;
    kernel_size, stride, dilation: an int or a pair; padding as for :func:`conv2d`.
    """
    ih, iw = _spatial(input_size, "input_size")
    kh, kw = _pair(kernel_size, "kernel_size")
    g = _geometry((1, 1, ih, iw), (1, 1, kh, kw), stride, padding, dilation, 1)
    g.validate("output_size")
    return g.oh, g.ow


def conv2d(
    input,
    weight,
    bias=None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    activation: Optional[str] = None,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
) -> np.ndarray:
    """Forward pass ``f(conv(input, weight) + bias)`` (cross-correlation, as PyTorch).

    input ``(N, C, H, W)`` or ``(C, H, W)``; weight ``(oc, C/groups, kh, kw)``; bias ``(oc,)`` or
    None; activation None (identity), ``"relu"``, ``"sigmoid"`` or ``"tanh"``, applied in the
    same pass. ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (as
    ``torch.nn.Conv2d``: the other modes pad the input explicitly, see :mod:`convcore.padding`).
    Returns ``(N, oc, oh, ow)`` (``(oc, oh, ow)`` for a 3-D input). ``layout="NHWC"``: input
    ``(N, H, W, C)`` or ``(H, W, C)``, returns ``(N, oh, ow, oc)`` (``(oh, ow, oc)``).
    """
    layout = layout_of(layout)
    x, single = _batched(_array(input, "input"), "input", layout)
    w = _array(weight, "weight")
    b = None if bias is None else _array(bias, "bias")
    dt = _dtype(x, w, b)
    pads = _explicit_pads(x.shape, w.shape, stride, padding, dilation, padding_mode, layout)
    if pads is not None:
        x, padding = pad(x, pads, padding_mode, layout), 0
    plan = _plan(x.shape, _weight_shape(w.shape, "weight"), stride, padding, dilation, groups, dt,
                 _activation(activation), layout=layout)
    y = plan.forward(_as(x, dt), _as(w, dt), None if b is None else _as(b, dt))
    return y[0] if single else y


def conv2d_input(
    input_size: Sequence[int],
    weight,
    grad_output,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    method: str = "auto",
    padding_mode: str = "zeros",
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of the loss with respect to the input: the error propagated to the layer below.

    input_size ``(N, C, H, W)`` or ``(C, H, W)``; weight ``(oc, C/groups, kh, kw)``; grad_output
    ``(N, oc, oh, ow)`` (the layer's delta: the activation's derivative already applied, see
    :func:`activation_backward`). ``method``: ``"flip"`` is the tutorial's — zero-insert the
    stride, pad by ``k-1-p``, correlate with the 180°-rotated kernels; ``"col2im"`` computes
    ``W^T · delta`` and scatters it back; ``"auto"`` picks the faster. Both are exact. With a
    ``padding_mode`` other than ``"zeros"`` the gradient of the padded border is folded back onto
    the input cells it was copied from. Returns an array of ``input_size``. ``layout="NHWC"``:
    input_size ``(N, H, W, C)`` or ``(H, W, C)``, grad_output ``(N, oh, ow, oc)``; both methods run
    natively in that layout.
    """
    if method not in METHODS:
        msg = f"method: expected one of {METHODS}, got {shown(method)}"
        raise ValueError(msg)
    layout = layout_of(layout)
    size, single = _size(input_size, "input_size", layout)
    w = _array(weight, "weight")
    dy = _grad_output(grad_output, single, layout)
    dt = _dtype(w, dy)
    pads = _explicit_pads(size, w.shape, stride, padding, dilation, padding_mode, layout)
    if pads is not None:
        pt, pb, pl, pr = pads
        mb, c, h, wd = to_nchw_shape(size, layout)
        size, padding = from_nchw_shape((mb, c, h + pt + pb, wd + pl + pr), layout), 0
    plan = _plan(size, _weight_shape(w.shape, "weight"), stride, padding, dilation, groups, dt,
                 method=method, layout=layout)
    dx = plan.backward_input(_as(w, dt), _as(dy, dt))
    if pads is not None:
        dx = pad_backward(dx, pads, padding_mode, layout)
    return dx[0] if single else dx


def conv2d_weight(
    input,
    weight_size: Sequence[int],
    grad_output,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of the loss with respect to the weight, summed over the batch.

    input ``(N, C, H, W)`` or ``(C, H, W)``; weight_size ``(oc, C/groups, kh, kw)``; grad_output
    ``(N, oc, oh, ow)``. With ``out`` (exact dtype, C-contiguous, writeable, shape weight_size)
    the gradient is written there, or added to it when ``accumulate=True`` — the way gradients
    of micro-batches add up to the gradient of the whole batch. ``padding_mode`` as in
    :func:`conv2d`. Returns the gradient (``out`` when given). ``layout="NHWC"``: input
    ``(N, H, W, C)`` or ``(H, W, C)``, grad_output ``(N, oh, ow, oc)``; the gradient keeps the
    weight's own shape.
    """
    layout = layout_of(layout)
    x, single = _batched(_array(input, "input"), "input", layout)
    dy = _grad_output(grad_output, single, layout)
    dt = _dtype(x, dy)
    pads = _explicit_pads(x.shape, _weight_shape(weight_size, "weight_size"), stride, padding, dilation,
                          padding_mode, layout)
    if pads is not None:
        x, padding = pad(x, pads, padding_mode, layout), 0
    plan = _plan(x.shape, _weight_shape(weight_size, "weight_size"), stride, padding, dilation, groups, dt,
                 layout=layout)
    # out (type, dtype, shape, layout, overlap) and accumulate are checked by the plan's binding.
    return plan.backward_weight(_as(x, dt), _as(dy, dt), out, bool(accumulate))


def conv2d_bias(grad_output, out: Optional[np.ndarray] = None, accumulate: bool = False,
                layout: str = "NCHW") -> np.ndarray:
    """Gradient of the loss with respect to the bias: grad_output summed over N, oh and ow.

    grad_output ``(N, oc, oh, ow)`` or ``(oc, oh, ow)`` (``layout="NHWC"``: ``(N, oh, ow, oc)`` or
    ``(oh, ow, oc)``); returns ``(oc,)``. ``out`` and ``accumulate`` as in :func:`conv2d_weight`.
    """
    layout = layout_of(layout)
    dy = _batched(_array(grad_output, "grad_output"), "grad_output", layout)[0]
    dt = _dtype(dy)
    mb, oc, oh, ow = to_nchw_shape(dy.shape, layout)
    g = _geometry(from_nchw_shape((mb, 1, oh, ow), layout), (oc, 1, 1, 1), 1, 0, 1, 1, layout)
    _check_out(out, dy)
    if accumulate and out is None:
        msg = "accumulate=True needs an out buffer to add to"
        raise ValueError(msg)
    return _core.conv2d_backward_bias(g, _contiguous(dy, dt), out, bool(accumulate))


def conv2d_backward(
    input,
    weight,
    grad_output,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    bias: bool = True,
    method: str = "auto",
    weight_out: Optional[np.ndarray] = None,
    bias_out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
):
    """The whole backward pass of a layer in one call: ``(grad_input, grad_weight, grad_bias)``.

    The same results as :func:`conv2d_input`, :func:`conv2d_weight` and :func:`conv2d_bias`
    (bitwise), with one argument check and one native call. input ``(N, C, H, W)`` or
    ``(C, H, W)``; weight ``(oc, C/groups, kh, kw)``; grad_output ``(N, oc, oh, ow)``, the
    layer's delta. Returns grad_input shaped like input, grad_weight like weight, and grad_bias
    ``(oc,)`` — None when ``bias=False``. ``weight_out`` / ``bias_out`` and ``accumulate`` work as
    ``out`` and ``accumulate`` of :func:`conv2d_weight`; every buffer is checked before anything
    is written. ``padding_mode`` as in :func:`conv2d` (the border's gradient is folded back).
    ``layout="NHWC"``: input ``(N, H, W, C)`` or ``(H, W, C)`` and grad_output
    ``(N, oh, ow, oc)``; grad_input is then channels last too.
    """
    if method not in METHODS:
        msg = f"method: expected one of {METHODS}, got {shown(method)}"
        raise ValueError(msg)
    layout = layout_of(layout)
    x, single = _batched(_array(input, "input"), "input", layout)
    w = _array(weight, "weight")
    dy = _grad_output(grad_output, single, layout)
    dt = _dtype(x, w, dy)
    pads = _explicit_pads(x.shape, w.shape, stride, padding, dilation, padding_mode, layout)
    if pads is not None:
        x, padding = pad(x, pads, padding_mode, layout), 0
    plan = _plan(x.shape, _weight_shape(w.shape, "weight"), stride, padding, dilation, groups, dt,
                 bias=bool(bias), method=method, layout=layout)
    # The buffers (and accumulate, and bias_out without bias) are checked by the plan's binding,
    # every one before anything is written.
    dx, dw, db = plan.backward(_as(x, dt), _as(w, dt), _as(dy, dt), weight_out=weight_out, bias_out=bias_out,
                               accumulate=bool(accumulate))
    if pads is not None:
        dx = pad_backward(dx, pads, padding_mode, layout)
    return (dx[0] if single else dx), dw, db


def activation_backward(grad, output, activation: Optional[str]) -> np.ndarray:
    """``grad * f'(y)``, with the derivative written in terms of the output ``a = f(y)``.

    The tutorial's ``delta = dE/da ∘ f'(net)``. grad and output have the same shape (any).
    """
    g = _array(grad, "grad")
    a = _array(output, "output")
    if g.shape != a.shape:
        msg = f"grad: expected the shape of output {a.shape}, got {g.shape}"
        raise ValueError(msg)
    dt = _dtype(g, a)
    return _core.activation_backward(_activation(activation), _contiguous(g, dt), _contiguous(a, dt))


def expand_stride(grad_output, stride: IntPair, input_size, kernel_size, padding: Padding = 0, dilation: IntPair = 1):
    """Zero insertion: the delta of a strided convolution laid out at stride 1.

    grad_output ``(N, C, oh, ow)`` or ``(C, oh, ow)``; input_size an int (square), ``(H, W)`` or a
    full shape, whose last two entries are used; kernel_size an int or a pair. Returns ``(N, C, eh, ew)`` with ``eh = H + pt + pb -
    dh*(kh-1)``: ``expanded[..., i*sh, j*sw] = grad_output[..., i, j]``, zeros elsewhere —
    including trailing rows/columns when the stride did not divide the input.
    """
    dy, single = _batched(_array(grad_output, "grad_output"), "grad_output")
    ih, iw = _spatial(input_size, "input_size")
    kh, kw = _pair(kernel_size, "kernel_size")
    mb, c = dy.shape[:2]
    g = _geometry((mb, 1, ih, iw), (c, 1, kh, kw), stride, padding, dilation, 1)
    g.validate("expand_stride")  # before its sizes are read
    _check_grad_output(dy, g)
    e = _core.expand_stride(g, _contiguous(dy, _dtype(dy)))
    return e[0] if single else e


def flip_kernels(weight, groups: int = 1) -> np.ndarray:
    """Kernels rotated by 180° with the roles of input and output channels swapped.

    weight ``(oc, ic/groups, kh, kw)`` -> ``(ic, oc/groups, kh, kw)`` with
    ``wf[g*icg + c, o, r, s] = w[g*ocg + o, c, kh-1-r, kw-1-s]``: the weights of the
    convolution that carries the error backwards.
    """
    w = _array(weight, "weight")
    oc, icg, kh, kw = _weight_shape(w.shape, "weight")
    groups = _int(groups, "groups")
    if groups < 1:
        msg = f"groups: must be >= 1, got {groups}"
        raise ValueError(msg)
    g = _geometry((1, icg * groups, kh, kw), (oc, icg, kh, kw), 1, 0, 1, groups)
    return _core.flip_kernels(g, _contiguous(w, _dtype(w)))


def im2col(input, kernel_size, stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1) -> np.ndarray:
    """Unfold every receptive field into a column.

    input ``(N, C, H, W)`` or ``(C, H, W)``; returns ``(N, C*kh*kw, oh*ow)`` (2-D for a 3-D
    input) with ``col[n, (c*kh + r)*kw + s, i*ow + j] = x_padded[n, c, i*sh + r*dh, j*sw + s*dw]``.
    """
    x, single = _batched(_array(input, "input"), "input")
    kh, kw = _pair(kernel_size, "kernel_size")
    g = _geometry(x.shape, (1, x.shape[1], kh, kw), stride, padding, dilation, 1)
    col = _core.im2col(g, _contiguous(x, _dtype(x)))
    return col[0] if single else col


def col2im(col, input_size, kernel_size, stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1) -> np.ndarray:
    """The adjoint of :func:`im2col`: every column entry added back where it was read from.

    col ``(N, C*kh*kw, oh*ow)`` (or 2-D for one sample); input_size ``(N, C, H, W)`` or
    ``(C, H, W)``. Returns an array of input_size; overlapping windows sum.
    """
    size, single = _size(input_size, "input_size")
    c = _array(col, "col")
    if single and c.ndim == 2:
        c = c[None]
    kh, kw = _pair(kernel_size, "kernel_size")
    g = _geometry(size, (1, size[1], kh, kw), stride, padding, dilation, 1)
    g.validate("col2im")  # before its sizes are read
    want = (g.mb, size[1] * kh * kw, g.oh * g.ow)
    if c.shape != want:
        msg = f"col: expected shape {want}, got {c.shape}"
        raise ValueError(msg)
    x = _core.col2im(g, _contiguous(c, _dtype(c)))
    return x[0] if single else x


def sgd_update(param: np.ndarray, grad, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
               velocity: Optional[np.ndarray] = None, nesterov: bool = False) -> None:
    """One SGD step, in place: ``v = momentum*v + grad + weight_decay*param; param -= lr*v``.

    With ``nesterov`` (needs momentum > 0) the step is ``param -= lr*(d + momentum*v)``,
    ``d = grad + weight_decay*param`` (``torch.optim.SGD(nesterov=True)``).

    param: float32 or float64 array, C-contiguous and writeable (updated in place). grad: same
    shape; converted to param's dtype only when that loses nothing. velocity: required when
    momentum != 0, same shape and dtype as param, updated in place. Nothing is written when an
    argument is refused.
    """
    if not isinstance(param, np.ndarray):
        msg = f"param: expected a numpy.ndarray to update in place, got {type(param).__name__}"
        raise TypeError(msg)
    g = _array(grad, "grad")
    if g.shape != param.shape:
        msg = f"grad: expected shape {param.shape} (the shape of param), got {g.shape}"
        raise ValueError(msg)
    if param.dtype in (np.float32, np.float64) and not np.can_cast(g.dtype, param.dtype, "safe"):
        msg = f"grad: dtype {g.dtype} would be narrowed to param's {param.dtype}"
        raise TypeError(msg)
    if momentum != 0 and velocity is None:
        msg = f"velocity: required when momentum={momentum} is not 0"
        raise ValueError(msg)
    # grad may be param itself (each element reads its own value before writing it); any other
    # overlap, and any overlap of velocity with param or grad, would read updated values.
    if g is not param and np.may_share_memory(g, param):
        msg = "grad: must not share memory with param"
        raise ValueError(msg)
    if velocity is not None and (np.may_share_memory(velocity, param) or np.may_share_memory(velocity, g)):
        msg = "velocity: must not share memory with param or grad"
        raise ValueError(msg)
    _core.sgd_update(param, _contiguous(g, param.dtype) if param.dtype.kind == "f" else g, velocity,
                     float(lr), float(momentum), float(weight_decay), bool(nesterov))
