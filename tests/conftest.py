"""Shared test helpers: problem geometries with canonical ids, random data, tolerances.

Test modules import from here (``from conftest import ...``); pytest puts this
directory on ``sys.path`` before collecting them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import pathlib

import numpy as np
import pytest


def _load_reference():
    """``convcore.reference``, even when the native extension is not built.

    The reference is pure NumPy; loading it from its file keeps
    ``test_reference.py`` runnable without ``convcore._core``.
    """
    try:
        from convcore import reference
    except ImportError:
        path = pathlib.Path(__file__).resolve().parents[1] / "python" / "convcore" / "reference.py"
        spec = importlib.util.spec_from_file_location("convcore_reference", path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
    return reference


reference = _load_reference()


@dataclasses.dataclass(frozen=True)
class Geometry:
    """One convolution problem, printed in benchdnn's canonical form.

    ``padding`` is what the public API receives: an int, a pair
    ``(ph, pw)``, per-side ``((pt, pb), (pl, pr))``, ``"valid"`` or ``"same"``.
    """

    mb: int
    ic: int
    ih: int
    iw: int
    oc: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    padding: object = 0
    dh: int = 1
    dw: int = 1
    g: int = 1

    def __str__(self):
        s = f"g{self.g}" if self.g != 1 else ""
        s += f"mb{self.mb}ic{self.ic}ih{self.ih}iw{self.iw}oc{self.oc}kh{self.kh}kw{self.kw}"
        s += f"sh{self.sh}sw{self.sw}"
        p = self.padding
        if isinstance(p, str):
            s += f"p{p}"
        else:
            pt, pb, pl, pr = self.pads
            if (pt, pl) == (pb, pr):
                s += f"ph{pt}pw{pl}"
            else:
                s += f"pt{pt}pb{pb}pl{pl}pr{pr}"
        if (self.dh, self.dw) != (1, 1):
            s += f"dh{self.dh}dw{self.dw}"
        return s

    @property
    def stride(self):
        return (self.sh, self.sw)

    @property
    def dilation(self):
        return (self.dh, self.dw)

    @property
    def input_shape(self):
        return (self.mb, self.ic, self.ih, self.iw)

    @property
    def weight_shape(self):
        return (self.oc, self.ic // self.g, self.kh, self.kw)

    @property
    def pads(self):
        """Per-side padding ``(pt, pb, pl, pr)``, resolved independently of the library."""
        p = self.padding
        if p == "valid":
            return (0, 0, 0, 0)
        if p == "same":
            return reference.same_pads((self.ih, self.iw), (self.kh, self.kw), self.stride, self.dilation)
        if np.ndim(p) == 0:
            return (p, p, p, p)
        if np.ndim(p[0]) == 0:
            return (p[0], p[0], p[1], p[1])
        (pt, pb), (pl, pr) = p
        return (pt, pb, pl, pr)

    @property
    def output_shape(self):
        oh, ow = reference.output_size((self.ih, self.iw), (self.kh, self.kw), self.stride, self.pads, self.dilation)
        return (self.mb, self.oc, oh, ow)

    @property
    def kwargs(self):
        """Keyword arguments shared by every public convolution function."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.g}

    @property
    def ref_kwargs(self):
        """The same, in the reference's explicit form."""
        return {"stride": self.stride, "pads": self.pads, "dilation": self.dilation, "groups": self.g}


G = Geometry

GEOMETRIES = [
    G(2, 3, 7, 7, 4, 3, 3, padding=1),
    G(2, 3, 7, 7, 4, 3, 3, 2, 2, padding=1),
    G(1, 2, 8, 9, 3, 3, 3, 3, 3),  # stride 3 dividing neither size
    G(2, 2, 6, 6, 3, 3, 3, 2, 2),  # trailing row/column never reach the output
    G(2, 2, 5, 6, 3, 2, 3, 2, 2, padding=3),  # padding > k - 1
    G(1, 3, 7, 8, 2, 3, 3, 2, 2, padding=((0, 2), (1, 0))),  # asymmetric
    G(2, 2, 7, 8, 3, 3, 3, 2, 2, padding="same"),  # asymmetric along w
    G(1, 2, 6, 5, 2, 4, 2, padding="same"),  # even kernel
    G(2, 3, 6, 6, 2, 3, 3, padding="valid"),
    G(2, 4, 5, 5, 3, 1, 1),  # 1x1
    G(2, 4, 6, 7, 3, 1, 1, 2, 2),  # 1x1 stride 2
    G(1, 2, 6, 9, 3, 1, 5, padding=(0, 2)),  # kh != kw
    G(2, 2, 8, 5, 3, 3, 1, 2, 1, padding=(1, 0)),
    G(1, 2, 9, 9, 2, 3, 3, padding=2, dh=2, dw=2),  # dilation 2
    G(2, 2, 10, 9, 3, 3, 2, 2, 3, padding=(2, 1), dh=2, dw=1),
    G(2, 4, 6, 6, 6, 3, 3, padding=1, g=2),  # groups
    G(2, 3, 7, 7, 3, 3, 3, 2, 2, padding=1, g=3),  # depthwise
    G(1, 3, 6, 5, 6, 3, 3, padding=1, g=3),  # depthwise, channel multiplier 2
    G(1, 2, 5, 4, 3, 5, 4),  # kernel covers the whole input: oh = ow = 1
    G(3, 8, 12, 12, 8, 3, 3, padding=1),  # K = ic*kh*kw = 72
    G(1, 16, 23, 21, 24, 5, 5, 2, 2, padding=2),  # K = 400: several GEMM blocks
    G(2, 32, 17, 19, 20, 3, 3, padding=1),  # K = 288, oh*ow = 323
]

