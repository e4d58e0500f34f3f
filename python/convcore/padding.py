"""Padding modes of the convolutions (PyTorch's ``padding_mode``) and their adjoints.

A convolution with ``padding_mode`` other than ``"zeros"`` is, as in PyTorch's modules, the
unpadded convolution of the explicitly padded input. Its gradient with respect to the input is the
gradient of the padded input folded back by the adjoint of the padding: every border cell's
gradient is added to the input cell it was copied from.

Modes, along each padded axis of size ``n`` (``j`` an index into the padded axis, relative to
the first input cell; ``src(j)`` the input cell it copies)::

    "zeros"      no copy: the convolution pads with zeros itself
    "reflect"    src(j) = |j| mirrored at 0 and n-1 without repeating the edge  (pad <= n - 1)
    "replicate"  src(j) = clip(j, 0, n - 1)                                   (any pad)
    "circular"   src(j) = j mod n                                               (pad <= n)

Arrays are ``(..., H, W)`` (layout ``"NCHW"``) or ``(..., H, W, C)`` (``"NHWC"``); ``pads`` is per
side ``(top, bottom, left, right)``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ._layout import layout_of
from ._public import public_dir as _public_dir
from ._shown import shown

__all__ = ["PADDING_MODES", "check_padding_mode", "pad", "pad_backward"]
__dir__ = _public_dir(globals())

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_SIDES = (("top", "bottom", "height"), ("left", "right", "width"))


def check_padding_mode(mode) -> str:
    """``mode`` if it is one of :data:`PADDING_MODES`, else ValueError."""
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        msg = f"padding_mode: expected one of {PADDING_MODES}, got {shown(mode)}"
        raise ValueError(msg)
    return mode


def _check(size: Tuple[int, int], pads: Tuple[int, int, int, int], mode: str) -> None:
    """PyTorch's limits: reflect needs pad < n, circular pad <= n; no pad is negative."""
    for axis, (lo_name, hi_name, dim) in enumerate(_SIDES):
        n = size[axis]
        for name, p in ((lo_name, pads[2 * axis]), (hi_name, pads[2 * axis + 1])):
            if p < 0:
                msg = f"padding: must be >= 0, got {name}={p}"
                raise ValueError(msg)
            if mode == "reflect" and p >= n:
                msg = (f"padding_mode='reflect': padding ({name}={p}) must be smaller than the input "
                       f"{dim} {n}")
                raise ValueError(msg)
            if mode == "circular" and p > n:
                msg = (f"padding_mode='circular': padding ({name}={p}) must be at most the input "
                       f"{dim} {n} (it would wrap around more than once)")
                raise ValueError(msg)
            if mode == "replicate" and p > 0 and n < 1:
                msg = f"padding_mode='replicate': an empty input {dim} has no edge to replicate"
                raise ValueError(msg)


def _hw_axes(ndim: int, layout: str) -> Tuple[int, int]:
    """The height and width axes of an array of ``ndim`` dimensions in ``layout``."""
    return (ndim - 3, ndim - 2) if layout_of(layout) == "NHWC" else (ndim - 2, ndim - 1)


def pad(x: np.ndarray, pads: Tuple[int, int, int, int], mode: str, layout: str = "NCHW") -> np.ndarray:
    """``x`` ``(..., H, W)`` (``(..., H, W, C)`` with ``layout="NHWC"``) padded by
    ``(top, bottom, left, right)`` in ``mode``.

    Returns a new C-contiguous ``(..., top + H + bottom, left + W + right)`` array of x's dtype
    (channels last for NHWC; ``x`` itself when no padding is asked for). Raises ValueError where
    PyTorch refuses.
    """
    check_padding_mode(mode)
    ah, aw = _hw_axes(x.ndim, layout)
    _check((x.shape[ah], x.shape[aw]), pads, mode)
    if not any(pads):
        return x
    pt, pb, pl, pr = pads
    widths = [(0, 0)] * x.ndim
    widths[ah], widths[aw] = (pt, pb), (pl, pr)
    if mode == "zeros":
        return np.pad(x, widths)
    return np.pad(x, widths, mode=_NUMPY_MODE[mode])


def _source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """src(j) for the padded axis positions j = -lo .. n + hi - 1 (-1 marks a zero cell)."""
    j = np.arange(-lo, n + hi)
    if mode == "zeros":
        return np.where((j >= 0) & (j < n), j, -1)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    if mode == "circular":
        return j % n
    j = np.abs(j)  # reflect: at most one mirror on each side (pad < n)
    return np.where(j > n - 1, 2 * (n - 1) - j, j)


def _fold(g: np.ndarray, axis: int, n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The adjoint of padding one axis: the centre, plus each border slice added at its source."""
    if lo == 0 and hi == 0:
        return g
    index = [slice(None)] * g.ndim
    index[axis] = slice(lo, lo + n)
    out = g[tuple(index)].copy()
    if mode == "zeros":
        return out
    src = _source(n, lo, hi, mode)
    for j in (*range(lo), *range(lo + n, lo + n + hi)):
        index[axis], dst = j, [slice(None)] * g.ndim
        dst[axis] = src[j]
        out[tuple(dst)] += g[tuple(index)]
    return out


def pad_backward(grad: np.ndarray, pads: Tuple[int, int, int, int], mode: str,
                 layout: str = "NCHW") -> np.ndarray:
    """The adjoint of :func:`pad`: the gradient of the padded array folded back onto the input.

    grad ``(..., top + H + bottom, left + W + right)`` -> ``(..., H, W)`` (with
    ``layout="NHWC"``, ``(..., H', W', C)`` -> ``(..., H, W, C)``): each border cell's gradient is
    added to the input cell it was copied from (dropped for ``"zeros"``). Returns a new
    C-contiguous array (``grad`` itself when there is no padding).
    """
    check_padding_mode(mode)
    pt, pb, pl, pr = pads
    ah, aw = _hw_axes(grad.ndim, layout)
    h, w = grad.shape[ah] - pt - pb, grad.shape[aw] - pl - pr
    _check((h, w), pads, mode)
    folded = _fold(grad, aw, w, pl, pr, mode)
    return _fold(folded, ah, h, pt, pb, mode)
