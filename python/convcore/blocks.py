"""The layers of a modern CNN beside the convolutions: batch normalisation (native), average
pooling (NCHW on the depthwise convolution, NHWC native), global average pooling, dropout and
residual blocks. The image layers take ``layout="NCHW"`` (the default) or ``"NHWC"``: their
activations are then ``(N, H, W, C)`` and their results the NCHW ones transposed; parameters,
buffers and ``state_dict`` do not depend on the layout (they are per channel).

All follow the :class:`~convcore.Module` protocol (``forward``, ``backward(grad_output,
input_grad=True)``, ``parameters``, ``train``/``eval``, ``state_dict``) and PyTorch's semantics.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from . import _core, _layout
from . import functional as F
from ._shown import shown
from .layers import Module, _call, _check_grad, _layer_input, _need_forward, _takes_input_grad
from .optim import Parameter
from ._public import public_dir as _public_dir

__all__ = ["AvgPool2D", "BatchNorm2D", "Dropout", "GlobalAvgPool2D", "Residual"]
__dir__ = _public_dir(globals())


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        msg = f"dtype: expected float32 or float64, got {dtype}"
        raise TypeError(msg)
    return dtype


def _grad_like(grad_output, shape, dtype, name: str) -> np.ndarray:
    return F._contiguous(_check_grad(grad_output, shape, name), dtype)


def _image(x, name: str, layout: str, channels: Optional[int] = None) -> np.ndarray:
    """x when it is a 4-D activation of ``layout`` (with ``channels`` channels when given);
    ValueError naming the expected shape in that layout otherwise."""
    if x.ndim != 4 or (channels is not None and x.shape[_layout.channels_axis(layout)] != channels):
        want = _layout.shape_text(layout)
        if channels is not None:
            want = want.replace("C", str(channels))
        msg = f"{name}: expected input of shape {want}, got {x.shape}"
        raise ValueError(msg)
    return x


# ------------------------------------------------------------------------------ batch norm


class BatchNorm2D(Module):
    """Batch normalisation over ``(N, C, H, W)``, as ``torch.nn.BatchNorm2d`` (native kernels);
    over ``(N, H, W, C)`` with ``layout="NHWC"`` (channels-last kernels, as PyTorch's
    ``channels_last`` memory format).

    Per channel: ``y = (x - mean) / sqrt(var + eps) * weight + bias``. In training mode (or
    without running statistics) mean and var are the batch's (var biased), and the running
    statistics move towards them: ``running = (1 - momentum) * running + momentum * batch``,
    with the UNBIASED batch variance for ``running_var`` (``momentum=None``: the cumulative
    average, ``1 / num_batches_tracked``). In evaluation mode the running statistics are used.

    ``weight`` (ones) and ``bias`` (zeros) are parameters when ``affine`` (both exempt from
    weight decay); ``running_mean``, ``running_var`` and ``num_batches_tracked`` are buffers in
    :meth:`state_dict`, as PyTorch names them.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32,
                 layout: str = "NCHW"):
        dtype = _float_dtype(dtype)
        self.layout = _layout.layout_of(layout)
        num_features = F._int(num_features, "num_features")
        if num_features < 1:
            msg = f"num_features: must be >= 1, got {num_features}"
            raise ValueError(msg)
        if not (np.isfinite(eps) and eps > 0):
            msg = f"eps: must be finite and > 0, got {eps}"
            raise ValueError(msg)
        if momentum is not None and not 0 <= momentum <= 1:
            msg = f"momentum: must be in [0, 1] or None, got {momentum}"
            raise ValueError(msg)
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        self.weight_param = Parameter(np.ones(num_features, dtype), decay=False, name="weight") if affine else None
        self.bias_param = Parameter(np.zeros(num_features, dtype), decay=False, name="bias") if affine else None
        if track_running_stats:
            self.running_mean = np.zeros(num_features, dtype)
            self.running_var = np.ones(num_features, dtype)
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._dtype = dtype
        self._saved = None  # (input, mean, invstd, batch_stats) of the last forward

    def parameters(self) -> List[Parameter]:
        """weight, then bias (empty without ``affine``)."""
        return [p for p in (self.weight_param, self.bias_param) if p is not None]

    def _own_buffers(self):
        if not self.track_running_stats:
            return []
        return [("running_mean", self.running_mean), ("running_var", self.running_var),
                ("num_batches_tracked", self.num_batches_tracked)]

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` -> normalised ``(N, C, H, W)`` (``(N, H, W, C)`` in NHWC); the input
        and statistics are kept."""
        x = _image(_layer_input(x, self._dtype), "BatchNorm2D", self.layout, self.num_features)
        x = F._contiguous(x, self._dtype)
        batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = 0.0
        if update:
            self.num_batches_tracked += 1
            n = int(self.num_batches_tracked)
            momentum = 1.0 / n if self.momentum is None else float(self.momentum)
        use_running = update or not batch_stats
        out = self._buffer("output", x.shape, self._dtype, self._reuse_output)
        w = None if self.weight_param is None else self.weight_param.data
        b = None if self.bias_param is None else self.bias_param.data
        try:
            y, mean, invstd = _core.batchnorm_forward(
                x, w, b, self.running_mean if use_running else None, self.running_var if use_running else None,
                batch_stats=batch_stats, eps=self.eps, momentum=momentum, out=out, layout=self.layout)
        except ValueError:
            if update:
                self.num_batches_tracked -= 1  # nothing else was changed
            raise
        self._saved = (x, mean, invstd, batch_stats)
        return y

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy -> dE/dx (None with ``input_grad=False``); adds dE/dweight and dE/dbias to the
        gradient buffers. In evaluation mode the statistics are constants."""
        _need_forward(self._saved, "BatchNorm2D")
        x, mean, invstd, batch_stats = self._saved
        dy = _grad_like(grad_output, x.shape, self._dtype, "BatchNorm2D")
        if not input_grad and not self.affine:
            return None
        out = self._buffer("grad_input", x.shape, self._dtype, input_grad and self._reuse_grad)
        w = None if self.weight_param is None else self.weight_param.data
        dx, _, _ = _core.batchnorm_backward(
            x, dy, w, mean, invstd, batch_stats=batch_stats,
            weight_out=None if w is None else self.weight_param.grad,
            bias_out=None if w is None else self.bias_param.grad, accumulate=w is not None,
            input_grad=input_grad, input_out=out, layout=self.layout)
        return dx

    def __repr__(self) -> str:
        layout = "" if self.layout == "NCHW" else f", layout={self.layout!r}"
        return (f"BatchNorm2D({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}{layout})")


# -------------------------------------------------------------------------------- pooling


class AvgPool2D(Module):
    """Average pooling over ``kernel_size`` windows, as ``torch.nn.AvgPool2d`` (no ceil mode).

    ``stride`` defaults to ``kernel_size``; ``padding`` (an int or a pair) adds zeros on both
    sides and must be at most half the kernel. With ``count_include_pad`` the padded zeros count
    in the average (the divisor is ``kh*kw``), otherwise only the input cells in the window do.
    ``(N, C, H, W)`` -> ``(N, C, oh, ow)``, ``oh = (H + 2*ph - kh) // sh + 1``: a depthwise
    convolution with a constant kernel and its input gradient. With ``layout="NHWC"``,
    ``(N, H, W, C)`` -> ``(N, oh, ow, C)``: native channels-last loops (each window's cells
    added a run of channels at a time, then divided by the divisor).
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True,
                 layout: str = "NCHW"):
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")
        self.padding = F._pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            msg = (f"AvgPool2D: kernel_size {self.kernel_size} and stride {self.stride} must be >= 1, "
                   f"padding {self.padding} >= 0")
            raise ValueError(msg)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            msg = f"padding: must be at most half the kernel size {self.kernel_size}, got {self.padding}"
            raise ValueError(msg)
        self.count_include_pad = bool(count_include_pad)
        self.layout = _layout.layout_of(layout)
        self._state = None  # NCHW: (plan, weight, scale or None, input shape)
        self._nhwc = None  # NHWC: (geometry, dtype, input shape)

    def _setup(self, shape, dtype):
        if self._state is not None and self._state[3] == shape and self._state[1].dtype == dtype:
            return self._state
        n, c, h, w = shape
        kh, kw = self.kernel_size
        ph, pw = self.padding
        plan = F._plan(shape, (c, 1, kh, kw), self.stride, self.padding, 1, c, dtype, "identity", False)
        oh, ow = plan.output_shape[2:]
        if self.count_include_pad:
            weight, scale = np.full((c, 1, kh, kw), 1.0 / (kh * kw), dtype), None
        else:  # cells of the input under each window, rows times columns
            rows = [min(i * self.stride[0] - ph + kh, h) - max(i * self.stride[0] - ph, 0) for i in range(oh)]
            cols = [min(j * self.stride[1] - pw + kw, w) - max(j * self.stride[1] - pw, 0) for j in range(ow)]
            weight = np.ones((c, 1, kh, kw), dtype)
            scale = (1.0 / np.outer(rows, cols)).astype(dtype)
        self._state = (plan, weight, scale, tuple(shape))
        return self._state

    def _forward_nhwc(self, x) -> np.ndarray:
        n, h, w, c = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        g = _core.Geometry(n, c, h, w, c, kh, kw, sh, sw, ph, ph, pw, pw, 1, 1, c, "NHWC")
        out = self._buffer("output", (n, g.oh, g.ow, c), x.dtype, self._reuse_output)
        y = _core.avg_pool2d_forward(g, x, self.count_include_pad, out=out)
        self._nhwc = (g, x.dtype, x.shape)
        return y

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` -> window averages ``(N, C, oh, ow)`` (``(N, H, W, C)`` ->
        ``(N, oh, ow, C)`` in NHWC)."""
        x = _image(F._array(x, "input"), "AvgPool2D", self.layout)
        x = F._contiguous(x, F._dtype(x))
        if self.layout == "NHWC":
            return self._forward_nhwc(x)
        plan, weight, scale, _ = self._setup(x.shape, x.dtype)
        out = self._buffer("output", plan.output_shape, x.dtype, self._reuse_output)
        y = plan.forward(x, weight, None, out=out)
        if scale is not None:
            y *= scale
        return y

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy -> dE/dx: each output's gradient spread evenly over its window's cells."""
        if self.layout == "NHWC":
            _need_forward(self._nhwc, "AvgPool2D")
            g, dtype, shape = self._nhwc
            dy = _grad_like(grad_output, (g.mb, g.oh, g.ow, g.ic), dtype, "AvgPool2D")
            if not input_grad:
                return None
            out = self._buffer("grad_input", shape, dtype, self._reuse_grad)
            return _core.avg_pool2d_backward(g, dy, self.count_include_pad, out=out)
        _need_forward(self._state, "AvgPool2D")
        plan, weight, scale, shape = self._state
        dy = _grad_like(grad_output, plan.output_shape, weight.dtype, "AvgPool2D")
        if not input_grad:
            return None
        if scale is not None:
            dy = dy * scale
        out = self._buffer("grad_input", shape, weight.dtype, self._reuse_grad)
        return plan.backward_input(weight, dy, out=out)

    def __repr__(self) -> str:
        layout = "" if self.layout == "NCHW" else f", layout={self.layout!r}"
        return (f"AvgPool2D(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"count_include_pad={self.count_include_pad}{layout})")


