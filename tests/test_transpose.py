"""conv_transpose2d, its gradients and ConvTranspose2D: against the scatter-loop reference,
finite differences and PyTorch (when installed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from conftest import DTYPES, assert_close, assert_matches_torch, f64, reference

import convcore as cc
from convcore.gradcheck import numerical_grad


@dataclasses.dataclass(frozen=True)
class TGeom:
    """A transposed convolution: input (mb, ic, ih, iw), weight (ic, oc/g, kh, kw)."""

    mb: int
    ic: int
    ih: int
    iw: int
    oc: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    ph: int = 0
    pw: int = 0
    oph: int = 0
    opw: int = 0
    dh: int = 1
    dw: int = 1
    g: int = 1

    def __str__(self):
        s = f"g{self.g}" if self.g != 1 else ""
        s += f"mb{self.mb}ic{self.ic}ih{self.ih}iw{self.iw}oc{self.oc}kh{self.kh}kw{self.kw}"
        s += f"sh{self.sh}sw{self.sw}ph{self.ph}pw{self.pw}"
        if (self.oph, self.opw) != (0, 0):
            s += f"oph{self.oph}opw{self.opw}"
        if (self.dh, self.dw) != (1, 1):
            s += f"dh{self.dh}dw{self.dw}"
        return s

    @property
    def kwargs(self):
        return {"stride": (self.sh, self.sw), "padding": (self.ph, self.pw),
                "output_padding": (self.oph, self.opw), "groups": self.g, "dilation": (self.dh, self.dw)}

    @property
    def ref_kwargs(self):
        k = dict(self.kwargs)
        return {**k, "groups": k.pop("groups")}

    @property
    def input_shape(self):
        return (self.mb, self.ic, self.ih, self.iw)

    @property
    def weight_shape(self):
        return (self.ic, self.oc // self.g, self.kh, self.kw)

    @property
    def output_shape(self):
        oh = (self.ih - 1) * self.sh - 2 * self.ph + self.dh * (self.kh - 1) + self.oph + 1
        ow = (self.iw - 1) * self.sw - 2 * self.pw + self.dw * (self.kw - 1) + self.opw + 1
        return (self.mb, self.oc, oh, ow)


T = TGeom

FIXED = [
    T(2, 3, 4, 4, 2, 3, 3),
    T(2, 3, 4, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1),  # the classic upsampling layer
    T(1, 2, 3, 3, 3, 4, 4, 2, 2, 1, 1),  # even kernel, exact doubling
    T(2, 2, 3, 4, 2, 3, 2, 3, 2, 0, 1, 2, 1),  # output_padding up to stride - 1
    T(1, 2, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2),  # output_padding >= stride (< dilation)
    T(1, 2, 3, 5, 2, 2, 3, 1, 2, 0, 0, 1, 2, 2, 3),  # ... on both axes, rows left out
    T(2, 4, 3, 3, 6, 3, 3, 2, 2, 1, 1, 1, 0, g=2),  # groups
    T(2, 3, 4, 4, 3, 3, 3, 2, 2, 1, 1, g=3),  # depthwise
    T(2, 4, 5, 5, 3, 1, 1),  # 1x1
    T(1, 2, 5, 4, 2, 1, 1, 2, 3),  # 1x1 strided: gaps in the output
    T(1, 2, 6, 6, 3, 3, 3, 1, 1, 2, 2),  # padding crops more than k - 1 on nothing
    T(2, 3, 5, 4, 2, 5, 3, 2, 1, 3, 1, 1, 0, 1, 2),
    T(1, 16, 7, 6, 12, 3, 3, 2, 2, 1, 1, 1, 1),  # several GEMM panels
]


def _random(n, seed=5):
    """Random small geometries (all of PyTorch's argument rules hold)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        g = int(rng.integers(1, 4))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 4))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        geom = T(int(rng.integers(1, 3)), g * int(rng.integers(1, 3)), int(rng.integers(1, 6)),
                 int(rng.integers(1, 6)), g * int(rng.integers(1, 3)), kh, kw, sh, sw,
                 int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.integers(0, max(sh, dh))),
                 int(rng.integers(0, max(sw, dw))), dh, dw, g)
        if min(geom.output_shape[2:]) >= 1:
            out.append(geom)
    return out


GEOMS = FIXED + _random(16)
PARAMS = [pytest.param(g, id=str(g)) for g in GEOMS]
SMALL = [pytest.param(g, id=str(g)) for g in (FIXED[1], FIXED[4], FIXED[6], FIXED[11])]


