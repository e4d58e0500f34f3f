"""Cross-check against PyTorch's conv2d and autograd, when PyTorch is installed."""

import numpy as np
import pytest
from conftest import DTYPES, GEOMETRIES, Geometry, assert_close, make_problem

import convcore as cc

torch = pytest.importorskip("torch")

TORCH_GEOMETRIES = [
    *GEOMETRIES[::2],
    Geometry(2, 6, 9, 8, 4, 3, 3, 2, 2, padding=((2, 1), (0, 3)), dh=2, dw=1, g=2),
]


def torch_conv2d(x, w, b, dy, geom, activation=None):
    """Output and the gradients of ``sum(a * dy)`` with respect to ``x, w, b``, in PyTorch."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    pt, pb, pl, pr = geom.pads
    # torch pads symmetrically: pad explicitly, autograd crops the gradient back
    xp = torch.nn.functional.pad(xt, (pl, pr, pt, pb))
    y = torch.nn.functional.conv2d(xp, wt, bt, stride=geom.stride, dilation=geom.dilation, groups=geom.g)
    if activation is not None:
        y = getattr(torch, activation)(y)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [pytest.param(g, id=str(g)) for g in TORCH_GEOMETRIES])
def test_against_torch(geom, dtype):
    x, w, b, dy = make_problem(geom, np.float64)
    y_t, dx_t, dw_t, db_t = torch_conv2d(x, w, b, dy, geom)  # float64 as the oracle
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    # float32 inputs are the oracle's rounded (~6e-8 relative): within the float32 tolerance
    assert_close(cc.conv2d(x, w, b, **geom.kwargs), y_t)
    for method in ("flip", "col2im"):
        assert_close(cc.conv2d_input(x.shape, w, dy, method=method, **geom.kwargs), dx_t)
    assert_close(cc.conv2d_weight(x, w.shape, dy, **geom.kwargs), dw_t)
    assert_close(cc.conv2d_bias(dy), db_t)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_layer_against_torch(activation):
    geom = Geometry(2, 4, 8, 7, 6, 3, 3, 2, 2, padding="same", g=2)
    layer = cc.Conv2D(4, 6, 3, stride=2, padding="same", groups=2, activation=activation, dtype=np.float64, seed=0)
    x, _, _, grad = make_problem(geom, seed=4)
    y_t, dx_t, dw_t, db_t = torch_conv2d(x, layer.weight.copy(), layer.bias.copy(), grad, geom, activation)
    assert_close(layer.forward(x), y_t)
    layer.zero_grad()
    assert_close(layer.backward(grad), dx_t)
    assert_close(layer.grad_weight, dw_t)
    assert_close(layer.grad_bias, db_t)
