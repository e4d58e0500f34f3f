"""Plain NumPy reference of a 2-D convolution layer: the test oracle.

Every function here follows one step of the training procedure in
``conv-layer-backward-tutorial.md`` and ``DESIGN.md`` section 1, written for
clarity rather than speed.  Nothing in this module uses the native extension,
so it can check it.

Conventions (oneDNN names)::

    x      input            [mb][ic][ih][iw]
    w      weight           [oc][ic/groups][kh][kw]
    b      bias             [oc]
    y      output           [mb][oc][oh][ow]
    delta  output gradient  [mb][oc][oh][ow]   (dE/dy, the tutorial's "sensitivity map")

``pads`` is always the per-side zero padding ``(pt, pb, pl, pr)`` (an int means
the same on all four sides), ``stride`` is ``(sh, sw)`` and ``dilation`` is
``(dh, dw)`` (an int means the same on both axes).  Arrays are 4-D NCHW;
results have the dtype NumPy's promotion rules give for the operands.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._public import public_dir as _public_dir

__all__ = [
    "ACTIVATIONS",
    "activation_backward",
    "activation_derivative",
    "activation_forward",
    "col2im",
    "conv1d_forward",
    "conv2d_backward_bias",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_forward",
    "conv_transpose2d_backward_input",
    "conv_transpose2d_backward_weight",
    "conv_transpose2d_forward",
    "expand_stride",
    "expanded_size",
    "flip_kernels",
    "im2col",
    "output_size",
    "pad",
    "pad_mode",
    "pad_mode_backward",
    "padding_index",
    "same_pads",
    "sgd_update",
]
__dir__ = _public_dir(globals())

Array = NDArray[Any]
Shape = Sequence[int]  # (ih, iw) or a shape ending in them; (kh, kw) or a weight shape
IntPair = Union[int, Sequence[int]]  # an int or (h, w)
Pads = Union[int, Sequence[int]]  # an int or (pt, pb, pl, pr)

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")


# --------------------------------------------------------------------------
# Argument helpers
# --------------------------------------------------------------------------


def _pair(v):
    """``3 -> (3, 3)``; ``(2, 1) -> (2, 1)``."""
    if np.ndim(v) == 0:
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def _pads4(pads):
    """``1 -> (1, 1, 1, 1)``; ``(pt, pb, pl, pr)`` unchanged."""
    if np.ndim(pads) == 0:
        p = int(pads)
        return (p, p, p, p)
    pt, pb, pl, pr = pads
    return (int(pt), int(pb), int(pl), int(pr))


def output_size(input_size: Shape, kernel_size: Shape, stride: IntPair = 1, pads: Pads = 0,
                dilation: IntPair = 1) -> Tuple[int, int]:
    """Output spatial size ``(oh, ow)`` of a convolution.

    ``input_size`` is ``(ih, iw)`` or any shape ending in ``ih, iw``;
    ``kernel_size`` is ``(kh, kw)`` or a weight shape ending in ``kh, kw``::

        oh = floor((ih + pt + pb - dh*(kh-1) - 1) / sh) + 1     (same for ow)
    """
    ih, iw = input_size[-2:]
    kh, kw = kernel_size[-2:]
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    pt, pb, pl, pr = _pads4(pads)
    oh = (ih + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (iw + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return (oh, ow)


def expanded_size(input_size: Shape, kernel_size: Shape, pads: Pads = 0, dilation: IntPair = 1) -> Tuple[int, int]:
    """Size ``(eh, ew)`` of the stride-expanded delta: the stride-1 output size.

    ``eh = ih + pt + pb - dh*(kh-1)`` (same for ``ew``).
    """
    ih, iw = input_size[-2:]
    kh, kw = kernel_size[-2:]
    dh, dw = _pair(dilation)
    pt, pb, pl, pr = _pads4(pads)
    return (ih + pt + pb - dh * (kh - 1), iw + pl + pr - dw * (kw - 1))


def same_pads(input_size: Shape, kernel_size: Shape, stride: IntPair = 1,
              dilation: IntPair = 1) -> Tuple[int, ...]:
    """Per-side padding ``(pt, pb, pl, pr)`` of ``padding="same"``.

    For any stride the output has ``ceil(ih / sh)`` rows; the total padding is
    ``max((oh-1)*sh + dh*(kh-1) + 1 - ih, 0)``, split with the odd row at the
    bottom (``pt = total // 2``), the same for columns.
    """
    pads = []
    for i, k, s, d in zip(input_size[-2:], kernel_size[-2:], _pair(stride), _pair(dilation)):
        o = -(-i // s)
        total = max((o - 1) * s + d * (k - 1) + 1 - i, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


# --------------------------------------------------------------------------
# Data movement
# --------------------------------------------------------------------------


def pad(x: Array, pads: Pads) -> Array:
    """Zero-pad the last two axes of ``x`` by ``(pt, pb, pl, pr)``.

    ``x[..., h, w]`` -> ``xp[..., pt + h, pl + w]`` with
    shape ``(..., pt + ih + pb, pl + iw + pr)``.
    """
    pt, pb, pl, pr = _pads4(pads)
    widths = [(0, 0)] * (np.ndim(x) - 2) + [(pt, pb), (pl, pr)]
    return np.pad(x, widths)


def expand_stride(delta: Array, stride: IntPair, expanded_size: Shape) -> Array:
    """Tutorial step "stride is not 1": put zeros back where the stride skipped.

    ``delta`` is ``(..., oh, ow)``; the result is ``(..., eh, ew)`` with
    ``expanded[..., i*sh, j*sw] = delta[..., i, j]`` and zeros elsewhere,
    including trailing rows/columns when ``sh`` did not divide the input (those
    input pixels never reached the output).  ``expanded_size`` is ``(eh, ew)``,
    see :func:`expanded_size`.
    """
    sh, sw = _pair(stride)
    eh, ew = expanded_size
    oh, ow = delta.shape[-2:]
    out = np.zeros((*delta.shape[:-2], eh, ew), dtype=delta.dtype)
    out[..., 0 : oh * sh : sh, 0 : ow * sw : sw] = delta
    return out


def flip_kernels(w: Array, groups: int = 1) -> Array:
    """Tutorial step "rotate the filter by 180 degrees", with ``ic``/``oc`` swapped.

    ``w`` is ``(oc, ic/groups, kh, kw)``; the result ``wf`` is
    ``(ic, oc/groups, kh, kw)`` with, inside each group ``g``::

        wf[g*icg + c][o][r][s] = w[g*ocg + o][c][kh-1-r][kw-1-s]

    Correlating the (expanded, fully padded) delta with ``wf`` sends the error
    of every output channel back to the input channels that fed it.
    """
    oc, icg, kh, kw = w.shape
    ocg = oc // groups
    wg = w.reshape(groups, ocg, icg, kh, kw)
    wf = wg.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wf.reshape(groups * icg, ocg, kh, kw))


def _tap(xp, r, s, out_hw, stride, dilation):
    """The input pixels kernel tap ``(r, s)`` meets at every output position.

    ``tap[..., i, j] = xp[..., i*sh + r*dh, j*sw + s*dw]`` for ``i < oh, j < ow``.
    """
    rows, cols = _tap_slices(r, s, out_hw, stride, dilation)
    return xp[..., rows, cols]


def _tap_slices(r, s, out_hw, stride, dilation):
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    h0, w0 = r * dh, s * dw
    return (slice(h0, h0 + (oh - 1) * sh + 1, sh), slice(w0, w0 + (ow - 1) * sw + 1, sw))


def im2col(x: Array, kernel_size: Shape, stride: IntPair = 1, pads: Pads = 0, dilation: IntPair = 1) -> Array:
    """Unfold the input windows into columns (Caffe's ``im2col``).

    ``x`` ``(mb, ic, ih, iw)`` -> ``col`` ``(mb, ic*kh*kw, oh*ow)``::

        col[n][(c*kh + r)*kw + s][i*ow + j] = xp[n][c][i*sh + r*dh][j*sw + s*dw]

    so that the forward pass is ``w.reshape(oc, -1) @ col[n]`` (one group).
    """
    kh, kw = kernel_size[-2:]
    stride, dilation = _pair(stride), _pair(dilation)
    oh, ow = output_size(x.shape, (kh, kw), stride, pads, dilation)
    xp = pad(x, pads)
    taps = [_tap(xp, r, s, (oh, ow), stride, dilation) for r in range(kh) for s in range(kw)]
    col = np.stack(taps, axis=2)  # (mb, ic, kh*kw, oh, ow)
    return col.reshape(x.shape[0], -1, oh * ow)


def col2im(col: Array, input_size: Shape, kernel_size: Shape, stride: IntPair = 1, pads: Pads = 0,
           dilation: IntPair = 1) -> Array:
    """Fold columns back onto the image, adding where windows overlap (the adjoint of :func:`im2col`).

    ``col`` ``(mb, ic*kh*kw, oh*ow)`` -> ``(mb, ic, ih, iw)`` with ``input_size``
    ``(mb, ic, ih, iw)``; values that land in the padding are dropped.
    """
    mb, ic, ih, iw = input_size
    kh, kw = kernel_size[-2:]
    stride, dilation = _pair(stride), _pair(dilation)
    pt, pb, pl, pr = _pads4(pads)
    oh, ow = output_size(input_size, (kh, kw), stride, pads, dilation)
    col = col.reshape(mb, ic, kh, kw, oh, ow)
    xp = np.zeros((mb, ic, pt + ih + pb, pl + iw + pr), dtype=col.dtype)
    for r in range(kh):
        for s in range(kw):
            rows, cols = _tap_slices(r, s, (oh, ow), stride, dilation)
            xp[:, :, rows, cols] += col[:, :, r, s]
    return xp[:, :, pt : pt + ih, pl : pl + iw].copy()


# --------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------


def conv2d_forward(x: Array, w: Array, b: Optional[Array] = None, stride: IntPair = 1, pads: Pads = 0,
                   dilation: IntPair = 1, groups: int = 1) -> Array:
    """Forward pass: direct cross-correlation, plus bias.

    ``x`` ``(mb, ic, ih, iw)``, ``w`` ``(oc, ic/groups, kh, kw)``, ``b`` ``(oc,)``
    or None; returns ``y`` ``(mb, oc, oh, ow)``::

        y[n,o,i,j] = b[o] + sum_{c,r,s} xp[n, g*icg + c, i*sh + r*dh, j*sw + s*dw] * w[o,c,r,s]

    where ``xp`` is ``x`` zero-padded and ``g = o // ocg`` is the group of ``o``.
    The sum is taken one kernel tap ``(r, s)`` at a time.
    """
    stride, dilation = _pair(stride), _pair(dilation)
    mb = x.shape[0]
    oc, icg, kh, kw = w.shape
    ocg = oc // groups
    oh, ow = output_size(x.shape, w.shape, stride, pads, dilation)
    dtype = np.result_type(x, w) if b is None else np.result_type(x, w, b)

    xp = pad(x, pads)
    xp = xp.reshape(mb, groups, icg, *xp.shape[2:])
    wg = w.reshape(groups, ocg, icg, kh, kw)
    y = np.zeros((mb, groups, ocg, oh, ow), dtype=dtype)
    for r in range(kh):
        for s in range(kw):
            patch = _tap(xp, r, s, (oh, ow), stride, dilation)  # (mb, g, icg, oh, ow)
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, r, s])
    y = y.reshape(mb, oc, oh, ow)
    if b is not None:
        y += b.reshape(1, oc, 1, 1)
    return y


# --------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------


def conv2d_backward_input(delta: Array, w: Array, input_size: Shape, stride: IntPair = 1, pads: Pads = 0,
                          dilation: IntPair = 1, groups: int = 1) -> Array:
    """Tutorial step "back-propagate the error": the gradient w.r.t. the input.

    ``delta`` ``(mb, oc, oh, ow)``, ``w`` ``(oc, ic/groups, kh, kw)``;
    ``input_size`` is the input shape (only its last two entries, ``ih, iw``,
    are used).  Returns ``dx`` ``(mb, ic, ih, iw)``, computed exactly the
    tutorial's way:

    1. expand the stride: zero insertion to the stride-1 size ``(eh, ew)``;
    2. pad by ``dh*(kh-1)`` rows and ``dw*(kw-1)`` columns on each side (a
       "full" correlation);
    3. correlate with the 180-degree-rotated, ``ic``/``oc``-swapped kernels
       (:func:`flip_kernels`), stride 1, same dilation: this is the gradient of
       the *padded* input;
    4. crop ``pt``/``pl`` (and ``pb``/``pr``) away to get ``dx``.
    """
    kh, kw = w.shape[-2:]
    dh, dw = _pair(dilation)
    pt, _, pl, _ = _pads4(pads)
    ih, iw = input_size[-2:]

    expanded = expand_stride(delta, stride, expanded_size(input_size, w.shape, pads, dilation))
    full = pad(expanded, (dh * (kh - 1), dh * (kh - 1), dw * (kw - 1), dw * (kw - 1)))
    wf = flip_kernels(w, groups)
    dxp = conv2d_forward(full, wf, None, 1, 0, dilation, groups)  # (mb, ic, pt+ih+pb, pl+iw+pr)
    return np.ascontiguousarray(dxp[:, :, pt : pt + ih, pl : pl + iw])


def conv2d_backward_weight(x: Array, delta: Array, weight_shape: Shape, stride: IntPair = 1, pads: Pads = 0,
                           dilation: IntPair = 1, groups: int = 1) -> Array:
    """Tutorial step "gradient of w": correlate the padded input with the expanded delta.

    ``x`` ``(mb, ic, ih, iw)``, ``delta`` ``(mb, oc, oh, ow)``; returns ``dw``
    of ``weight_shape`` ``(oc, ic/groups, kh, kw)``::

        dw[o,c,r,s] = sum_{n,i,j} delta[n,o,i,j] * xp[n, g*icg + c, i*sh + r*dh, j*sw + s*dw]
                    = sum_{n,p,q} expanded[n,o,p,q] * xp[n, g*icg + c, p + r*dh, q + s*dw]

    The second line is what is computed: the expanded delta acts as the
    "kernel" sliding over the padded input, one weight tap ``(r, s)`` at a time.
    """
    oc, icg, kh, kw = weight_shape
    mb = x.shape[0]
    ocg = oc // groups
    dh, dw = _pair(dilation)
    eh, ew = expanded_size(x.shape, weight_shape, pads, dilation)

    xp = pad(x, pads)
    xp = xp.reshape(mb, groups, icg, *xp.shape[2:])
    expanded = expand_stride(delta, stride, (eh, ew)).reshape(mb, groups, ocg, eh, ew)
    grad = np.zeros((groups, ocg, icg, kh, kw), dtype=np.result_type(x, delta))
    for r in range(kh):
        for s in range(kw):
            window = xp[..., r * dh : r * dh + eh, s * dw : s * dw + ew]  # (mb, g, icg, eh, ew)
            grad[..., r, s] = np.einsum("ngchw,ngohw->goc", window, expanded)
    return grad.reshape(oc, icg, kh, kw)


def conv2d_backward_bias(delta: Array) -> Array:
    """Tutorial step "gradient of b": ``db[o] = sum_{n,i,j} delta[n,o,i,j]``, shape ``(oc,)``."""
    return delta.sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------
# Update
# --------------------------------------------------------------------------


def sgd_update(param: Array, grad: Array, velocity: Optional[Array] = None, lr: float = 0.01,
               momentum: float = 0.0, weight_decay: float = 0.0) -> Tuple[Array, Array]:
    """Tutorial step "update w and b", with optional momentum and weight decay.

    Returns new arrays ``(param, velocity)``; the inputs are not modified::

        v = momentum * v + grad + weight_decay * param
        param = param - lr * v

    ``velocity=None`` starts from zeros.  With ``momentum = weight_decay = 0``
    this is the tutorial's ``w -= lr * dw``.
    """
    v = np.zeros_like(param) if velocity is None else velocity
    v = momentum * v + grad + weight_decay * param
    return param - lr * v, v


# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------


def _check_activation(name):
    name = "identity" if name is None else name
    if name not in ACTIVATIONS:
        msg = f"unknown activation {name!r}; expected one of {ACTIVATIONS}"
        raise ValueError(msg)
    return name


def activation_forward(y: ArrayLike, name: Optional[str]) -> Array:
    """``a = f(y)`` for ``name`` in ``ACTIVATIONS`` (None means identity)."""
    name = _check_activation(name)
    y = np.asarray(y)
    if name == "identity":
        return y.copy()
    if name == "relu":
        return np.maximum(y, 0)
    if name == "tanh":
        return np.tanh(y)
    # sigmoid, written so that exp never overflows
    e = np.exp(-np.abs(y))
    return np.where(y >= 0, 1 / (1 + e), e / (1 + e)).astype(y.dtype, copy=False)


def activation_derivative(a: ArrayLike, name: Optional[str]) -> Array:
    """``f'(y)`` written in terms of the activation's output ``a = f(y)``.

    identity: 1; relu: ``a > 0``; sigmoid: ``a * (1 - a)``; tanh: ``1 - a**2``.
    """
    name = _check_activation(name)
    a = np.asarray(a)
    if name == "identity":
        return np.ones_like(a)
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "sigmoid":
        return a * (1 - a)
    return 1 - a * a


def activation_backward(grad: ArrayLike, a: ArrayLike, name: Optional[str]) -> Array:
    """Tutorial's ``delta = dE/da * f'(y)``: the layer's own delta from the gradient it receives."""
    return np.asarray(grad) * activation_derivative(a, name)


# --------------------------------------------------------------------------
# Padding modes (PyTorch's padding_mode), by explicit index maps
# --------------------------------------------------------------------------


def padding_index(n, lo, hi, mode):
    """Where each cell of an axis of ``n`` cells padded by ``lo`` and ``hi`` copies from.

    A list of ``lo + n + hi`` input indices, ``-1`` for a zero cell.  For the
    padded position ``j`` (``-lo <= j < n + hi``, ``0`` the first input cell):

    - ``"zeros"``: ``j`` inside the input, else -1;
    - ``"reflect"``: mirrored at the first and last cell, which are not repeated
      (``-1 -> 1``, ``n -> n - 2``);
    - ``"replicate"``: the nearest edge cell;
    - ``"circular"``: ``j mod n``.
    """
    out = []
    for j in range(-lo, n + hi):
        if mode == "zeros":
            out.append(j if 0 <= j < n else -1)
        elif mode == "replicate":
            out.append(min(max(j, 0), n - 1))
        elif mode == "circular":
            out.append(j % n)
        elif mode == "reflect":
            while j < 0 or j > n - 1:
                j = -j if j < 0 else 2 * (n - 1) - j
            out.append(j)
        else:
            msg = f"unknown padding mode {mode!r}"
            raise ValueError(msg)
    return out


def pad_mode(x, pads, mode):
    """Pad the last two axes of ``x`` by ``(pt, pb, pl, pr)`` in ``mode`` (see :func:`padding_index`).

    ``xp[..., a, b] = x[..., rows[a], cols[b]]`` (0 where either index is -1).
    """
    pt, pb, pl, pr = _pads4(pads)
    ih, iw = x.shape[-2:]
    rows = padding_index(ih, pt, pb, mode)
    cols = padding_index(iw, pl, pr, mode)
    out = np.zeros((*x.shape[:-2], len(rows), len(cols)), dtype=x.dtype)
    for a, ra in enumerate(rows):
        for b, cb in enumerate(cols):
            if ra >= 0 and cb >= 0:
                out[..., a, b] = x[..., ra, cb]
    return out


def pad_mode_backward(grad, input_size, pads, mode):
    """The adjoint of :func:`pad_mode`: each padded cell's gradient added to the cell it copies.

    ``grad`` ``(..., pt + ih + pb, pl + iw + pr)`` -> ``(..., ih, iw)``.
    """
    pt, pb, pl, pr = _pads4(pads)
    ih, iw = input_size[-2:]
    rows = padding_index(ih, pt, pb, mode)
    cols = padding_index(iw, pl, pr, mode)
    out = np.zeros((*grad.shape[:-2], ih, iw), dtype=grad.dtype)
    for a, ra in enumerate(rows):
        for b, cb in enumerate(cols):
            if ra >= 0 and cb >= 0:
                out[..., ra, cb] += grad[..., a, b]
    return out


# --------------------------------------------------------------------------
# 1-D convolution
# --------------------------------------------------------------------------


def conv1d_forward(x, w, b=None, stride=1, pads=0, dilation=1, groups=1):
    """Direct 1-D cross-correlation: ``x`` ``(mb, ic, il)``, ``w`` ``(oc, ic/groups, k)``.

    ``pads`` is ``(pl, pr)`` or an int; returns ``(mb, oc, ol)``::

        y[n,o,i] = b[o] + sum_{c,t} xp[n, g*icg + c, i*s + t*d] * w[o,c,t]
    """
    pl, pr = (pads, pads) if np.ndim(pads) == 0 else pads
    mb, ic, il = x.shape
    oc, icg, k = w.shape
    ocg = oc // groups
    ol = (il + pl + pr - dilation * (k - 1) - 1) // stride + 1
    xp = np.pad(x, [(0, 0), (0, 0), (pl, pr)]).reshape(mb, groups, icg, -1)
    wg = w.reshape(groups, ocg, icg, k)
    y = np.zeros((mb, groups, ocg, ol), dtype=np.result_type(x, w))
    for t in range(k):
        patch = xp[..., t * dilation : t * dilation + (ol - 1) * stride + 1 : stride]  # (mb, g, icg, ol)
        y += np.einsum("ngcl,goc->ngol", patch, wg[..., t])
    y = y.reshape(mb, oc, ol)
    if b is not None:
        y = y + b.reshape(1, oc, 1)
    return y


# --------------------------------------------------------------------------
# Transposed convolution, written as the scatter it is
# --------------------------------------------------------------------------


def _transpose_sizes(input_size, kernel_size, stride, padding, output_padding, dilation):
    ih, iw = input_size[-2:]
    kh, kw = kernel_size[-2:]
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (_pair(v) for v in (stride, padding, output_padding, dilation))
    oh = (ih - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (iw - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    return (oh, ow), (sh, sw), (ph, pw), (dh, dw)


def _transpose_taps(input_size, kernel_size, stride, padding, output_padding, dilation):
    """Every ``(i, j, r, s, p, q)``: input pixel ``(i, j)`` meets tap ``(r, s)`` at output ``(p, q)``,
    ``p = i*sh - ph + r*dh``, ``q = j*sw - pw + s*dw``, inside the output."""
    (oh, ow), (sh, sw), (ph, pw), (dh, dw) = _transpose_sizes(
        input_size, kernel_size, stride, padding, output_padding, dilation)
    ih, iw = input_size[-2:]
    kh, kw = kernel_size[-2:]
    for i in range(ih):
        for j in range(iw):
            for r in range(kh):
                for s in range(kw):
                    p, q = i * sh - ph + r * dh, j * sw - pw + s * dw
                    if 0 <= p < oh and 0 <= q < ow:
                        yield i, j, r, s, p, q


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution as a scatter: every input pixel adds its kernel-weighted copy.

    ``x`` ``(mb, ic, ih, iw)``, ``w`` ``(ic, oc/groups, kh, kw)``, ``b`` ``(oc,)`` or None;
    ``padding`` ``(ph, pw)`` crops each side, ``output_padding`` enlarges the bottom/right.
    Returns ``(mb, oc, oh, ow)``, ``oh = (ih-1)*sh - 2*ph + dh*(kh-1) + oph + 1``::

        y[n, g*ocg + o, i*sh - ph + r*dh, j*sw - pw + s*dw] += x[n, c, i, j] * w[c, o, r, s]
    """
    mb, ic, ih, iw = x.shape
    _, ocg, kh, kw = w.shape
    icg = ic // groups
    (oh, ow), *_ = _transpose_sizes(x.shape, w.shape, stride, padding, output_padding, dilation)
    y = np.zeros((mb, ocg * groups, oh, ow), dtype=np.result_type(x, w))
    for i, j, r, s, p, q in _transpose_taps(x.shape, w.shape, stride, padding, output_padding, dilation):
        for c in range(ic):
            g = c // icg
            y[:, g * ocg : (g + 1) * ocg, p, q] += x[:, c, i, j, None] * w[c, :, r, s]
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward_input(delta, w, input_size, stride=1, padding=0, output_padding=0,
                                    dilation=1, groups=1):
    """Gradient of :func:`conv_transpose2d_forward` w.r.t. ``x``: gather what each pixel scattered.

    ``dx[n, c, i, j] = sum_{o,r,s} delta[n, g*ocg + o, p, q] * w[c, o, r, s]`` over the taps
    that landed inside the output.
    """
    mb, ic, ih, iw = input_size
    _, ocg, kh, kw = w.shape
    icg = ic // groups
    dx = np.zeros(input_size, dtype=np.result_type(delta, w))
    for i, j, r, s, p, q in _transpose_taps(input_size, w.shape, stride, padding, output_padding, dilation):
        for c in range(ic):
            g = c // icg
            dx[:, c, i, j] += delta[:, g * ocg : (g + 1) * ocg, p, q] @ w[c, :, r, s]
    return dx


def conv_transpose2d_backward_weight(x, delta, weight_shape, stride=1, padding=0, output_padding=0,
                                     dilation=1, groups=1):
    """Gradient of :func:`conv_transpose2d_forward` w.r.t. ``w``:
    ``dw[c, o, r, s] = sum_{n,i,j} x[n, c, i, j] * delta[n, g*ocg + o, p, q]``."""
    ic, ocg, kh, kw = weight_shape
    icg = ic // groups
    dw = np.zeros(weight_shape, dtype=np.result_type(x, delta))
    for i, j, r, s, p, q in _transpose_taps(x.shape, weight_shape, stride, padding, output_padding, dilation):
        for c in range(ic):
            g = c // icg
            dw[c, :, r, s] += x[:, c, i, j] @ delta[:, g * ocg : (g + 1) * ocg, p, q]
    return dw