def problem(geom, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    w = rng.standard_normal(geom.weight_shape).astype(dtype)
    b = rng.standard_normal(geom.oc).astype(dtype)
    dy = rng.standard_normal(geom.output_shape).astype(dtype)
    return x, w, b, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", PARAMS)
def test_forward_and_gradients_match_reference(geom, dtype):
    x, w, b, dy = problem(geom, dtype)
    y_ref = reference.conv_transpose2d_forward(*f64(x, w, b), **geom.ref_kwargs)
    for method in ("auto", "flip", "col2im"):
        y = cc.conv_transpose2d(x, w, b, method=method, **geom.kwargs)
        assert y.dtype == dtype and y.shape == geom.output_shape
        assert_close(y, y_ref)
    dx_ref = reference.conv_transpose2d_backward_input(f64(dy), f64(w), geom.input_shape, **geom.ref_kwargs)
    dw_ref = reference.conv_transpose2d_backward_weight(*f64(x, dy), geom.weight_shape, **geom.ref_kwargs)
    db_ref = f64(dy).sum(axis=(0, 2, 3))
    assert_close(cc.conv_transpose2d_input(x.shape, w, dy, **geom.kwargs), dx_ref)
    assert_close(cc.conv_transpose2d_weight(x, w.shape, dy, **geom.kwargs), dw_ref)
    assert_close(cc.conv_transpose2d_bias(dy), db_ref)
    dx, dw, db = cc.conv_transpose2d_backward(x, w, dy, **geom.kwargs)
    assert (dx.dtype, dw.dtype, db.dtype) == (dtype,) * 3
    assert_close(dx, dx_ref)
    assert_close(dw, dw_ref)
    assert_close(db, db_ref)


def test_reference_is_the_adjoint_of_the_convolution():
    """The scatter loop is the conv input gradient (the library-independent identity)."""
    geom = FIXED[1]
    x, w, _, _ = problem(geom)
    (oh, ow) = geom.output_shape[2:]
    # oh rows padded by (1, 0): output_padding 1 with padding 1 leaves no bottom padding
    dx = reference.conv2d_backward_input(x, w, (oh, ow), stride=2, pads=(1, 0, 1, 0), groups=1)
    assert_close(reference.conv_transpose2d_forward(x, w, **geom.ref_kwargs), dx)


def test_no_bias_and_single_sample():
    geom = FIXED[3]
    x, w, b, dy = problem(geom)
    y = cc.conv_transpose2d(x[0], w, None, **geom.kwargs)
    assert y.shape == geom.output_shape[1:]
    assert_close(y, reference.conv_transpose2d_forward(x[:1], w, **geom.ref_kwargs)[0])
    dx = cc.conv_transpose2d_input(x.shape[1:], w, dy[0], **geom.kwargs)
    assert_close(dx, cc.conv_transpose2d_input(x[:1].shape, w, dy[:1], **geom.kwargs)[0])
    dw = cc.conv_transpose2d_weight(x[0], w.shape, dy[0], **geom.kwargs)
    assert_close(dw, reference.conv_transpose2d_backward_weight(x[:1], dy[:1], w.shape, **geom.ref_kwargs))
    dx1, dw1, db1 = cc.conv_transpose2d_backward(x[0], w, dy[0], bias=False, **geom.kwargs)
    assert db1 is None and dx1.shape == x.shape[1:]
    assert_close(dw1, dw)


def test_accumulate_twice_is_twice_one_call():
    geom = FIXED[6]
    x, w, _, dy = problem(geom)
    dw, db = np.zeros_like(w), np.zeros(geom.oc)
    for _ in range(2):
        cc.conv_transpose2d_backward(x, w, dy, weight_out=dw, bias_out=db, accumulate=True, **geom.kwargs)
    one = cc.conv_transpose2d_weight(x, w.shape, dy, **geom.kwargs)
    assert_close(dw, 2 * one)
    assert_close(db, 2 * dy.sum(axis=(0, 2, 3)))
    out = np.full_like(w, np.nan)
    assert cc.conv_transpose2d_weight(x, w.shape, dy, out=out, **geom.kwargs) is out
    assert_close(out, one)


def test_output_size():
    assert cc.conv_transpose2d_output_size((4, 5), 3, stride=2, padding=1, output_padding=1) == (8, 10)
    assert cc.conv_transpose2d_output_size((1, 2, 4, 4), (3, 3), dilation=2, output_padding=1) == (9, 9)
    with pytest.raises(ValueError, match="stride"):
        cc.conv_transpose2d_output_size((4, 4), 3, stride=0)


@pytest.mark.parametrize("geom", SMALL)
def test_finite_differences(geom):
    x, w, b, r = problem(geom, seed=3)

    def loss(x_, w_, b_):
        return float(np.sum(cc.conv_transpose2d(x_, w_, b_, **geom.kwargs) * r))

    dx, dw, db = cc.conv_transpose2d_backward(x, w, r, **geom.kwargs)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [pytest.param(g, id=str(g)) for g in GEOMS[::2]])
