"""The libraries under test: each one's op callables, its thread count, and the correctness check.

convcore and PyTorch are called on the same NumPy arrays (PyTorch's tensors share their memory);
the NumPy baseline is the textbook im2col + matmul method.
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import Callable, Dict, List, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .suite import Shape

# convcore_heap and torch_heap: convcore and PyTorch timed again, interleaved, in one child process
# started with glibc's heap-reuse settings (timing.run_heap_reuse).
LIBS = ("convcore", "convcore_heap", "torch", "torch_heap", "numpy")
LIB_TITLES = {"convcore": "convcore", "convcore_plan": "convcore plan", "convcore_heap": "convcore(heap)",
              "convcore_plan_heap": "cc plan(heap)", "torch": "torch", "torch_heap": "torch(heap)",
              "numpy": "numpy", "convcore_nhwc": "convcore NHWC", "torch_cl": "torch channels_last"}
# With --layout nhwc: convcore on NHWC arrays and PyTorch on channels_last tensors, timed beside
# their NCHW runs (their results are checked in NCHW order, see comparable()).
NHWC_LIBS = ("convcore_nhwc", "torch_cl")
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}  # max |a - b| / max(1, max |b|)


# ------------------------------------------------------------------------------------ problems


def convcore_ops(s: Shape, x, w, b, dy, method: str = "auto") -> Dict[str, Callable]:
    import convcore as cc

    # The layout is spelled out as convcore_nhwc_ops spells it, so that the two differ only in
    # the layout (a keyword costs a few tens of nanoseconds a call, a percent of the tiny case).
    kw = {"stride": s.stride, "padding": s.pad, "groups": s.groups, "layout": "NCHW"}
    plan = cc.Conv2dPlan(x.shape, w.shape, dtype=x.dtype, paths={"backward_input": method}, **kw)
    return {
        "fwd": lambda: cc.conv2d(x, w, b, **kw),
        "bwd_input": lambda: cc.conv2d_input(x.shape, w, dy, method=method, **kw),
        "bwd_weight": lambda: (cc.conv2d_weight(x, w.shape, dy, **kw), cc.conv2d_bias(dy, layout="NCHW")),
        # A training step as a layer runs it: the forward, then the whole backward in one call
        # (as PyTorch's step below).
        "step": lambda: (cc.conv2d(x, w, b, **kw), cc.conv2d_backward(x, w, dy, method=method, **kw)),
        # The same through a plan made once (the per-call overhead table's "convcore plan" row).
        "plan_fwd": lambda: plan.forward(x, w, b),
        "plan_step": lambda: (plan.forward(x, w, b), plan.backward(x, w, dy)),
    }


def convcore_nhwc_ops(s: Shape, x, w, b, dy, method: str = "auto") -> Dict[str, Callable]:
    """convcore with ``layout="NHWC"`` on channels-last copies of x and dy (made once, untimed)."""
    import convcore as cc

    xh, dyh = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, dy))
    kw = {"stride": s.stride, "padding": s.pad, "groups": s.groups, "layout": "NHWC"}
    return {
        "fwd": lambda: cc.conv2d(xh, w, b, **kw),
        "bwd_input": lambda: cc.conv2d_input(xh.shape, w, dyh, method=method, **kw),
        "bwd_weight": lambda: (cc.conv2d_weight(xh, w.shape, dyh, **kw), cc.conv2d_bias(dyh, layout="NHWC")),
        "step": lambda: (cc.conv2d(xh, w, b, **kw), cc.conv2d_backward(xh, w, dyh, method=method, **kw)),
    }


def comparable(lib: str, op: str, result) -> List[np.ndarray]:
    """A library's result of op as NumPy arrays in NCHW order: the NHWC activations (the output
    of fwd, the input gradient of bwd_input) moved back; weight and bias gradients as they are."""
    arrays = _as_numpy(result)
    if lib == "convcore_nhwc" and op in ("fwd", "bwd_input"):
        arrays[0] = arrays[0].transpose(0, 3, 1, 2)
    return arrays


def torch_ops(s: Shape, x, w, b, dy, channels_last: bool = False) -> Dict[str, Callable]:
    """PyTorch on tensors sharing the NumPy arrays' memory; exactly the gradients asked for. With
    channels_last, x and dy are channels_last copies (made once, untimed)."""
    import torch

    xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
    if channels_last:
        xt, dyt = (t.contiguous(memory_format=torch.channels_last) for t in (xt, dyt))
    stride, padding, dilation = [s.stride] * 2, [s.pad] * 2, [1, 1]
    backward = torch.ops.aten.convolution_backward

    def bwd(mask):
        return backward(dyt, xt, wt, [s.oc], stride, padding, dilation, False, [0, 0], s.groups, mask)

    return {
        "fwd": lambda: torch.conv2d(xt, wt, bt, stride, padding, dilation, s.groups),
        "bwd_input": lambda: bwd([True, False, False])[0],
        "bwd_weight": lambda: bwd([False, True, True])[1:],
        "step": lambda: (torch.conv2d(xt, wt, bt, stride, padding, dilation, s.groups), bwd([True, True, True])),
    }


class NumpyConv:
    """The textbook baseline: im2col with ``sliding_window_view``, one matmul per group, col2im
    by a loop over the kernel offsets."""

    def __init__(self, s: Shape, x, w, b, dy):
        self.s, self.x, self.w, self.b, self.dy = s, x, w, b, dy
        self.icg, self.ocg = s.ic // s.groups, s.oc // s.groups
        self.m = s.mb * s.oh * s.ow
        self.wm = w.reshape(s.groups, self.ocg, self.icg * s.k * s.k)  # (g, ocg, K)

    def _col(self) -> np.ndarray:
        """col[g][(n, i, j)][(c, r, t)]: the im2col copy, (g, mb*oh*ow, icg*k*k)."""
        s, p = self.s, self.s.pad
        xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p))) if p else self.x
        win = sliding_window_view(xp, (s.k, s.k), axis=(2, 3))[:, :, :: s.stride, :: s.stride]
        win = win.reshape(s.mb, s.groups, self.icg, s.oh, s.ow, s.k, s.k)
        return win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(s.groups, self.m, -1)

    def _dy(self, layout: str) -> np.ndarray:
        s = self.s
        d = self.dy.reshape(s.mb, s.groups, self.ocg, s.oh, s.ow)
        if layout == "g,ocg,m":
            return d.transpose(1, 2, 0, 3, 4).reshape(s.groups, self.ocg, self.m)
        return d.transpose(1, 0, 3, 4, 2).reshape(s.groups, self.m, self.ocg)

    def fwd(self) -> np.ndarray:
        s = self.s
        y = np.matmul(self._col(), self.wm.transpose(0, 2, 1))  # (g, m, ocg)
        y = y.reshape(s.groups, s.mb, s.oh, s.ow, self.ocg).transpose(1, 0, 4, 2, 3).reshape(s.mb, s.oc, s.oh, s.ow)
        y += self.b[:, None, None]
        return y

    def bwd_input(self) -> np.ndarray:
        s, k, st = self.s, self.s.k, self.s.stride
        dcol = np.matmul(self._dy("g,m,ocg"), self.wm)  # (g, m, K)
        d = dcol.reshape(s.groups, s.mb, s.oh, s.ow, self.icg, k, k).transpose(1, 0, 4, 2, 3, 5, 6)
        hp, wp = s.ih + 2 * s.pad, s.iw + 2 * s.pad
        dxp = np.zeros((s.mb, s.groups, self.icg, hp, wp), dtype=self.x.dtype)
        for r in range(k):
            for t in range(k):
                dxp[..., r : r + st * (s.oh - 1) + 1 : st, t : t + st * (s.ow - 1) + 1 : st] += d[..., r, t]
        dxp = dxp.reshape(s.mb, s.ic, hp, wp)
        return np.ascontiguousarray(dxp[:, :, s.pad : s.pad + s.ih, s.pad : s.pad + s.iw])

    def bwd_weight(self):
        s = self.s
        dw = np.matmul(self._dy("g,ocg,m"), self._col()).reshape(s.oc, self.icg, s.k, s.k)
        return dw, self.dy.sum(axis=(0, 2, 3))

    def ops(self) -> Dict[str, Callable]:
        return {
            "fwd": self.fwd,
            "bwd_input": self.bwd_input,
            "bwd_weight": self.bwd_weight,
            "step": lambda: (self.fwd(), self.bwd_input(), self.bwd_weight()),
        }


def library_ops(lib: str, s: Shape, arrays, method: str) -> Dict[str, Callable]:
    if lib == "convcore":
        return convcore_ops(s, *arrays, method=method)
    if lib == "convcore_nhwc":
        return convcore_nhwc_ops(s, *arrays, method=method)
    if lib in ("torch", "torch_heap", "torch_cl"):
        return torch_ops(s, *arrays, channels_last=lib == "torch_cl")
    return NumpyConv(s, *arrays).ops()


def _as_numpy(result) -> List[np.ndarray]:
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [np.asarray(r.numpy() if hasattr(r, "numpy") else r) for r in items]


def relative_error(got, want) -> float:
    """max |got - want| / max(1, max |want|) over the arrays of one op's result."""
    err = 0.0
    for g, r in zip(_as_numpy(got), _as_numpy(want)):
        if g.shape != r.shape:
            return math.inf
        scale = max(1.0, float(np.max(np.abs(r), initial=0.0)))
        err = max(err, float(np.max(np.abs(g.astype(np.float64) - r), initial=0.0)) / scale)
    return err