GEOMETRY_PARAMS = [pytest.param(g, id=str(g)) for g in GEOMETRIES]

# A few small problems for the slow checks (finite differences, torch).
SMALL_GEOMETRIES = [
    G(2, 2, 5, 5, 3, 3, 3, padding=1),
    G(1, 2, 6, 7, 2, 3, 2, 2, 2, padding=((1, 0), (0, 2))),
    G(1, 2, 7, 7, 2, 3, 3, 3, 3, padding=2, dh=2, dw=2),
    G(2, 4, 5, 5, 4, 3, 3, 2, 1, padding=1, g=2),
    G(1, 3, 5, 6, 3, 2, 3, 2, 2, padding="same", g=3),
]

SMALL_GEOMETRY_PARAMS = [pytest.param(g, id=str(g)) for g in SMALL_GEOMETRIES]

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


@dataclasses.dataclass(frozen=True)
class Pool:
    """A pooling window over (mb, c, ih, iw) inputs; padding (ph, pw) on both sides."""
    mb: int
    c: int
    ih: int
    iw: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int = 0
    pw: int = 0
    dh: int = 1
    dw: int = 1

    def __str__(self):
        s = f"mb{self.mb}ic{self.c}ih{self.ih}iw{self.iw}kh{self.kh}kw{self.kw}sh{self.sh}sw{self.sw}"
        s += f"ph{self.ph}pw{self.pw}"
        return s + (f"dh{self.dh}dw{self.dw}" if (self.dh, self.dw) != (1, 1) else "")

    @property
    def args(self):
        return dict(kernel_size=(self.kh, self.kw), stride=(self.sh, self.sw), padding=(self.ph, self.pw),
                    dilation=(self.dh, self.dw))

    @property
    def shape(self):
        return (self.mb, self.c, self.ih, self.iw)


def fd_check(layer_fn, x, rng, rtol=1e-6, atol=1e-8, params=()):
    """Checks dE/dx and the parameter gradients of E = sum(forward(x) * r) by central
    differences (float64). ``layer_fn`` runs forward and returns (output, the layer to run
    backward on)."""
    from convcore.gradcheck import numerical_grad

    y, layer = layer_fn(x)
    r = rng.standard_normal(y.shape)
    for p in params:
        p.zero_grad()
    dx = layer.backward(r)

    def loss(v):
        return float(np.sum(layer_fn(v)[0] * r))

    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=rtol, atol=atol, err_msg="input")
    assert_param_grads([(p.name, p) for p in params], loss, x, rtol, atol)


def assert_param_grads(named_params, loss, x, rtol, atol):
    """Each parameter's gradient against central differences of ``loss(x)`` with that parameter's
    data replaced (and restored after every evaluation)."""
    from convcore.gradcheck import numerical_grad

    for name, p in named_params:
        def at(v, p=p):
            saved = p.data.copy()
            np.copyto(p.data, v)
            try:
                return loss(x)
            finally:
                np.copyto(p.data, saved)

        np.testing.assert_allclose(p.grad, numerical_grad(at, p.data), rtol=rtol, atol=atol, err_msg=name)


def make_problem(geom, dtype=np.float64, seed=0):
    """Random ``x, w, b, dy`` for ``geom`` in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    w = rng.standard_normal(geom.weight_shape).astype(dtype)
    b = rng.standard_normal(geom.oc).astype(dtype)
    dy = rng.standard_normal(geom.output_shape).astype(dtype)
    return x, w, b, dy


def f64(*arrays):
    """Float64 copies: the reference runs on exactly the same values, more precisely."""
    out = tuple(np.array(a, dtype=np.float64) for a in arrays)  # copies: never aliases an input
    return out[0] if len(out) == 1 else out


def assert_close(got, want, dtype=None, scale=None):
    """``got`` equals ``want`` to the tolerance of ``dtype`` (default: ``got``'s).

    The absolute tolerance is relative to the magnitude of ``want`` (or to
    ``scale``), so that entries that cancel to near zero are judged against the
    size of the terms that produced them.
    """
    got = np.asarray(got)
    want = np.asarray(want)
    tol = TOLERANCE[np.dtype(dtype or got.dtype)]
    assert got.shape == want.shape
    if scale is None:
        scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def assert_matches_torch(torch, arrays, dtype, torch_forward, forward, backward):
    """The forward output and the three gradients of an op against PyTorch's autograd: arrays
    ``(x, w, b, dy)`` in float64 go to ``torch_forward(xt, wt, bt)``; then, cast to dtype, to
    ``forward(x, w, b)`` and ``backward(x, w, dy) -> (dx, dw, db)``."""
    x, w, b, dy = arrays
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch_forward(xt, wt, bt)
    yt.backward(torch.tensor(dy))
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    assert_close(forward(x, w, b), yt.detach().numpy())
    dx, dw, db = backward(x, w, dy)
    assert_close(dx, xt.grad.numpy())
    assert_close(dw, wt.grad.numpy())
    assert_close(db, bt.grad.numpy())


@functools.lru_cache(maxsize=None)
def _needs_torch(function):
    """Whether a test function asks for PyTorch (``pytest.importorskip("torch")`` in its body)."""
    return 'importorskip("torch")' in inspect.getsource(function)


def pytest_collection_modifyitems(items):
    """Marks the PyTorch parity tests ``torch``: every test in ``test_torch.py`` and every test
    that calls ``pytest.importorskip("torch")``, so that ``-m "not torch"`` leaves them out, as
    the wheel builds' tests do (they do not install PyTorch)."""
    for item in items:
        function = getattr(item, "function", None)
        if item.path.name == "test_torch.py" or (function is not None and _needs_torch(function)):
            item.add_marker(pytest.mark.torch)