def test_against_torch(geom, dtype):
    torch = pytest.importorskip("torch")
    assert_matches_torch(torch, problem(geom), dtype,
                         lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **geom.kwargs),
                         lambda x, w, b: cc.conv_transpose2d(x, w, b, **geom.kwargs),
                         lambda x, w, dy: cc.conv_transpose2d_backward(x, w, dy, **geom.kwargs))


def test_torch_refuses_what_we_refuse():
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 2, 3, 3))
    w = np.zeros((2, 1, 3, 3))
    for kwargs in ({"stride": 2, "output_padding": 2}, {"stride": 1, "output_padding": 1},
                   {"padding": 3}):
        with pytest.raises(RuntimeError):
            torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs)
        with pytest.raises(ValueError):
            cc.conv_transpose2d(x, w, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 2, "output_padding": 2}, "output_padding: must be >= 0 and smaller than either stride or dilation"),
        ({"output_padding": 1}, "output_padding.*stride=\\(1, 1\\), dilation=\\(1, 1\\)"),
        ({"output_padding": -1}, "output_padding"),
        ({"dilation": 2, "output_padding": (1, 2)}, "output_padding"),
        ({"padding": 3}, "output size \\(-1, -1\\)"),
        ({"stride": 0}, "stride"),
        ({"dilation": (1, 0)}, "dilation"),
        ({"padding": -1}, "padding"),
        ({"groups": 3}, "groups: in_channels=2 must be divisible by groups=3"),
        ({"groups": 0}, "groups"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cc.conv_transpose2d(np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 3, 3)), **kwargs)


def test_shape_errors():
    x, w = np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 3, 3))
    with pytest.raises(ValueError, match="weight: expected shape \\(in_channels=2"):
        cc.conv_transpose2d(x, np.zeros((3, 1, 3, 3)))
    with pytest.raises(ValueError, match="bias: expected shape \\(1,\\)"):
        cc.conv_transpose2d(x, w, np.zeros(2))
    with pytest.raises(ValueError, match="input: expected a 4-D"):
        cc.conv_transpose2d(np.zeros((2, 3)), w)
    with pytest.raises(ValueError, match="grad_output: expected shape \\(1, 1, 5, 5\\)"):
        cc.conv_transpose2d_input(x.shape, w, np.zeros((1, 1, 4, 5)))
    with pytest.raises(ValueError, match="grad_output: expected shape"):
        cc.conv_transpose2d_weight(x, w.shape, np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="method"):
        cc.conv_transpose2d(x, w, method="fft")
    with pytest.raises(TypeError, match="bias_out: dtype must be float64"):
        cc.conv_transpose2d_backward(x, w, np.zeros((1, 1, 5, 5)), bias_out=np.zeros(1, np.float32))
    wout = np.ones_like(w)
    with pytest.raises(ValueError, match="bias_out: shape"):
        cc.conv_transpose2d_backward(x, w, np.zeros((1, 1, 5, 5)), weight_out=wout, bias_out=np.zeros(2))
    assert np.all(wout == 1)  # refused before anything was written
    buf = np.zeros(w.size + 1)
    with pytest.raises(ValueError, match="bias_out: must not share memory"):
        cc.conv_transpose2d_backward(x, w, np.zeros((1, 1, 5, 5)), weight_out=buf[:-1].reshape(w.shape),
                                     bias_out=buf[:1])
    with pytest.raises(ValueError, match="accumulate=True needs"):
        cc.conv_transpose2d_backward(x, w, np.zeros((1, 1, 5, 5)), accumulate=True)
    with pytest.raises(TypeError, match="dtype"):
        cc.conv_transpose2d(x.astype(complex), w)


