"""Convolution plans: a layer's geometry validated and its paths chosen once, then run many times.

A plan is made from the shapes and the convolution's arguments (``Conv2dPlan(x_shape, w_shape,
...)``); each call then only checks its buffers and runs the native code. The functional API
(:func:`convcore.conv2d` and its gradients) keeps a small cache of plans, and
:class:`convcore.Conv2D` holds its own.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from . import _core
from . import functional as F
from ._layout import layout_of
from ._public import public_dir as _public_dir
from ._shown import shown

__all__ = ["Conv2dPlan", "PLAN_OPS"]
__dir__ = _public_dir(globals())

PLAN_OPS = ("forward", "backward_input", "backward_weight")


def _paths(paths: Optional[Mapping[str, str]]) -> Dict[str, str]:
    if paths is None:
        return {}
    if not isinstance(paths, Mapping):
        msg = f"paths: expected a mapping of op name to path name, got {type(paths).__name__}"
        raise TypeError(msg)
    unknown = [op for op in paths if op not in PLAN_OPS]
    if unknown:
        msg = f"paths: unknown op {unknown[0]!r}; ops: {', '.join(PLAN_OPS)}"
        raise ValueError(msg)
    out = {}
    for op, name in paths.items():
        if name is None or name == "auto":
            continue
        if not isinstance(name, str):
            msg = f"paths[{op!r}]: expected a path name, got {shown(name)}"
            raise TypeError(msg)
        out[op] = name
    return out


class Conv2dPlan(_core.Conv2dPlan):
    """A 2-D convolution planned once for its shapes, dtype and CPU, then run many times.

    ``x_shape`` ``(N, C, H, W)`` or ``(C, H, W)`` (``layout="NHWC"``: ``(N, H, W, C)`` or
    ``(H, W, C)``, and then every activation — input, output and their gradients — is channels
    last); ``w_shape`` ``(oc, C/groups, kh, kw)`` in both layouts;
    ``stride``, ``padding``, ``dilation``, ``groups`` as in :func:`convcore.conv2d`; ``dtype``
    float32 or float64; ``activation`` None, ``"relu"``, ``"sigmoid"`` or ``"tanh"`` (applied by
    ``forward``); ``bias``: whether the layer has one. ``paths`` forces a path per op, e.g.
    ``{"forward": "b_in_place", "backward_input": "flip"}`` (ValueError, listing the supported
    ones, when it does not apply); ``isa`` restricts the kernels to one instruction set and
    ``tile`` to one micro-tile of it, ``"MRxNR"`` (each SIMD instruction set has a wide tile and a
    narrow one for layers with few output channels; ``describe()`` lists them).

    Methods (arrays must have the plan's dtype and shapes; outputs may be given as ``out``):

    - ``forward(x, w, b=None, out=None)`` -> ``y`` of ``output_shape``;
    - ``backward(x, w, dy, *, weight_out=None, bias_out=None, accumulate=False, input_out=None,
      input_grad=True)`` -> ``(dx, dw, db)``, db None without bias, dx None (not computed) with
      ``input_grad=False``;
    - ``backward_input(w, dy, out=None)`` -> ``dx`` of ``input_shape``;
    - ``backward_weight(x, dy, out=None, accumulate=False)`` -> ``dw`` of ``weight_shape``;
    - ``describe()`` -> a dict naming, per op, the path, instruction set and micro-tile chosen
      and every candidate with its modelled cost.
    """

    def __init__(self, x_shape, w_shape, *, stride=1, padding: F.Padding = 0, dilation=1, groups: int = 1,
                 dtype=np.float32, activation: Optional[str] = None, bias: bool = True,
                 paths: Optional[Mapping[str, str]] = None, isa: Optional[str] = None,
                 tile: Optional[str] = None, layout: str = "NCHW"):
        layout = layout_of(layout)
        size, single = F._size(x_shape, "x_shape", layout)
        wshape = F._weight_shape(w_shape, "w_shape")
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            msg = f"dtype: expected float32 or float64, got {dt}"
            raise TypeError(msg)
        forced = _paths(paths)
        g = F._geometry(size, wshape, stride, padding, dilation, groups, layout)
        super().__init__(g, dt.name, single, F._activation(activation), bool(bias), forced.get("forward", ""),
                         forced.get("backward_input", ""), forced.get("backward_weight", ""), isa or "",
                         tile or "")

    @staticmethod
    def path_names() -> Dict[str, Tuple[str, ...]]:
        """Every path name of each op (whether or not it supports a given geometry)."""
        return {op: tuple(_core.plan_path_names(op)) for op in (*PLAN_OPS, "backward_bias")}

    def __repr__(self) -> str:
        d = self.describe()
        ops = ", ".join(f"{op}={d[op]['path']}/{d[op]['isa']}" + (f" {d[op]['tile']}" if "tile" in d[op] else "")
                        for op in PLAN_OPS)
        return f"Conv2dPlan({d['geometry']}, {d['dtype']}, {ops})"
