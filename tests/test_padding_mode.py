"""padding_mode ("zeros", "reflect", "replicate", "circular") for conv2d, conv1d, their gradients
and the layers: against the index-map reference, finite differences and PyTorch's modules."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, Geometry, assert_close, f64, make_problem, reference

import convcore as cc
from convcore import padding as P
from convcore.gradcheck import numerical_grad

MODES = ["zeros", "reflect", "replicate", "circular"]
G = Geometry

GEOMS = [
    G(2, 3, 6, 7, 4, 3, 3, padding=1),
    G(2, 3, 7, 7, 4, 3, 3, 2, 2, padding=2),
    G(1, 2, 5, 6, 3, 3, 2, 1, 2, padding=((2, 1), (0, 3))),  # per side
    G(2, 2, 7, 8, 3, 3, 3, 2, 2, padding="same"),  # asymmetric along w
    G(2, 4, 6, 6, 6, 3, 3, padding=(2, 1), dh=2, dw=1, g=2),
    G(2, 3, 5, 5, 3, 3, 3, padding=4, g=3),  # padding beyond the kernel, the most reflect allows
    G(1, 16, 9, 8, 12, 3, 3, padding=1),
]
PARAMS = [pytest.param(g, m, id=f"{m}-{g}") for g in GEOMS for m in MODES]


def _unpadded(geom):
    return {"stride": geom.stride, "pads": 0, "dilation": geom.dilation, "groups": geom.g}


# ---------------------------------------------------------------------------- the padding itself


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (2, 0, 1, 3), (0, 0, 4, 4), (3, 3, 0, 0)])
def test_pad_and_its_adjoint_match_the_index_maps(mode, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))  # every pads below is within every mode's limits
    xp = P.pad(x, pads, mode)
    assert_close(xp, reference.pad_mode(x, pads, mode))
    g = rng.standard_normal(xp.shape)
    dx = P.pad_backward(g, pads, mode)
    assert_close(dx, reference.pad_mode_backward(g, x.shape, pads, mode))
    # the adjoint: <pad(x), g> == <x, pad_backward(g)>
    np.testing.assert_allclose(np.vdot(xp, g), np.vdot(x, dx), rtol=1e-12)


def test_reference_index_maps():
    assert reference.padding_index(4, 2, 2, "reflect") == [2, 1, 0, 1, 2, 3, 2, 1]
    assert reference.padding_index(4, 2, 2, "replicate") == [0, 0, 0, 1, 2, 3, 3, 3]
    assert reference.padding_index(4, 2, 2, "circular") == [2, 3, 0, 1, 2, 3, 0, 1]
    assert reference.padding_index(4, 2, 1, "zeros") == [-1, -1, 0, 1, 2, 3, -1]
    np.testing.assert_array_equal(np.pad(np.arange(4), 2, mode="reflect"), [2, 1, 0, 1, 2, 3, 2, 1])


# ------------------------------------------------------------------------------------ conv2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("geom", "mode"), PARAMS)
def test_conv2d_and_gradients_match_reference(geom, mode, dtype):
    x, w, b, dy = make_problem(geom, dtype)
    kw = {**geom.kwargs, "padding_mode": mode}
    xp_ref = reference.pad_mode(f64(x), geom.pads, mode)
    y_ref = reference.conv2d_forward(xp_ref, f64(w), f64(b), **_unpadded(geom))
    assert_close(cc.conv2d(x, w, b, **kw), y_ref)
    dxp = reference.conv2d_backward_input(f64(dy), f64(w), xp_ref.shape, **_unpadded(geom))
    dx_ref = reference.pad_mode_backward(dxp, x.shape, geom.pads, mode)
    dw_ref = reference.conv2d_backward_weight(xp_ref, f64(dy), w.shape, **_unpadded(geom))
    for method in ("flip", "col2im"):
        assert_close(cc.conv2d_input(x.shape, w, dy, method=method, **kw), dx_ref)
    assert_close(cc.conv2d_weight(x, w.shape, dy, **kw), dw_ref)
    dx, dw, db = cc.conv2d_backward(x, w, dy, **kw)
    assert dx.dtype == dtype
    assert_close(dx, dx_ref)
    assert_close(dw, dw_ref)
    assert_close(db, f64(dy).sum(axis=(0, 2, 3)))


def test_single_sample():
    geom = GEOMS[0]
    x, w, b, dy = make_problem(geom)
    kw = {**geom.kwargs, "padding_mode": "circular"}
    assert_close(cc.conv2d(x[0], w, b, **kw), cc.conv2d(x[:1], w, b, **kw)[0])
    assert_close(cc.conv2d_input(x.shape[1:], w, dy[0], **kw), cc.conv2d_input(x[:1].shape, w, dy[:1], **kw)[0])
    assert_close(cc.conv2d_weight(x[0], w.shape, dy[0], **kw), cc.conv2d_weight(x[:1], w.shape, dy[:1], **kw))
    dx, _, _ = cc.conv2d_backward(x[0], w, dy[0], **kw)
    assert dx.shape == x.shape[1:]


@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("geom", [GEOMS[2], GEOMS[4]], ids=str)
def test_finite_differences(geom, mode):
    x, w, b, r = make_problem(geom, seed=5)
    kw = {**geom.kwargs, "padding_mode": mode}

    def loss(x_, w_):
        return float(np.sum(cc.conv2d(x_, w_, b, **kw) * r))

    dx, dw, _ = cc.conv2d_backward(x, w, r, **kw)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, w), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda v: loss(x, v), w), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "args",
    [
        {"kernel_size": 3, "stride": 1, "padding": 1},
        {"kernel_size": (3, 2), "stride": (2, 1), "padding": (2, 1), "dilation": (1, 2), "groups": 2},
        {"kernel_size": 3, "stride": 1, "padding": "same", "dilation": 2},
        {"kernel_size": (4, 3), "stride": 1, "padding": "same"},  # asymmetric "same"
        {"kernel_size": 1, "stride": 2, "padding": 3},
    ],
    ids=["k3p1", "k3x2s2x1p2x1d1x2g2", "k3same-d2", "k4x3same", "k1s2p3"],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_conv2d_module_against_torch(mode, args):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 7))
    m = torch.nn.Conv2d(4, 6, padding_mode=mode, **args).double()
    layer = cc.Conv2D(4, 6, dtype=np.float64, padding_mode=mode, **args)
    layer.weight[:] = m.weight.detach().numpy()
    layer.bias[:] = m.bias.detach().numpy()
    xt = torch.tensor(x, requires_grad=True)
    yt = m(xt)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    assert_close(layer.forward(x), yt.detach().numpy())
    assert_close(layer.backward(g), xt.grad.numpy())
    assert_close(layer.grad_weight, m.weight.grad.numpy())
    assert_close(layer.grad_bias, m.bias.grad.numpy())
    f = {k: v for k, v in args.items() if k != "kernel_size"}
    assert_close(cc.conv2d(x, layer.weight, layer.bias, padding_mode=mode, **f), yt.detach().numpy())
    assert_close(cc.conv2d_input(x.shape, layer.weight, g, padding_mode=mode, **f), xt.grad.numpy())


@pytest.mark.parametrize("mode", MODES)
def test_conv1d_against_torch(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9))
    m = torch.nn.Conv1d(4, 6, 3, stride=2, padding=3, groups=2, padding_mode=mode).double()
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    xt = torch.tensor(x, requires_grad=True)
    yt = m(xt)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    kw = {"stride": 2, "padding": 3, "groups": 2, "padding_mode": mode}
    assert_close(cc.conv1d(x, w, b, **kw), yt.detach().numpy())
    dx, dw, db = cc.conv1d_backward(x, w, g, **kw)
    assert_close(dx, xt.grad.numpy())
    assert_close(dw, m.weight.grad.numpy())
    assert_close(cc.conv1d_input(x.shape, w, g, **kw), xt.grad.numpy())
    assert_close(cc.conv1d_weight(x, w.shape, g, **kw), m.weight.grad.numpy())


def test_torch_refuses_what_we_refuse():
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 1, 3, 3))
    for mode, p in (("reflect", 3), ("circular", 4)):
        m = torch.nn.Conv2d(1, 1, 1, padding=p, padding_mode=mode).double()
        with pytest.raises(RuntimeError):
            m(torch.tensor(x))
        with pytest.raises(ValueError, match=f"padding_mode='{mode}'"):
            cc.conv2d(x, np.zeros((1, 1, 1, 1)), padding=p, padding_mode=mode)
    for mode, p in (("reflect", 2), ("circular", 3)):  # the largest allowed
        m = torch.nn.Conv2d(1, 1, 1, padding=p, padding_mode=mode).double()
        assert tuple(m(torch.tensor(x)).shape) == cc.conv2d(x, np.zeros((1, 1, 1, 1)), padding=p,
                                                            padding_mode=mode).shape


def test_errors():
    x, w, dy = np.zeros((1, 1, 3, 4)), np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 4))
    with pytest.raises(ValueError, match="padding_mode: expected one of"):
        cc.conv2d(x, w, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode"):
        cc.conv2d_input(x.shape, w, dy, padding=1, padding_mode=None)
    with pytest.raises(ValueError, match="reflect.*top=3.*smaller than the input height 3"):
        cc.conv2d(x, w, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect.*left=4.*smaller than the input width 4"):
        cc.conv2d(np.zeros((1, 1, 5, 4)), w, padding=(1, 4), padding_mode="reflect")
    with pytest.raises(ValueError, match="circular.*right=5.*at most the input width 4"):
        cc.conv2d(x, w, padding=((0, 0), (0, 5)), padding_mode="circular")
    with pytest.raises(ValueError, match="reflect"):
        cc.conv2d_input((1, 1, 3, 4), w, np.zeros((1, 1, 7, 8)), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        cc.conv2d_weight(x, w.shape, np.zeros((1, 1, 7, 8)), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        cc.conv2d_backward(x, w, np.zeros((1, 1, 7, 8)), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding: must be >= 0"):
        cc.conv2d(x, w, padding=-1, padding_mode="replicate")
    with pytest.raises(ValueError, match="reflect.*smaller than the input width 3"):
        cc.conv1d(np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        cc.Conv2D(1, 1, 3, padding_mode="mirror")


# ------------------------------------------------------------------------------------ layers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES[1:])
def test_conv2d_layer_matches_functional(mode, dtype):
    layer = cc.Conv2D(3, 4, 3, stride=2, padding=2, activation="tanh", dtype=dtype, seed=0, padding_mode=mode)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    y = layer.forward(x)
    kw = {"stride": 2, "padding": 2, "padding_mode": mode}
    assert_close(y, cc.conv2d(x, layer.weight, layer.bias, activation="tanh", **kw))
    assert layer.plan(layer._input.shape).input_shape == (2, 3, 11, 10)  # the padded input's plan
    g = rng.standard_normal(y.shape).astype(dtype)
    delta = cc.activation_backward(g, y, "tanh")
    dx = layer.backward(g)
    assert dx.shape == x.shape
    assert_close(dx, cc.conv2d_input(x.shape, layer.weight, delta, **kw))
    assert_close(layer.grad_weight, cc.conv2d_weight(x, layer.weight.shape, delta, **kw))


def _functional_net(x, layers, g):
    """The network of test_layers_in_sequential by the functional API: output, dx and grads."""
    c1, t2, c3 = layers
    y1 = cc.conv2d(x, c1.weight, c1.bias, padding=1, activation="tanh", padding_mode="reflect")
    y2 = cc.conv_transpose2d(y1, t2.weight, t2.bias, stride=2, padding=1)
    y3 = cc.conv2d(y2, c3.weight, c3.bias, padding=2, padding_mode="circular")
    d3 = cc.conv2d_backward(y2, c3.weight, g, padding=2, padding_mode="circular")
    d2 = cc.conv_transpose2d_backward(y1, t2.weight, d3[0], stride=2, padding=1)
    delta1 = cc.activation_backward(d2[0], y1, "tanh")
    d1 = cc.conv2d_backward(x, c1.weight, delta1, padding=1, padding_mode="reflect")
    return y3, d1[0], [d1[1], d1[2], d2[1], d2[2], d3[1], d3[2]]


@pytest.mark.parametrize("input_grad", [True, False])
def test_layers_in_sequential(input_grad):
    """Padding modes and the new layers inside a Sequential (which reuses their buffers), over
    two steps of different data, equal the functional computation."""
    f = np.float64
    net = cc.nn.Sequential(
        cc.Conv2D(2, 3, 3, padding=1, padding_mode="reflect", activation="tanh", dtype=f, seed=0),
        cc.nn.ConvTranspose2D(3, 2, 4, stride=2, padding=1, dtype=f, seed=1),
        cc.Conv2D(2, 2, 3, padding=2, padding_mode="circular", dtype=f, seed=2),
    )
    rng = np.random.default_rng(3)
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    for step in range(2):
        x = rng.standard_normal((2, 2, 5, 6))
        y = net.forward(x)
        g = rng.standard_normal(y.shape)
        y_ref, dx_ref, grads_ref = _functional_net(x, net.layers, g)
        assert_close(y, y_ref)
        net.zero_grad()
        dx = net.backward(g, input_grad=input_grad)
        if input_grad:
            assert_close(dx, dx_ref)
        else:
            assert dx is None
        for p, want in zip(net.parameters(), grads_ref):
            assert_close(p.grad, want)


def test_new_layers_skip_the_input_gradient():
    rng = np.random.default_rng(0)
    for layer, x in ((cc.nn.Conv1D(2, 3, 3, padding=1, padding_mode="replicate", activation="relu", seed=0),
                      rng.standard_normal((2, 2, 7))),
                     (cc.nn.ConvTranspose2D(2, 3, 3, stride=2, output_padding=1, seed=0),
                      rng.standard_normal((2, 2, 4, 4)))):
        y = layer.forward(x.astype(np.float32))
        g = rng.standard_normal(y.shape).astype(np.float32)
        layer.backward(g)
        want = [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        assert layer.backward(g, input_grad=False) is None
        for p, w in zip(layer.parameters(), want):
            np.testing.assert_array_equal(p.grad, w)