class GlobalAvgPool2D(Module):
    """The mean of every channel's plane: ``(N, C, H, W)`` -> ``(N, C)`` (as
    ``torch.nn.AdaptiveAvgPool2d(1)`` followed by flattening); ``(N, H, W, C)`` -> ``(N, C)``
    with ``layout="NHWC"`` (the mean over axes 1 and 2)."""

    def __init__(self, layout: str = "NCHW"):
        self.layout = _layout.layout_of(layout)
        self._shape: Optional[Tuple[int, ...]] = None

    def forward(self, x) -> np.ndarray:
        """``(N, C, H, W)`` (``(N, H, W, C)`` in NHWC) -> ``(N, C)``."""
        x = _image(F._array(x, "input"), "GlobalAvgPool2D", self.layout)
        self._shape = x.shape
        c = x.shape[_layout.channels_axis(self.layout)]
        out = self._buffer("output", (x.shape[0], c), x.dtype, self._reuse_output)
        return np.mean(x, axis=(1, 2) if self.layout == "NHWC" else (2, 3), out=out)

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """``(N, C)`` -> the input's shape: each gradient divided evenly over its plane."""
        _need_forward(self._shape, "GlobalAvgPool2D")
        nhwc = self.layout == "NHWC"
        n, c = self._shape[0], self._shape[3 if nhwc else 1]
        g = np.asarray(grad_output)
        g = _grad_like(g, (n, c), g.dtype if g.dtype.kind == "f" else np.float64, "GlobalAvgPool2D")
        if not input_grad:
            return None
        out = self._buffer("grad_input", self._shape, g.dtype, self._reuse_grad)
        if out is None:
            out = np.empty(self._shape, g.dtype)
        plane = self._shape[1] * self._shape[2] if nhwc else self._shape[2] * self._shape[3]
        spread = g[:, None, None, :] if nhwc else g[:, :, None, None]
        np.multiply(spread, g.dtype.type(1.0 / plane), out=out)
        return out

    def __repr__(self) -> str:
        return "GlobalAvgPool2D()" if self.layout == "NCHW" else f"GlobalAvgPool2D(layout={self.layout!r})"


