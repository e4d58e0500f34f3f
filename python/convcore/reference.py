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

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "activation_backward",
    "activation_derivative",
    "activation_forward",
    "col2im",
    "conv2d_backward_bias",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_forward",
    "expand_stride",
    "expanded_size",
    "flip_kernels",
    "im2col",
    "output_size",
    "pad",
    "same_pads",
    "sgd_update",
]

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


def output_size(input_size, kernel_size, stride=1, pads=0, dilation=1):
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


def expanded_size(input_size, kernel_size, pads=0, dilation=1):
    """Size ``(eh, ew)`` of the stride-expanded delta: the stride-1 output size.

    ``eh = ih + pt + pb - dh*(kh-1)`` (same for ``ew``).
    """
    ih, iw = input_size[-2:]
    kh, kw = kernel_size[-2:]
    dh, dw = _pair(dilation)
    pt, pb, pl, pr = _pads4(pads)
    return (ih + pt + pb - dh * (kh - 1), iw + pl + pr - dw * (kw - 1))


def same_pads(input_size, kernel_size, stride=1, dilation=1):
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


def pad(x, pads):
    """Zero-pad the last two axes of ``x`` by ``(pt, pb, pl, pr)``.

    ``x[..., h, w]`` -> ``xp[..., pt + h, pl + w]`` with
    shape ``(..., pt + ih + pb, pl + iw + pr)``.
    """
    pt, pb, pl, pr = _pads4(pads)
    widths = [(0, 0)] * (np.ndim(x) - 2) + [(pt, pb), (pl, pr)]
    return np.pad(x, widths)


def expand_stride(delta, stride, expanded_size):
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


def flip_kernels(w, groups=1):
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


def im2col(x, kernel_size, stride=1, pads=0, dilation=1):
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


def col2im(col, input_size, kernel_size, stride=1, pads=0, dilation=1):
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


def conv2d_forward(x, w, b=None, stride=1, pads=0, dilation=1, groups=1):
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


def conv2d_backward_input(delta, w, input_size, stride=1, pads=0, dilation=1, groups=1):
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


def conv2d_backward_weight(x, delta, weight_shape, stride=1, pads=0, dilation=1, groups=1):
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


def conv2d_backward_bias(delta):
    """Tutorial step "gradient of b": ``db[o] = sum_{n,i,j} delta[n,o,i,j]``, shape ``(oc,)``."""
    return delta.sum(axis=(0, 2, 3))


# --------------------------------------------------------------------------
# Update
# --------------------------------------------------------------------------


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, weight_decay=0.0):
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


def activation_forward(y, name):
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


def activation_derivative(a, name):
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


def activation_backward(grad, a, name):
    """Tutorial's ``delta = dE/da * f'(y)``: the layer's own delta from the gradient it receives."""
    return grad * activation_derivative(a, name)
