"""The transposed convolution (PyTorch's ``conv_transpose2d``) and its gradients.

A transposed convolution is the input gradient of a convolution: its input plays the
convolution's grad_output, its output the convolution's input. Layouts (PyTorch's): input
``(N, in_channels, H, W)`` or ``(in_channels, H, W)``; weight
``(in_channels, out_channels / groups, kh, kw)``; bias ``(out_channels,)``; output
``(N, out_channels, oh, ow)`` with::

    oh = (H - 1)*sh - 2*ph + dh*(kh - 1) + output_padding_h + 1        (ow likewise)

so that ``y[n, g*ocg + o, i*sh - ph + r*dh, j*sw - pw + s*dw] += x[n, c, i, j] * w[c, o, r, s]``
over the input channels ``c`` of group ``g``. The convolution it is the gradient of has input
``(N, out_channels, oh, ow)``, weight ``w`` itself (``in_channels`` is its output channels) and
top/left padding ``ph, pw``; output_padding only enlarges its input, so its bottom/right padding
is whatever keeps its output at ``H x W``. Every op runs on that convolution's cached plan:

- the forward pass is the plan's backward_input (flip, col2im or the phases, as the plan chose)
  with the input as grad_output, written straight into the result;
- the input gradient is the plan's forward pass of grad_output;
- the weight gradient is the plan's weight gradient with the roles of input and grad_output
  swapped; the bias gradient sums grad_output over N, oh and ow.

Every function takes ``layout="NCHW"`` or ``"NHWC"``: with NHWC the activations are channels last
(input ``(N, H, W, in_channels)``, output and grad_output ``(N, oh, ow, out_channels)``) and the
convolution's plan is an NHWC plan, so nothing is transposed; weights are the same in both.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import functional as F
from ._layout import from_nchw_shape, layout_of, to_nchw_shape
from ._public import public_dir as _public_dir
from ._shown import shown

__all__ = [
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose2d_bias",
    "conv_transpose2d_input",
    "conv_transpose2d_weight",
    "conv_transpose2d_output_size",
]
__dir__ = _public_dir(globals())


class _Transposed(NamedTuple):
    """A transposed convolution as the convolution whose input gradient it is."""

    x_shape: Tuple[int, int, int, int]  # the transposed conv's input (N, in_channels, H, W)
    y_shape: Tuple[int, int, int, int]  # its output (N, out_channels, oh, ow)
    conv_shape: Tuple[int, int, int, int]  # the convolution's input: y_shape less crop_h, crop_w
    stride: Tuple[int, int]
    padding: Tuple[Tuple[int, int], Tuple[int, int]]  # the convolution's per-side padding
    dilation: Tuple[int, int]
    groups: int


def _axis(n, k, s, p, op, d) -> Tuple[int, int, int]:
    """One axis: the output size, the convolution's far-side padding and the rows it leaves out.

    The convolution over ``o`` rows with near padding ``p`` and far padding ``pf`` has ``n``
    outputs when ``0 <= op - p + pf < s``. ``pf = max(p - op, 0)`` does unless
    ``op - p >= s`` (possible only when output_padding >= stride, i.e. < dilation): then the
    last ``op - p - s + 1`` rows, which no input reaches and which are 0, are left out of it.
    """
    o = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    return o, max(p - op, 0), max(op - p - s + 1, 0)


def _make_transposed(x_shape, w_shape, stride, padding, output_padding, dilation, groups) -> _Transposed:
    mb, ic, ih, iw = x_shape
    wic, ocg, kh, kw = w_shape
    sh, sw = F._pair(stride, "stride")
    ph, pw = F._pair(padding, "padding")
    oph, opw = F._pair(output_padding, "output_padding")
    dh, dw = F._pair(dilation, "dilation")
    groups = F._int(groups, "groups")
    if groups < 1 or ic % groups:
        msg = f"groups: in_channels={ic} must be divisible by groups={groups} (>= 1)"
        raise ValueError(msg)
    if wic != ic:
        msg = (f"weight: expected shape (in_channels={ic}, out_channels/groups, kh, kw), "
               f"got {tuple(w_shape)}")
        raise ValueError(msg)
    if min(oph, opw) < 0 or not (oph < max(sh, dh) and opw < max(sw, dw)):
        msg = (f"output_padding: must be >= 0 and smaller than either stride or dilation on each "
               f"axis, got output_padding={(oph, opw)}, stride={(sh, sw)}, dilation={(dh, dw)}")
        raise ValueError(msg)
    # Stride, dilation, padding and kernel sizes are the convolution's rules, checked by its plan;
    # the output size is only meaningful once they hold.
    oh, pb, crop_h = _axis(ih, kh, sh, ph, oph, dh)
    ow, pr, crop_w = _axis(iw, kw, sw, pw, opw, dw)
    if min(sh, sw, dh, dw, kh, kw) >= 1 and min(ph, pw) >= 0 and min(oh, ow) < 1:
        msg = (f"conv_transpose2d: the output size {(oh, ow)} of input {(ih, iw)} is not positive "
               f"(kernel {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}, "
               f"output_padding {(oph, opw)})")
        raise ValueError(msg)
    oc = ocg * groups
    # Kept >= 1 so that a plan refusing a bad stride, dilation or padding names that argument.
    conv_h, conv_w = max(oh - crop_h, 1), max(ow - crop_w, 1)
    return _Transposed((mb, ic, ih, iw), (mb, oc, oh, ow), (mb, oc, conv_h, conv_w),
                       (sh, sw), ((ph, pb), (pw, pr)), (dh, dw), groups)


_transposed_cached = functools.lru_cache(maxsize=256)(_make_transposed)


def _transposed(x_shape, w_shape, stride, padding, output_padding, dilation, groups) -> _Transposed:
    """The convolution of a transposed one, cached like the plans (unhashable arguments skip)."""
    try:
        return _transposed_cached(x_shape, w_shape, stride, padding, output_padding, dilation, groups)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
    return _make_transposed(x_shape, w_shape, stride, padding, output_padding, dilation, groups)


def _plan(t: _Transposed, w_shape, dtype, method="auto", layout="NCHW"):
    return F._plan(from_nchw_shape(t.conv_shape, layout), w_shape, t.stride, t.padding, t.dilation,
                   t.groups, dtype, bias=False, method=method, layout=layout)


def _spatial_index(h: int, w: int, layout: str):
    """The index of the first h rows and w columns of a 4-D array in ``layout``."""
    return (slice(None), slice(None, h), slice(None, w)) if layout == "NHWC" else (
        slice(None), slice(None), slice(None, h), slice(None, w))


def _cropped(t: _Transposed, dy: np.ndarray, layout="NCHW") -> np.ndarray:
    """grad_output restricted to the convolution's input (all of it but in the rare crop case)."""
    return dy if t.conv_shape == t.y_shape else dy[_spatial_index(*t.conv_shape[2:], layout)]