# -------------------------------------------------------------------------------- dropout


class Dropout(Module):
    """Inverted dropout: in training mode each element is zeroed with probability ``p`` and the
    others are scaled by ``1/(1-p)``; in evaluation mode the layer is the identity.

    The masks come from ``numpy.random.default_rng(seed)``: the same seed gives the same masks
    in the same order. ``backward`` applies the last forward pass's mask.
    """

    def __init__(self, p: float = 0.5, seed: Optional[int] = None):
        if not (isinstance(p, (int, float, np.floating)) and 0 <= p <= 1):
            msg = f"p: dropout probability must be in [0, 1], got {shown(p)}"
            raise ValueError(msg)
        self.p = float(p)
        self._rng = np.random.default_rng(seed)
        self._mask: Optional[np.ndarray] = None  # scaled keep-mask of the last training forward
        self._shape: Optional[Tuple[int, ...]] = None

    def forward(self, x) -> np.ndarray:
        """Any shape -> the same shape (new array unless inside a container)."""
        x = F._array(x, "input")
        self._shape = x.shape
        if not self.training or self.p == 0:
            self._mask = None
            return x if self._reuse_output else x.copy()
        keep = self._rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        dtype = x.dtype if x.dtype.kind == "f" else np.float64
        self._mask = keep.astype(dtype) * dtype.type(scale)
        out = self._buffer("output", x.shape, dtype, self._reuse_output)
        return np.multiply(x, self._mask, out=out)

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy -> dE/dx: the gradient through the same mask (unchanged in evaluation mode)."""
        _need_forward(self._shape, "Dropout")
        g = np.asarray(grad_output)
        if g.shape != self._shape:
            msg = f"Dropout.backward: grad_output must have shape {self._shape}, got {g.shape}"
            raise ValueError(msg)
        if not input_grad:
            return None
        if self._mask is None:
            return g if self._reuse_grad else g.copy()
        out = self._buffer("grad_input", g.shape, np.result_type(g, self._mask), self._reuse_grad)
        return np.multiply(g, self._mask, out=out)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


# ------------------------------------------------------------------------------- residual


def _backward(layer, takes_input_grad: bool, g, input_grad: bool):
    """``layer.backward(g, input_grad=...)``, or ``layer.backward(g)`` for layers without the flag;
    the input gradient it returns goes only to the caller's sum, so the layer may write it into a
    buffer it keeps."""
    if takes_input_grad:
        return _call(layer, "_reuse_grad", input_grad, lambda a: layer.backward(a, input_grad=input_grad), g)
    return _call(layer, "_reuse_grad", True, layer.backward, g)


class Residual(Module):
    """``block(x) + projection(x)`` (``+ x`` without a projection), as in a ResNet.

    ``backward`` sends the output gradient through both branches and returns the sum of their
    input gradients. Parameters are the block's, then the projection's, named ``"block.*"`` and
    ``"projection.*"``. The branches' outputs and input gradients go only into the sums, so the
    branches keep and reuse their buffers for them; the sums go into kept buffers only when a
    container says they may.
    """

    def __init__(self, block, projection=None):
        for name, layer in (("block", block), ("projection", projection)):
            if layer is None and name == "projection":
                continue
            if not all(callable(getattr(layer, a, None)) for a in ("forward", "backward", "parameters")):
                msg = f"Residual: {name} ({type(layer).__name__}) needs forward, backward and parameters methods"
                raise TypeError(msg)
        self.block, self.projection = block, projection
        self._takes = (_takes_input_grad(block), projection is not None and _takes_input_grad(projection))
        self._shape: Optional[Tuple[int, ...]] = None

    def _children(self):
        return [("block", self.block)] + ([("projection", self.projection)] if self.projection is not None else [])

    def parameters(self) -> List[Parameter]:
        return [p for _, layer in self._children() for p in layer.parameters()]

    def forward(self, x) -> np.ndarray:
        """``block(x) + (projection or identity)(x)``; the two must have the same shape."""
        # The branches' outputs go only into the sum below: they may come from kept buffers.
        a = np.asarray(_call(self.block, "_reuse_output", True, self.block.forward, x))
        b = np.asarray(x if self.projection is None else
                       _call(self.projection, "_reuse_output", True, self.projection.forward, x))
        if a.shape != b.shape:
            other = "the input" if self.projection is None else "projection(x)"
            msg = f"Residual: block(x) has shape {a.shape} but {other} has shape {b.shape}; they must match"
            raise ValueError(msg)
        self._shape = np.shape(x)
        out = self._buffer("output", a.shape, np.result_type(a, b), self._reuse_output)
        return np.add(a, b, out=out)

    def backward(self, grad_output, input_grad: bool = True) -> Optional[np.ndarray]:
        """dE/dy -> dE/dx = block's input gradient + projection's (or dE/dy itself); every
        parameter gradient is added to (None, input gradients not computed, with
        ``input_grad=False``)."""
        _need_forward(self._shape, "Residual")
        g = np.asarray(grad_output)
        ga = _backward(self.block, self._takes[0], g, input_grad)
        gb = g if self.projection is None else _backward(self.projection, self._takes[1], g, input_grad)
        if not input_grad:
            return None
        ga, gb = np.asarray(ga), np.asarray(gb)
        if ga.shape != self._shape or gb.shape != self._shape:
            msg = f"Residual.backward: the branches' input gradients {ga.shape}, {gb.shape} are not {self._shape}"
            raise ValueError(msg)
        out = self._buffer("grad_input", self._shape, np.result_type(ga, gb), self._reuse_grad)
        return np.add(ga, gb, out=out)

    def __repr__(self) -> str:
        proj = "" if self.projection is None else f",\n  projection={self.projection!r}"
        return f"Residual(\n  block={self.block!r}{proj}\n)"
