"""1-D convolution (PyTorch's ``conv1d``) and its gradients: the 2-D core with height 1.

Layouts: input ``(N, C, L)`` or ``(C, L)``; weight ``(out_channels, C / groups, k)``; bias
``(out_channels,)``; output and grad_output ``(N, out_channels, ol)`` with
``ol = (L + pl + pr - d*(k - 1) - 1) // s + 1``. Every array is handed to the 2-D functions as a
view with a height axis of 1 (``(N, C, 1, L)``, ``(oc, C/groups, 1, k)``): no copy is made.

``stride`` and ``dilation`` are ints (or 1-tuples); ``padding`` an int, a 1-tuple, a per-side
pair ``(left, right)``, ``"valid"`` or ``"same"``; ``padding_mode`` as in
:func:`convcore.conv2d`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import functional as F
from ._public import public_dir as _public_dir
from ._shown import shown

__all__ = ["conv1d", "conv1d_backward", "conv1d_bias", "conv1d_input", "conv1d_weight"]
__dir__ = _public_dir(globals())


def _one(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            msg = f"{name}: expected an int or a 1-tuple for a 1-D convolution, got {shown(value)}"
            raise ValueError(msg)
        value = value[0]
    return F._int(value, name)


def _args(stride, padding, dilation):
    """The 2-D arguments of a 1-D convolution: height stride, dilation and padding are 1, 1, 0."""
    if isinstance(padding, str):
        pad2 = padding  # "same" over a height of 1 with a kernel height of 1 pads no rows
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        pad2 = ((0, 0), (F._int(padding[0], "padding"), F._int(padding[1], "padding")))
    else:
        pad2 = (0, _one(padding, "padding"))
    return {"stride": (1, _one(stride, "stride")), "padding": pad2, "dilation": (1, _one(dilation, "dilation"))}


def _batched(a: np.ndarray, name: str):
    """(N, C, L) as is, (C, L) as a batch of one; then the height-1 view (N, C, 1, L)."""
    if a.ndim == 3:
        return a[:, :, None, :], False
    if a.ndim == 2:
        return a[None, :, None, :], True
    msg = f"{name}: expected a 3-D (N, C, L) or 2-D (C, L) array, got shape {a.shape}"
    raise ValueError(msg)


def _weight(w: np.ndarray, name: str = "weight") -> np.ndarray:
    if w.ndim != 3:
        msg = f"{name}: expected a 3-D (out_channels, in_channels/groups, k) array, got shape {w.shape}"
        raise ValueError(msg)
    return w[:, :, None, :]


def _weight_size(size, name: str):
    dims = tuple(F._int(v, name) for v in size)
    if len(dims) != 3:
        msg = f"{name}: expected (out_channels, in_channels/groups, k), got {tuple(size)}"
        raise ValueError(msg)
    return (dims[0], dims[1], 1, dims[2])


def _out_view(out: Optional[np.ndarray], shape, name: str) -> Optional[np.ndarray]:
    """An output buffer seen as its height-1 view; refused (not copied) when that would copy."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        msg = f"{name}: expected a numpy.ndarray, got {type(out).__name__}"
        raise TypeError(msg)
    if out.shape != tuple(shape):
        msg = f"{name}: shape must be {tuple(shape)}, got {out.shape}"
        raise ValueError(msg)
    return out[:, :, None, :]  # a view: dtype, layout and writeability are checked by the plan


def _single(y: np.ndarray, single: bool) -> np.ndarray:
    y = y[:, :, 0, :]
    return y[0] if single else y