def _check_grad_output(t: _Transposed, dy: np.ndarray, layout="NCHW") -> None:
    want = from_nchw_shape(t.y_shape, layout)
    if dy.shape != want:
        msg = f"grad_output: expected shape {want} for this transposed convolution, got {dy.shape}"
        raise ValueError(msg)


def conv_transpose2d_output_size(input_size, kernel_size, stride=1, padding=0, output_padding=0,
                                 dilation=1) -> Tuple[int, int]:
    """Output ``(oh, ow)`` of a transposed convolution of an ``(H, W)`` (or N, C, H, W) input:
    ``oh = (H - 1)*sh - 2*ph + dh*(kh - 1) + output_padding_h + 1``."""
    ih, iw = (F._int(v, "input_size") for v in tuple(input_size)[-2:])
    kh, kw = F._pair(kernel_size, "kernel_size")
    t = _transposed((1, 1, ih, iw), (1, 1, kh, kw), stride, padding, output_padding, dilation, 1)
    _plan(t, (1, 1, kh, kw), np.float64)  # validates stride, padding, dilation and kernel
    return t.y_shape[2:]


def conv_transpose2d(
    input,
    weight,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    *,
    method: str = "auto",
    layout: str = "NCHW",
) -> np.ndarray:
    """Transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    input ``(N, in_channels, H, W)`` or ``(in_channels, H, W)``; weight
    ``(in_channels, out_channels/groups, kh, kw)``; bias ``(out_channels,)`` or None. stride,
    padding (an int or a pair: the rows and columns cropped from each side of the full output),
    output_padding (added to the bottom/right; on each axis smaller than stride or dilation) and
    dilation are ints or pairs. Returns ``(N, out_channels, oh, ow)`` (3-D for a 3-D input), oh as
    :func:`conv_transpose2d_output_size`. ``method`` (``"auto"``, ``"flip"``, ``"col2im"``)
    chooses the convolution input-gradient path that computes it, as in
    :func:`convcore.conv2d_input`. ``layout="NHWC"``: input ``(N, H, W, in_channels)`` or
    ``(H, W, in_channels)``, returns ``(N, oh, ow, out_channels)`` (3-D likewise).
    """
    if method not in F.METHODS:
        msg = f"method: expected one of {F.METHODS}, got {shown(method)}"
        raise ValueError(msg)
    layout = layout_of(layout)
    x, single = F._batched(F._array(input, "input"), "input", layout)
    w = F._array(weight, "weight")
    b = None if bias is None else F._array(bias, "bias")
    dt = F._dtype(x, w, b)
    wshape = F._weight_shape(w.shape, "weight")
    t = _transposed(to_nchw_shape(x.shape, layout), wshape, stride, padding, output_padding, dilation, groups)
    if b is not None and b.shape != (t.y_shape[1],):
        msg = f"bias: expected shape ({t.y_shape[1]},) (out_channels), got {b.shape}"
        raise ValueError(msg)
    y = _plan(t, wshape, dt, method, layout).backward_input(F._as(w, dt), F._as(x, dt))
    if t.conv_shape != t.y_shape:  # the rare case: rows/columns no input reaches, left 0
        full = np.zeros(from_nchw_shape(t.y_shape, layout), dt)
        full[_spatial_index(*t.conv_shape[2:], layout)] = y
        y = full
    if b is not None:  # in place: one pass over y
        y += F._as(b, dt) if layout == "NHWC" else F._as(b, dt).reshape(-1, 1, 1)
    return y[0] if single else y