# ------------------------------------------------------------------------------------ the layer


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_matches_functional_and_accumulates(dtype):
    layer = cc.nn.ConvTranspose2D(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=dtype, seed=0)
    assert layer.weight.shape == (4, 3, 3, 3) and layer.weight.dtype == dtype
    assert np.abs(layer.weight).max() <= 1 / np.sqrt(3 * 3 * 3)  # PyTorch's bound, fan_in = 27
    rng = np.random.default_rng(1)
    layer.bias[:] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
    kw = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
    y = layer.forward(x)
    assert y.shape == (2, 6, 10, 10)
    assert_close(y, reference.conv_transpose2d_forward(*f64(x, layer.weight, layer.bias), **kw))
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(g)
    dx2 = layer.backward(g)
    assert_close(dx, reference.conv_transpose2d_backward_input(*f64(g, layer.weight), x.shape, **kw))
    assert_close(dx2, dx)
    dw_ref = reference.conv_transpose2d_backward_weight(*f64(x, g), layer.weight.shape, **kw)
    assert_close(layer.grad_weight, 2 * dw_ref)
    assert_close(layer.grad_bias, 2 * f64(g).sum(axis=(0, 2, 3)))
    w0 = layer.weight.copy()
    layer.step(lr=0.5)
    assert_close(layer.weight, w0 - 0.5 * layer.grad_weight)
    layer.zero_grad()
    assert not layer.grad_weight.any() and not layer.grad_bias.any()
    assert len(layer.parameters()) == 2
    assert "ConvTranspose2D(4, 6" in repr(layer)


def test_layer_against_torch():
    torch = pytest.importorskip("torch")
    layer = cc.nn.ConvTranspose2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                  dilation=(1, 2), dtype=np.float64, seed=2)
    m = torch.nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                 dilation=(1, 2)).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor(layer.weight))
        m.bias.copy_(torch.tensor(layer.bias))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    yt = m(xt)
    g = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    assert_close(layer.forward(x), yt.detach().numpy())
    assert_close(layer.backward(g), xt.grad.numpy())
    assert_close(layer.grad_weight, m.weight.grad.numpy())
    assert_close(layer.grad_bias, m.bias.grad.numpy())


def test_layer_errors():
    layer = cc.nn.ConvTranspose2D(2, 2, 3)
    with pytest.raises(RuntimeError, match="forward first"):
        layer.backward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="input: expected \\(N, 2, H, W\\)"):
        layer.forward(np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="narrowed"):
        layer.forward(np.zeros((1, 2, 3, 3), np.float64))
    layer.forward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="grad_output: expected shape \\(1, 2, 5, 5\\)"):
        layer.backward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        cc.nn.ConvTranspose2D(3, 2, 3, groups=2)
    with pytest.raises(ValueError, match="output_padding"):
        cc.nn.ConvTranspose2D(2, 2, 3, output_padding=1).forward(np.zeros((1, 2, 3, 3), np.float32))


# ------------------------------------------------------------------------- property-based checks

@st.composite
def transposed_problems(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    sh, sw, dh, dw = (draw(st.integers(1, 3)) for _ in range(4))
    geom = T(draw(st.integers(1, 2)), g * draw(st.sampled_from([1, 2, 3, 9])), draw(st.integers(1, 6)),
             draw(st.integers(1, 6)), g * draw(st.sampled_from([1, 2, 3, 17])), draw(st.integers(1, 4)),
             draw(st.integers(1, 4)), sh, sw, draw(st.integers(0, 3)), draw(st.integers(0, 3)),
             draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1)), dh, dw, g)
    assume(min(geom.output_shape[2:]) >= 1)
    return geom, draw(st.sampled_from([np.float32, np.float64])), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(transposed_problems())
def test_property_forward_and_gradients(problem_args):
    geom, dtype, seed = problem_args
    x, w, b, dy = problem(geom, dtype, seed)
    assert_close(cc.conv_transpose2d(x, w, b, **geom.kwargs),
                 reference.conv_transpose2d_forward(*f64(x, w, b), **geom.ref_kwargs))
    dx, dw, db = cc.conv_transpose2d_backward(x, w, dy, **geom.kwargs)
    assert_close(dx, reference.conv_transpose2d_backward_input(f64(dy), f64(w), x.shape, **geom.ref_kwargs))
    assert_close(dw, reference.conv_transpose2d_backward_weight(*f64(x, dy), w.shape, **geom.ref_kwargs))
    assert_close(db, f64(dy).sum(axis=(0, 2, 3)))
