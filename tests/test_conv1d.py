"""conv1d, its gradients and Conv1D: against the direct-loop reference, finite differences and
PyTorch (when installed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import DTYPES, assert_close, assert_matches_torch, f64, reference

import convcore as cc
from convcore.gradcheck import numerical_grad


@dataclasses.dataclass(frozen=True)
class G1:
    mb: int
    ic: int
    il: int
    oc: int
    k: int
    s: int = 1
    pl: int = 0
    pr: int = 0
    d: int = 1
    g: int = 1

    def __str__(self):
        s = f"g{self.g}" if self.g != 1 else ""
        return s + f"mb{self.mb}ic{self.ic}il{self.il}oc{self.oc}k{self.k}s{self.s}pl{self.pl}pr{self.pr}d{self.d}"

    @property
    def padding(self):
        return self.pl if self.pl == self.pr else (self.pl, self.pr)

    @property
    def kwargs(self):
        return {"stride": self.s, "padding": self.padding, "dilation": self.d, "groups": self.g}

    @property
    def ref_kwargs(self):
        return {"stride": self.s, "pads": (self.pl, self.pr), "dilation": self.d, "groups": self.g}

    @property
    def input_shape(self):
        return (self.mb, self.ic, self.il)

    @property
    def weight_shape(self):
        return (self.oc, self.ic // self.g, self.k)

    @property
    def output_shape(self):
        return (self.mb, self.oc, (self.il + self.pl + self.pr - self.d * (self.k - 1) - 1) // self.s + 1)


FIXED = [
    G1(2, 3, 9, 4, 3, pl=1, pr=1),
    G1(2, 3, 10, 4, 3, 2, 1, 1),
    G1(1, 2, 11, 3, 4, 3),  # stride dividing nothing: trailing samples never reach the output
    G1(2, 4, 8, 6, 3, 1, 2, 2, 2, g=2),
    G1(2, 3, 7, 3, 3, 2, 1, 1, g=3),  # depthwise
    G1(1, 2, 6, 3, 2, 1, 0, 1),  # asymmetric padding
    G1(3, 16, 33, 24, 5, 2, 2, 2),  # several GEMM panels
    G1(2, 4, 5, 3, 1),  # k = 1
]


def _random(n, seed=11):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        g = int(rng.integers(1, 4))
        geom = G1(int(rng.integers(1, 3)), g * int(rng.integers(1, 3)), int(rng.integers(1, 12)),
                  g * int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 4)),
                  int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.integers(1, 3)), g)
        if geom.output_shape[2] >= 1:
            out.append(geom)
    return out


GEOMS = FIXED + _random(12)
PARAMS = [pytest.param(g, id=str(g)) for g in GEOMS]


def problem(geom, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(geom.input_shape).astype(dtype), rng.standard_normal(geom.weight_shape).astype(dtype),
            rng.standard_normal(geom.oc).astype(dtype), rng.standard_normal(geom.output_shape).astype(dtype))


def _as2d(a):
    return a[:, :, None, :]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", PARAMS)
def test_forward_and_gradients_match_reference(geom, dtype):
    x, w, b, dy = problem(geom, dtype)
    y = cc.conv1d(x, w, b, **geom.kwargs)
    assert y.dtype == dtype and y.shape == geom.output_shape
    assert_close(y, reference.conv1d_forward(*f64(x, w, b), **geom.ref_kwargs))
    # the gradients: the tutorial's 2-D reference steps on height-1 arrays
    pads = (0, 0, geom.pl, geom.pr)
    ref2 = {"stride": (1, geom.s), "pads": pads, "dilation": (1, geom.d), "groups": geom.g}
    dx_ref = reference.conv2d_backward_input(_as2d(f64(dy)), _as2d(f64(w)), (1, geom.il), **ref2)[:, :, 0]
    dw_ref = reference.conv2d_backward_weight(_as2d(f64(x)), _as2d(f64(dy)), (*w.shape[:2], 1, geom.k),
                                              **ref2)[:, :, 0]
    db_ref = f64(dy).sum(axis=(0, 2))
    for method in ("flip", "col2im"):
        assert_close(cc.conv1d_input(x.shape, w, dy, method=method, **geom.kwargs), dx_ref)
    assert_close(cc.conv1d_weight(x, w.shape, dy, **geom.kwargs), dw_ref)
    assert_close(cc.conv1d_bias(dy), db_ref)
    dx, dw, db = cc.conv1d_backward(x, w, dy, **geom.kwargs)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, (geom.oc,))
    assert_close(dx, dx_ref)
    assert_close(dw, dw_ref)
    assert_close(db, db_ref)


def test_reference_conv1d_is_the_2d_reference_with_height_1():
    geom = FIXED[3]
    x, w, b, _ = problem(geom)
    y2 = reference.conv2d_forward(_as2d(x), _as2d(w), b, stride=(1, 1), pads=(0, 0, 2, 2), dilation=(1, 2), groups=2)
    assert_close(reference.conv1d_forward(x, w, b, **geom.ref_kwargs), y2[:, :, 0])


def test_single_sample_strings_and_activation():
    geom = FIXED[0]
    x, w, b, dy = problem(geom)
    assert_close(cc.conv1d(x[0], w, b, padding=1), cc.conv1d(x[:1], w, b, padding=1)[0])
    assert_close(cc.conv1d_input(x.shape[1:], w, dy[0], padding=1), cc.conv1d_input(x[:1].shape, w, dy[:1], padding=1)[0])
    assert_close(cc.conv1d_weight(x[0], w.shape, dy[0], padding=(1,)), cc.conv1d_weight(x[:1], w.shape, dy[:1], padding=1))
    assert_close(cc.conv1d_bias(dy[0]), dy[0].sum(axis=1))
    dx, _, db = cc.conv1d_backward(x[0], w, dy[0], padding=1, bias=False)
    assert dx.shape == x.shape[1:] and db is None
    assert cc.conv1d(x, w, padding="same").shape == x.shape[:1] + (geom.oc, geom.il)
    assert cc.conv1d(x, w, padding="valid").shape == (2, 4, 7)
    y = cc.conv1d(x, w, b, stride=(2,), padding=1, activation="tanh")
    assert_close(y, np.tanh(reference.conv1d_forward(x, w, b, stride=2, pads=1)))


def test_out_buffers_are_written_in_place_and_accumulate():
    geom = FIXED[3]
    x, w, _, dy = problem(geom)
    dw, db = np.zeros_like(w), np.zeros(geom.oc)
    for _ in range(2):
        r = cc.conv1d_backward(x, w, dy, weight_out=dw, bias_out=db, accumulate=True, **geom.kwargs)
        assert r[1] is dw and r[2] is db
    one = cc.conv1d_weight(x, w.shape, dy, **geom.kwargs)
    assert_close(dw, 2 * one)
    out = np.full_like(w, np.nan)
    assert cc.conv1d_weight(x, w.shape, dy, out=out, **geom.kwargs) is out
    assert_close(out, one)
    with pytest.raises(ValueError, match="C-contiguous"):
        cc.conv1d_weight(x, w.shape, dy, out=np.zeros(w.shape[::-1]).T, **geom.kwargs)
    with pytest.raises(ValueError, match="out: shape must be"):
        cc.conv1d_weight(x, w.shape, dy, out=np.zeros((1, 2, 3)), **geom.kwargs)


@pytest.mark.parametrize("geom", [pytest.param(g, id=str(g)) for g in (FIXED[1], FIXED[3], FIXED[5])])
def test_finite_differences(geom):
    x, w, b, r = problem(geom, seed=2)

    def loss(x_, w_, b_):
        return float(np.sum(cc.conv1d(x_, w_, b_, **geom.kwargs) * r))

    dx, dw, db = cc.conv1d_backward(x, w, r, **geom.kwargs)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [pytest.param(g, id=str(g)) for g in GEOMS if g.pl == g.pr][::2])
def test_against_torch(geom, dtype):
    torch = pytest.importorskip("torch")
    assert_matches_torch(torch, problem(geom), dtype,
                         lambda x, w, b: torch.nn.functional.conv1d(x, w, b, **geom.kwargs),
                         lambda x, w, b: cc.conv1d(x, w, b, **geom.kwargs),
                         lambda x, w, dy: cc.conv1d_backward(x, w, dy, **geom.kwargs))


def test_errors():
    x, w = np.zeros((1, 2, 5)), np.zeros((3, 2, 3))
    with pytest.raises(ValueError, match="input: expected a 3-D \\(N, C, L\\)"):
        cc.conv1d(np.zeros((1, 2, 5, 5)), w)
    with pytest.raises(ValueError, match="weight: expected a 3-D"):
        cc.conv1d(x, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="stride: expected an int or a 1-tuple"):
        cc.conv1d(x, w, stride=(1, 2))
    with pytest.raises(ValueError, match="stride"):
        cc.conv1d(x, w, stride=0)
    with pytest.raises(ValueError, match="kernel"):
        cc.conv1d(x, np.zeros((3, 2, 7)))
    with pytest.raises(ValueError, match="padding"):
        cc.conv1d(x, w, padding=-1)
    with pytest.raises(ValueError, match="groups"):
        cc.conv1d(x, np.zeros((3, 1, 3)), groups=2)
    with pytest.raises(ValueError, match="input_size: expected \\(N, C, L\\) or \\(C, L\\)"):
        cc.conv1d_input((1, 2, 5, 5), w, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="grad_output"):
        cc.conv1d_input(x.shape, w, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="weight_size"):
        cc.conv1d_weight(x, (3, 2, 3, 1), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="grad_output: expected a 3-D"):
        cc.conv1d_bias(np.zeros(3))


# ------------------------------------------------------------------------------------ the layer


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer(dtype):
    layer = cc.nn.Conv1D(4, 6, 3, stride=2, padding=1, groups=2, activation="relu", dtype=dtype, seed=0)
    assert layer.weight.shape == (6, 2, 3) and layer.weight.dtype == dtype
    assert np.abs(layer.weight).max() <= np.sqrt(6 / 6)
    plain = cc.nn.Conv1D(4, 6, 3, groups=2, seed=0)
    assert np.abs(plain.weight).max() <= 1 / np.sqrt(6)  # PyTorch's bound, fan_in = 2 * 3
    rng = np.random.default_rng(1)
    layer.bias[:] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 9)).astype(dtype)
    kw = {"stride": 2, "pads": 1, "groups": 2}
    y_lin = reference.conv1d_forward(*f64(x, layer.weight, layer.bias), **kw)
    y = layer.forward(x)
    assert_close(y, np.maximum(y_lin, 0))
    g = rng.standard_normal(y.shape).astype(dtype)
    delta = f64(g) * (y_lin > 0)
    dx = layer.backward(g)
    ref2 = {"stride": (1, 2), "pads": (0, 0, 1, 1), "groups": 2}
    w4 = _as2d(f64(layer.weight))
    assert_close(dx, reference.conv2d_backward_input(_as2d(delta), w4, (1, 9), **ref2)[:, :, 0])
    assert_close(layer.grad_weight, reference.conv2d_backward_weight(_as2d(f64(x)), _as2d(delta), w4.shape, **ref2)[:, :, 0])
    assert_close(layer.grad_bias, delta.sum(axis=(0, 2)))
    w0 = layer.weight.copy()
    layer.step(lr=0.1)
    assert_close(layer.weight, w0 - 0.1 * layer.grad_weight)
    layer.zero_grad()
    assert not layer.grad_weight.any()
    assert "Conv1D(4, 6" in repr(layer)


def test_layer_against_torch():
    torch = pytest.importorskip("torch")
    layer = cc.nn.Conv1D(3, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect", dtype=np.float64, seed=1)
    m = torch.nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect").double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor(layer.weight))
        m.bias.copy_(torch.tensor(layer.bias))
    x = np.random.default_rng(0).standard_normal((2, 3, 10))
    xt = torch.tensor(x, requires_grad=True)
    yt = m(xt)
    g = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    assert_close(layer.forward(x), yt.detach().numpy())
    assert_close(layer.backward(g), xt.grad.numpy())
    assert_close(layer.grad_weight, m.weight.grad.numpy())
    assert_close(layer.grad_bias, m.bias.grad.numpy())


def test_layer_errors():
    layer = cc.nn.Conv1D(2, 3, 3)
    with pytest.raises(RuntimeError, match="forward first"):
        layer.backward(np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="input: expected \\(N, 2, L\\)"):
        layer.forward(np.zeros((1, 3, 5), np.float32))
    with pytest.raises(TypeError, match="narrowed"):
        layer.forward(np.zeros((1, 2, 5), np.float64))
    layer.forward(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="grad_output: expected shape \\(3, 3\\)"):
        layer.backward(np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="padding_mode"):
        cc.nn.Conv1D(2, 3, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="divisible by groups"):
        cc.nn.Conv1D(3, 3, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size: expected an int or a 1-tuple"):
        cc.nn.Conv1D(2, 3, (3, 3))
    assert cc.nn.Conv1D(2, 3, (4,)).weight.shape == (3, 2, 4)