def conv1d(
    input,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    activation: Optional[str] = None,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """1-D convolution ``f(conv(input, weight) + bias)``, as ``torch.nn.functional.conv1d``.

    input ``(N, C, L)`` or ``(C, L)``; weight ``(oc, C/groups, k)``; bias ``(oc,)`` or None;
    activation and padding_mode as in :func:`convcore.conv2d`. Returns ``(N, oc, ol)``
    (``(oc, ol)`` for a 2-D input).
    """
    x, single = _batched(F._array(input, "input"), "input")
    y = F.conv2d(x, _weight(F._array(weight, "weight")), bias, groups=groups, activation=activation,
                 padding_mode=padding_mode, **_args(stride, padding, dilation))
    return _single(y, single)


def conv1d_input(
    input_size: Sequence[int],
    weight,
    grad_output,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    method: str = "auto",
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Gradient of the loss with respect to a 1-D convolution's input.

    input_size ``(N, C, L)`` or ``(C, L)``; weight ``(oc, C/groups, k)``; grad_output
    ``(N, oc, ol)`` (2-D for a 2-D input_size). ``method`` and ``padding_mode`` as in
    :func:`convcore.conv2d_input`. Returns an array of input_size.
    """
    size = tuple(F._int(v, "input_size") for v in input_size)
    if len(size) not in (2, 3):
        msg = f"input_size: expected (N, C, L) or (C, L), got {tuple(input_size)}"
        raise ValueError(msg)
    single = len(size) == 2
    dy = F._array(grad_output, "grad_output")
    if dy.ndim != len(size):
        msg = f"grad_output: expected a {len(size)}-D array like input_size {size}, got shape {dy.shape}"
        raise ValueError(msg)
    dy = _batched(dy, "grad_output")[0]
    size4 = (1, *size[:1], 1, size[1]) if single else (*size[:2], 1, size[2])
    dx = F.conv2d_input(size4, _weight(F._array(weight, "weight")), dy, groups=groups, method=method,
                        padding_mode=padding_mode, **_args(stride, padding, dilation))
    return _single(dx, single)


def conv1d_weight(
    input,
    weight_size: Sequence[int],
    grad_output,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Gradient of the loss with respect to a 1-D convolution's weight, summed over N.

    input ``(N, C, L)`` or ``(C, L)``; weight_size ``(oc, C/groups, k)``; grad_output
    ``(N, oc, ol)``. ``out`` (shape weight_size, exact dtype, C-contiguous, writeable) and
    ``accumulate`` as in :func:`convcore.conv2d_weight`. Returns the gradient (``out`` when given).
    """
    x, _ = _batched(F._array(input, "input"), "input")
    dy, _ = _batched(F._array(grad_output, "grad_output"), "grad_output")
    size4 = _weight_size(weight_size, "weight_size")
    out4 = _out_view(out, (size4[0], size4[1], size4[3]), "out")
    dw = F.conv2d_weight(x, size4, dy, groups=groups, out=out4, accumulate=accumulate,
                         padding_mode=padding_mode, **_args(stride, padding, dilation))
    return out if out is not None else dw[:, :, 0, :]


def conv1d_bias(grad_output, out: Optional[np.ndarray] = None, accumulate: bool = False) -> np.ndarray:
    """Gradient of the loss with respect to a 1-D convolution's bias: grad_output ``(N, oc, ol)``
    or ``(oc, ol)`` summed over N and ol, ``(oc,)``. ``out``, ``accumulate`` as in
    :func:`convcore.conv2d_bias`."""
    dy = F._array(grad_output, "grad_output")
    if dy.ndim not in (2, 3):
        msg = f"grad_output: expected a 3-D (N, oc, ol) or 2-D (oc, ol) array, got shape {dy.shape}"
        raise ValueError(msg)
    return F.conv2d_bias(dy[..., None, :], out=out, accumulate=accumulate)


def conv1d_backward(
    input,
    weight,
    grad_output,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    bias: bool = True,
    method: str = "auto",
    weight_out: Optional[np.ndarray] = None,
    bias_out: Optional[np.ndarray] = None,
    accumulate: bool = False,
    padding_mode: str = "zeros",
):
    """The whole backward pass of a 1-D convolution: ``(grad_input, grad_weight, grad_bias)``.

    As :func:`convcore.conv2d_backward` on the height-1 views: input ``(N, C, L)`` or ``(C, L)``,
    weight ``(oc, C/groups, k)``, grad_output ``(N, oc, ol)``. Returns grad_input shaped like
    input, grad_weight like weight (``weight_out`` when given), grad_bias ``(oc,)`` or None.
    """
    x, single = _batched(F._array(input, "input"), "input")
    w = F._array(weight, "weight")
    w4 = _weight(w)
    dy, _ = _batched(F._array(grad_output, "grad_output"), "grad_output")
    wo = _out_view(weight_out, w.shape, "weight_out")
    dx, dw, db = F.conv2d_backward(x, w4, dy, groups=groups, bias=bias, method=method, weight_out=wo,
                                   bias_out=bias_out, accumulate=accumulate, padding_mode=padding_mode,
                                   **_args(stride, padding, dilation))
    return _single(dx, single), (weight_out if weight_out is not None else dw[:, :, 0, :]), db