def conv_transpose2d_input(
    input_size: Sequence[int],
    weight,
    grad_output,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of the loss with respect to a transposed convolution's input.

    input_size ``(N, in_channels, H, W)`` or ``(in_channels, H, W)``; weight
    ``(in_channels, out_channels/groups, kh, kw)``; grad_output ``(N, out_channels, oh, ow)``.
    This is the ordinary convolution of grad_output with the same weight (stride, padding,
    dilation, groups). Returns an array of input_size. ``layout="NHWC"``: input_size
    ``(N, H, W, in_channels)`` or 3-D, grad_output ``(N, oh, ow, out_channels)``.
    """
    layout = layout_of(layout)
    size, single = F._size(input_size, "input_size", layout)
    w = F._array(weight, "weight")
    dy = F._grad_output(grad_output, single, layout)
    dt = F._dtype(w, dy)
    wshape = F._weight_shape(w.shape, "weight")
    t = _transposed(to_nchw_shape(size, layout), wshape, stride, padding, output_padding, dilation, groups)
    _check_grad_output(t, dy, layout)
    dx = _plan(t, wshape, dt, layout=layout).forward(F._as(_cropped(t, dy, layout), dt), F._as(w, dt))
    return dx[0] if single else dx


def conv_transpose2d_weight(
    input,
    weight_size: Sequence[int],
    grad_output,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of the loss with respect to a transposed convolution's weight, summed over N.

    input ``(N, in_channels, H, W)`` or ``(in_channels, H, W)``; weight_size
    ``(in_channels, out_channels/groups, kh, kw)``; grad_output ``(N, out_channels, oh, ow)``.
    The convolution's weight gradient with grad_output as its input and input as its
    grad_output. ``out`` and ``accumulate`` as in :func:`convcore.conv2d_weight`. Returns the
    gradient, shaped weight_size (``out`` when given). ``layout="NHWC"``: input
    ``(N, H, W, in_channels)`` or 3-D, grad_output ``(N, oh, ow, out_channels)``.
    """
    layout = layout_of(layout)
    x, single = F._batched(F._array(input, "input"), "input", layout)
    dy = F._grad_output(grad_output, single, layout)
    dt = F._dtype(x, dy)
    wshape = F._weight_shape(weight_size, "weight_size")
    t = _transposed(to_nchw_shape(x.shape, layout), wshape, stride, padding, output_padding, dilation, groups)
    _check_grad_output(t, dy, layout)
    return _plan(t, wshape, dt, layout=layout).backward_weight(F._as(_cropped(t, dy, layout), dt), F._as(x, dt),
                                                               out, bool(accumulate))


def conv_transpose2d_bias(grad_output, out: Optional[np.ndarray] = None, accumulate: bool = False,
                          layout: str = "NCHW") -> np.ndarray:
    """Gradient of the loss with respect to a transposed convolution's bias.

    grad_output ``(N, out_channels, oh, ow)`` or ``(out_channels, oh, ow)`` (``layout="NHWC"``:
    ``(N, oh, ow, out_channels)`` or 3-D) summed over N, oh and ow: ``(out_channels,)``. ``out``
    and ``accumulate`` as in :func:`convcore.conv2d_bias`.
    """
    return F.conv2d_bias(grad_output, out=out, accumulate=accumulate, layout=layout)


def _check_bias_out(out, shape, dtype, *others) -> None:
    """bias_out checked up front, so that nothing is written when it is refused."""
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        msg = f"bias_out: expected a numpy.ndarray, got {type(out).__name__}"
        raise TypeError(msg)
    if out.dtype != dtype:
        msg = f"bias_out: dtype must be {dtype}, got {out.dtype}"
        raise TypeError(msg)
    if out.shape != shape:
        msg = f"bias_out: shape must be {shape}, got {out.shape}"
        raise ValueError(msg)
    if not out.flags.c_contiguous or not out.flags.writeable:
        msg = "bias_out: must be C-contiguous and writeable"
        raise ValueError(msg)
    if any(a is not None and np.may_share_memory(out, a) for a in others):
        msg = "bias_out: must not share memory with an input or weight_out"
        raise ValueError(msg)


def conv_transpose2d_backward(
    input,
    weight,
    grad_output,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
    bias: bool = True,
    weight_out: Optional[np.ndarray] = None,
    bias_out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    layout: str = "NCHW",
):
    """The whole backward pass of a transposed convolution: ``(grad_input, grad_weight, grad_bias)``.

    The results of :func:`conv_transpose2d_input`, :func:`conv_transpose2d_weight` and
    :func:`conv_transpose2d_bias` (grad_bias None when ``bias=False``). input
    ``(N, in_channels, H, W)`` or 3-D; weight ``(in_channels, out_channels/groups, kh, kw)``;
    grad_output ``(N, out_channels, oh, ow)``. ``weight_out``, ``bias_out`` and ``accumulate`` as
    in :func:`convcore.conv2d_backward`; every buffer is checked before anything is written.
    ``layout="NHWC"``: input ``(N, H, W, in_channels)`` or 3-D, grad_output
    ``(N, oh, ow, out_channels)``; grad_input is channels last too.
    """
    layout = layout_of(layout)
    x, single = F._batched(F._array(input, "input"), "input", layout)
    w = F._array(weight, "weight")
    dy = F._grad_output(grad_output, single, layout)
    dt = F._dtype(x, w, dy)
    wshape = F._weight_shape(w.shape, "weight")
    t = _transposed(to_nchw_shape(x.shape, layout), wshape, stride, padding, output_padding, dilation, groups)
    _check_grad_output(t, dy, layout)
    if not bias and bias_out is not None:
        msg = "bias_out: given with bias=False"
        raise ValueError(msg)
    if accumulate and (weight_out is None or (bias and bias_out is None)):
        msg = "accumulate=True needs weight_out (and bias_out when bias=True)"
        raise ValueError(msg)
    _check_bias_out(bias_out, (t.y_shape[1],), dt, x, w, dy, weight_out)
    x, w, dy = F._as(x, dt), F._as(w, dt), F._as(dy, dt)
    plan = _plan(t, wshape, dt, layout=layout)
    dyc = _cropped(t, dy, layout)
    dw = plan.backward_weight(dyc, x, weight_out, bool(accumulate))  # checks weight_out first
    db = F.conv2d_bias(dy, out=bias_out, accumulate=accumulate, layout=layout) if bias else None
    dx = plan.forward(dyc, w)
    return (dx[0] if single else dx), dw, db
