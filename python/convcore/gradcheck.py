"""Finite-difference gradient checks.

:func:`numerical_grad` estimates the gradient of any scalar function of one
array by central differences.  :func:`check_conv2d_gradients` uses it to check
the library's input, weight and bias gradients of a convolution (with an
optional activation) against the forward pass, in the spirit of Caffe's
``GradientChecker`` and ``torch.autograd.gradcheck``::

    import numpy as np
    from convcore.gradcheck import check_conv2d_gradients

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    check_conv2d_gradients(x, w, rng.standard_normal(4), stride=2, padding=1, activation="tanh")

Checks run in float64: float32 rounding would swamp the differences.
"""

from __future__ import annotations

import numpy as np

from ._public import public_dir as _public_dir

__all__ = ["GradcheckError", "check_conv2d_gradients", "numerical_grad"]
__dir__ = _public_dir(globals())


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        Takes an array shaped like ``x`` and returns a scalar.
    x : array_like
        The point; converted to a float64 copy (``x`` itself is never modified).
    eps : float
        Step: ``df/dx[i] ~ (f(x + eps*e_i) - f(x - eps*e_i)) / (2*eps)``.

    Returns
    -------
    numpy.ndarray
        float64, shaped like ``x``.  ``f`` is called ``2 * x.size`` times.
    """
    x = np.array(x, dtype=np.float64)  # a private copy, perturbed in place
    grad = np.empty_like(x)
    flat_x = x.reshape(-1)
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + eps
        f_plus = float(f(x))
        flat_x[i] = saved - eps
        f_minus = float(f(x))
        flat_x[i] = saved
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_conv2d_gradients(
    input,  # PyTorch's name
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    activation=None,
    *,
    grad_output=None,
    eps=1e-6,
    rtol=1e-5,
    atol=1e-7,
    seed=0,
    raise_exception=True,
):
    """Check ``conv2d_input``, ``conv2d_weight`` and ``conv2d_bias`` by finite differences.

    The scalar loss is ``L = sum(conv2d(input, weight, bias, ...) * R)`` where
    ``R`` is ``grad_output`` (random normal from ``seed`` when None), so that
    ``dL/da = R``.  The analytic gradients are computed the way a layer does:
    ``delta = activation_backward(R, a, activation)``, then the three gradient
    functions on ``delta``.  Each is compared with :func:`numerical_grad` of
    ``L``; an entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.

    All arrays are taken in float64.  ``input`` is ``(N, C, H, W)`` or
    ``(C, H, W)``; the other arguments are those of :func:`convcore.conv2d`.

    Returns
    -------
    bool
        True when every gradient passes.  Otherwise raises :class:`GradcheckError`
        naming the worst entry, or returns False with ``raise_exception=False``.
    """
    import convcore  # here: the package imports this module

    x = np.array(input, dtype=np.float64)
    w = np.array(weight, dtype=np.float64)
    b = None if bias is None else np.array(bias, dtype=np.float64)
    conv = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}

    a = convcore.conv2d(x, w, b, activation=activation, **conv)
    if grad_output is None:
        r = np.random.default_rng(seed).standard_normal(a.shape)
    else:
        r = np.array(grad_output, dtype=np.float64)
        if r.shape != a.shape:
            msg = f"check_conv2d_gradients: grad_output has shape {r.shape}, the output has {a.shape}"
            raise ValueError(msg)

    delta = convcore.activation_backward(r, a, activation)
    analytic = {
        "input": convcore.conv2d_input(x.shape, w, delta, **conv),
        "weight": convcore.conv2d_weight(x, w.shape, delta, **conv),
    }

    def loss(x_, w_, b_):
        return np.sum(convcore.conv2d(x_, w_, b_, activation=activation, **conv) * r)

    numeric = {
        "input": numerical_grad(lambda x_: loss(x_, w, b), x, eps),
        "weight": numerical_grad(lambda w_: loss(x, w_, b), w, eps),
    }
    if b is not None:
        analytic["bias"] = convcore.conv2d_bias(delta)
        numeric["bias"] = numerical_grad(lambda b_: loss(x, w, b_), b, eps)

    for name, got in analytic.items():
        want = numeric[name]
        if got.shape != want.shape:
            msg = f"gradient of {name}: shape {got.shape}, expected {want.shape}"
            if raise_exception:
                raise GradcheckError(msg)
            return False
        excess = np.abs(got - want) - (atol + rtol * np.abs(want))
        if np.any(excess > 0) or not np.all(np.isfinite(got)):
            idx = np.unravel_index(np.nanargmax(np.where(np.isfinite(got), excess, np.inf)), got.shape)
            msg = (
                f"gradient of {name} at index {tuple(int(i) for i in idx)}: analytic {got[idx]!r}, "
                f"numerical {want[idx]!r} (rtol={rtol}, atol={atol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