# ------------------------------------------------------------------------------------- threads


class BlasThreads:
    """Pins NumPy's BLAS to a thread count (threadpoolctl when installed, else OpenBLAS by ctypes)."""

    _SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                "openblas_set_num_threads64_", "openblas_set_num_threads")
    _GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                "openblas_get_num_threads64_", "openblas_get_num_threads")

    def __init__(self, threads: int):
        self.threads, self.done, self.how = threads, False, "unchanged"
        self._undo: Optional[Callable[[], None]] = None
        try:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=threads, user_api="blas")
            self._undo, self.done, self.how = limits.restore_original_limits, True, "threadpoolctl"
            return
        except ImportError:
            pass
        for path in self._openblas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in self._SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in self._GETTERS if hasattr(lib, n)), None)
            if setter is None:
                continue
            before = getter() if getter is not None else None
            setter(threads)
            self.done, self.how = True, f"openblas ({os.path.basename(path)})"
            if before is not None:
                self._undo = lambda s=setter, n=before: s(n)
            return

    @staticmethod
    def _openblas_paths() -> List[str]:
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            return []
        return sorted(paths)

    def restore(self) -> None:
        if self._undo is not None:
            self._undo()



def set_threads(threads: int, lib: str = "") -> None:
    import convcore as cc

    cc.set_num_threads(threads)
    if lib.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
