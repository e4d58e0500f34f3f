"""Pooling, batch norm and the other image layers with ``layout="NHWC"``: every result equals the
NCHW result transposed (random geometries, float32 and float64, train and eval, forward and
backward), PyTorch's ``channels_last`` modules when installed, finite differences in float64,
bitwise identical results for any thread count, and the errors in the caller's layout."""

from __future__ import annotations


import numpy as np
import pytest

import convcore as cc
from convcore import nn
from conftest import Pool, fd_check


def nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def _random_pools(count, seed, dilation):
    """Valid pooling geometries drawn at random: padding at most half the dilated window, the
    window inside the padded input."""
    rng = np.random.default_rng(seed)
    pools = []
    while len(pools) < count:
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2)) if dilation else (1, 1)
        ph = int(rng.integers(0, (dh * (kh - 1) + 1) // 2 + 1))
        pw = int(rng.integers(0, (dw * (kw - 1) + 1) // 2 + 1))
        ih, iw = (int(v) for v in rng.integers(1, 12, 2))
        if dh * (kh - 1) + 1 > ih + 2 * ph or dw * (kw - 1) + 1 > iw + 2 * pw:
            continue
        mb, c = int(rng.integers(1, 4)), int(rng.choice([1, 3, 8, 17, 70]))
        pools.append(Pool(mb, c, ih, iw, kh, kw, sh, sw, ph, pw, dh, dw))
    return [pytest.param(p, id=str(p)) for p in pools]


MAX_POOLS = _random_pools(14, 7, dilation=True) + [pytest.param(Pool(2, 16, 8, 8, 2, 2, 2, 2, 0, 0),
                                                                   id="classic2x2")]
AVG_POOLS = _random_pools(10, 8, dilation=False)
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def _input(shape, dtype, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # values from {0, 1, 2}: most windows hold several maxima
        return rng.integers(0, 3, size=shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "nan":
        x.reshape(-1)[:: 7] = np.nan
    return x


# --------------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "nan"])
@pytest.mark.parametrize("p", MAX_POOLS)
def test_max_pool_nhwc_is_nchw_transposed(p, kind, dtype):
    x = _input(p.shape, dtype, kind)
    y, idx = nn.max_pool2d(x, return_indices=True, **p.args)
    yh, idxh = nn.max_pool2d(nhwc(x), return_indices=True, layout="NHWC", **p.args)
    assert yh.shape == nhwc(y).shape and yh.dtype == dtype and idxh.dtype == np.int64
    np.testing.assert_array_equal(yh, nhwc(y))  # the same values, NaN where NCHW has NaN
    np.testing.assert_array_equal(idxh, nhwc(idx))  # indices flat in the H x W plane in both layouts
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx = nn.max_pool2d_backward(dy, idx, p.shape, **p.args)
    dxh = nn.max_pool2d_backward(nhwc(dy), idxh, nhwc(x).shape, layout="nhwc", **p.args)
    # Each cell adds its windows' gradients in output order in both layouts: the same bits.
    np.testing.assert_array_equal(dxh, nhwc(dx))


def test_max_pool_layer_nhwc_single_image_and_buffers():
    x = _input((2, 6, 7, 9), np.float64, "random", seed=3)
    layer, layer_h = nn.MaxPool2D(3, stride=2, padding=1), nn.MaxPool2D(3, stride=2, padding=1, layout="NHWC")
    np.testing.assert_array_equal(layer_h.forward(nhwc(x)), nhwc(layer.forward(x)))
    dy = np.random.default_rng(4).standard_normal((2, 6, 4, 5))
    np.testing.assert_array_equal(layer_h.backward(nhwc(dy)), nhwc(layer.backward(dy)))
    # (H, W, C): one image.
    y1 = layer_h.forward(nhwc(x)[0])
    assert y1.shape == (4, 5, 6)
    np.testing.assert_array_equal(y1, nhwc(layer.forward(x))[0])
    np.testing.assert_array_equal(layer_h.backward(nhwc(dy)[0]), nhwc(layer.backward(dy))[0])
    assert "layout='NHWC'" in repr(layer_h) and "layout" not in repr(layer)
    # Inside a Sequential (outputs in kept buffers) the results are the same.
    seq = nn.Sequential(nn.MaxPool2D(2, layout="NHWC"), nn.ReLU(), nn.MaxPool2D(2, stride=1, layout="NHWC"))
    ref = nn.Sequential(nn.MaxPool2D(2), nn.ReLU(), nn.MaxPool2D(2, stride=1))
    np.testing.assert_array_equal(seq.forward(nhwc(x)), nhwc(ref.forward(x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nhwc_matches_torch_channels_last(dtype):
    torch = pytest.importorskip("torch")
    x = _input((3, 19, 11, 10), dtype, "random", seed=5)
    args = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2))
    tx = torch.tensor(x).to(memory_format=torch.channels_last).requires_grad_(True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, return_indices=True, **args)
    yh, idxh = nn.max_pool2d(nhwc(x), return_indices=True, layout="NHWC", **args)
    np.testing.assert_array_equal(yh, nhwc(ty.detach().numpy()))
    np.testing.assert_array_equal(idxh, nhwc(tidx.numpy()))
    dy = np.random.default_rng(6).standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(dy).to(memory_format=torch.channels_last))
    dxh = nn.max_pool2d_backward(nhwc(dy), idxh, nhwc(x).shape, layout="NHWC", **args)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dxh, nhwc(tx.grad.numpy()), rtol=tol, atol=tol)


def test_max_pool_nhwc_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    x = rng.permutation(2 * 7 * 6 * 5).reshape(2, 7, 6, 5).astype(np.float64) * 0.1  # no ties
    layer = nn.MaxPool2D(3, stride=2, padding=1, layout="NHWC")
    fd_check(lambda v: (layer.forward(v), layer), x, rng)


# ------------------------------------------------------------------------------ average pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("p", AVG_POOLS)
def test_avg_pool_nhwc_is_nchw_transposed(p, include_pad, dtype):
    x = _input(p.shape, dtype, "random", seed=9)
    args = dict(kernel_size=(p.kh, p.kw), stride=(p.sh, p.sw), padding=(p.ph, p.pw),
                count_include_pad=include_pad)
    layer, layer_h = nn.AvgPool2D(**args), nn.AvgPool2D(**args, layout="NHWC")
    y = layer.forward(x)
    yh = layer_h.forward(nhwc(x))
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert yh.dtype == dtype
    np.testing.assert_allclose(yh, nhwc(y), rtol=tol, atol=tol)
    dy = np.random.default_rng(10).standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(layer_h.backward(nhwc(dy)), nhwc(layer.backward(dy)), rtol=tol, atol=tol)
    assert layer_h.backward(nhwc(dy), input_grad=False) is None


@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_nhwc_matches_torch_and_finite_differences(include_pad):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 6, 5))
    layer = nn.AvgPool2D(3, stride=2, padding=1, count_include_pad=include_pad, layout="NHWC")
    fd_check(lambda v: (layer.forward(v), layer), x, rng)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(nchw(x)).to(memory_format=torch.channels_last).requires_grad_(True)
    ty = torch.nn.functional.avg_pool2d(tx, 3, 2, 1, count_include_pad=include_pad)
    np.testing.assert_allclose(layer.forward(x), nhwc(ty.detach().numpy()), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(nhwc(dy)), nhwc(tx.grad.numpy()), rtol=1e-12, atol=1e-12)


def test_global_avg_pool_nhwc():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 5, 4, 6))
    g, gh = nn.GlobalAvgPool2D(), nn.GlobalAvgPool2D(layout="nhwc")
    np.testing.assert_allclose(gh.forward(nhwc(x)), g.forward(x), rtol=1e-14, atol=1e-14)
    dy = rng.standard_normal((3, 5))
    np.testing.assert_allclose(gh.backward(dy), nhwc(g.backward(dy)), rtol=1e-14, atol=1e-14)
    fd_check(lambda v: (gh.forward(v), gh), nhwc(x), rng)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        gh.forward(x[0])


# ---------------------------------------------------------------------------------- batch norm


def _bn_pair(c, dtype, **kw):
    rng = np.random.default_rng(13)
    a, b = nn.BatchNorm2D(c, dtype=dtype, **kw), nn.BatchNorm2D(c, dtype=dtype, layout="NHWC", **kw)
    if a.affine:
        w, bias = rng.uniform(0.5, 1.5, c).astype(dtype), rng.standard_normal(c).astype(dtype)
        for m in (a, b):
            m.weight_param.data[...] = w
            m.bias_param.data[...] = bias
    return a, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 6, 7), (2, 70, 15, 13), (4, 1, 3, 2), (2, 4, 9, 9), (2, 8, 9, 9),
                                   (2, 16, 15, 13)], ids=str)
def test_batchnorm_nhwc_is_nchw_transposed(shape, affine, dtype):
    rng = np.random.default_rng(14)
    a, b = _bn_pair(shape[1], dtype, affine=affine, momentum=0.3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for mode in ("train", "train", "eval"):
        a.train(mode == "train")
        b.train(mode == "train")
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        a.zero_grad()
        b.zero_grad()
        y, yh = a.forward(x), b.forward(nhwc(x))
        assert yh.dtype == dtype and yh.shape == nhwc(x).shape
        np.testing.assert_allclose(yh, nhwc(y), rtol=tol, atol=tol)
        np.testing.assert_allclose(b.backward(nhwc(dy)), nhwc(a.backward(dy)), rtol=tol, atol=tol)
        for pa, pb in zip(a.parameters(), b.parameters()):
            np.testing.assert_allclose(pb.grad, pa.grad, rtol=tol, atol=tol * 10, err_msg=pa.name)
        # Layout is not state: the same names, shapes and (to rounding) values.
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_allclose(sb[k], sa[k], rtol=tol, atol=tol, err_msg=k)


def test_batchnorm_state_dict_moves_between_layouts():
    a, b = _bn_pair(4, np.float64)
    x = np.random.default_rng(15).standard_normal((2, 4, 3, 5))
    a.forward(x)
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    np.testing.assert_allclose(b.forward(nhwc(x)), nhwc(a.forward(x)), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_nhwc_gradients_match_finite_differences(mode):
    rng = np.random.default_rng(16)
    _, bn = _bn_pair(3, np.float64)
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 2, 3)
    bn.train(mode == "train")
    x = rng.standard_normal((2, 4, 3, 3)) * 1.5 + 0.5
    fd_check(lambda v: (bn.forward(v), bn), x, rng, params=bn.parameters())


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_nhwc_matches_torch_channels_last(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    _, bn = _bn_pair(6, dtype, eps=1e-4, momentum=0.3)
    tbn = torch.nn.BatchNorm2d(6, eps=1e-4, momentum=0.3, dtype=tdt).to(memory_format=torch.channels_last)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(bn.weight_param.data))
        tbn.bias.copy_(torch.tensor(bn.bias_param.data))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for mode in ("train", "train", "eval"):
        bn.train(mode == "train")
        tbn.train(mode == "train")
        x = (rng.standard_normal((4, 6, 5, 7)) * 3 + 1).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        bn.zero_grad()
        tbn.zero_grad()
        tx = torch.tensor(x).to(memory_format=torch.channels_last).requires_grad_(True)
        ty = tbn(tx)
        ty.backward(torch.tensor(dy).to(memory_format=torch.channels_last))
        np.testing.assert_allclose(bn.forward(nhwc(x)), nhwc(ty.detach().numpy()), rtol=tol, atol=tol)
        np.testing.assert_allclose(bn.backward(nhwc(dy)), nhwc(tx.grad.numpy()), rtol=tol, atol=tol)
        np.testing.assert_allclose(bn.weight_param.grad, tbn.weight.grad.numpy(), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(bn.bias_param.grad, tbn.bias.grad.numpy(), rtol=tol, atol=tol * 10)
        state = bn.state_dict()
        for k, v in tbn.state_dict().items():
            np.testing.assert_allclose(state[k], v.numpy(), rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nhwc_bitwise_identical_for_any_thread_count(dtype):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((4, 40, 40, 37)).astype(dtype)  # several row blocks, every thread busy
    dy = rng.standard_normal(x.shape).astype(dtype)
    before = cc.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            cc.set_num_threads(threads)
            bn = nn.BatchNorm2D(37, dtype=dtype, layout="NHWC")
            out = [bn.forward(x), bn.backward(dy), bn.weight_param.grad, bn.bias_param.grad,
                   bn.running_mean, bn.running_var]
            bn.eval()
            out.append(bn.forward(x))
            pool = nn.MaxPool2D(3, stride=2, padding=1, layout="NHWC")
            y = pool.forward(x)
            out += [y, pool._indices, pool.backward(np.ones_like(y))]
            avg = nn.AvgPool2D(3, stride=2, padding=1, layout="NHWC")
            y = avg.forward(x)
            out += [y, avg.backward(np.ones_like(y))]
            results.append([np.array(a, copy=True) for a in out])
    finally:
        cc.set_num_threads(before)
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [16, 37, 128])
def test_batchnorm_nhwc_same_bits_on_every_isa(c, dtype):
    """The channels-last loops have a portable and an AVX2 copy (chosen by the active ISA): the
    same bits, train and eval, forward and backward."""
    rng = np.random.default_rng(19)
    x = (rng.standard_normal((3, 9, 11, c)) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    before = cc._core.isa()
    results = {}
    try:
        for isa in cc._core.supported_isas():
            cc._core.set_isa(isa)
            bn = nn.BatchNorm2D(c, dtype=dtype, layout="NHWC")
            out = [bn.forward(x), bn.backward(dy), bn.weight_param.grad, bn.bias_param.grad, bn.running_var]
            bn.eval()
            out += [bn.forward(x), bn.backward(dy)]
            results[isa] = [np.array(a, copy=True).tobytes() for a in out]
    finally:
        cc._core.set_isa(before)
    generic = results.pop("generic")
    for isa, out in results.items():
        assert out == generic, isa


# ----------------------------------------------------------------------------- a whole network


def test_network_of_image_layers_nhwc_is_nchw_transposed():
    """BatchNorm, ReLU, MaxPool, AvgPool, Dropout (eval) and GlobalAvgPool, then Linear: the same
    loss and the same input gradient (transposed) in both layouts."""
    rng = np.random.default_rng(19)

    def net(layout):
        return nn.Sequential(
            nn.BatchNorm2D(8, dtype=np.float64, layout=layout), nn.ReLU(), nn.MaxPool2D(2, layout=layout),
            nn.AvgPool2D(3, stride=1, padding=1, count_include_pad=False, layout=layout),
            nn.Dropout(0.5).eval(), nn.GlobalAvgPool2D(layout=layout), nn.Linear(8, 3, dtype=np.float64, seed=1))

    a, b = net("NCHW"), net("NHWC")
    x = rng.standard_normal((4, 8, 10, 10))
    ya, yb = a.forward(x), b.forward(nhwc(x))
    np.testing.assert_allclose(yb, ya, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(ya.shape)
    np.testing.assert_allclose(b.backward(dy, input_grad=True), nhwc(a.backward(dy, input_grad=True)),
                               rtol=1e-12, atol=1e-12)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_allclose(pb.grad, pa.grad, rtol=1e-12, atol=1e-12, err_msg=na)


def test_flatten_keeps_memory_order():
    x = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    f = nn.Flatten()
    np.testing.assert_array_equal(f.forward(nhwc(x)), nhwc(x).reshape(2, -1))  # (h, w, c) order
    assert not np.array_equal(f.forward(nhwc(x)), x.reshape(2, -1))


# -------------------------------------------------------------------------------------- errors


def test_layout_errors_name_the_argument_and_the_shape():
    for make in (lambda: nn.MaxPool2D(2, layout="NWHC"), lambda: nn.AvgPool2D(2, layout="CHWN"),
                 lambda: nn.GlobalAvgPool2D(layout=""), lambda: nn.BatchNorm2D(3, layout=1)):
        with pytest.raises(ValueError, match="layout: expected 'NCHW' or 'NHWC'"):
            make()
    with pytest.raises(ValueError, match="layout"):
        nn.max_pool2d(np.zeros((1, 4, 4, 2)), 2, layout="chw")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        nn.max_pool2d(np.zeros((4, 4)), 2, layout="NHWC")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        nn.BatchNorm2D(3, layout="NHWC").forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        nn.AvgPool2D(2, layout="NHWC").forward(np.zeros((4, 4, 3)))
    x = np.zeros((1, 4, 4, 2))
    y, idx = nn.max_pool2d(x, 2, return_indices=True, layout="NHWC")
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(1, 2, 2, 2\) \(N, H, W, C\)"):
        nn.max_pool2d_backward(np.ones((1, 2, 2, 3)), idx, x.shape, 2, layout="NHWC")
    with pytest.raises(ValueError, match=r"input_size: expected \(N, H, W, C\)"):
        nn.max_pool2d_backward(y, idx, (4, 4), 2, layout="NHWC")
    with pytest.raises(ValueError, match="index"):
        nn.max_pool2d_backward(y, np.full_like(idx, 16), x.shape, 2, layout="NHWC")
    with pytest.raises(ValueError, match=r"grad_output must have shape \(1, 2, 2, 2\)"):
        layer = nn.AvgPool2D(2, layout="NHWC")
        layer.forward(x)
        layer.backward(np.zeros((1, 2, 2, 3)))
    with pytest.raises(RuntimeError, match="forward"):
        nn.AvgPool2D(2, layout="NHWC").backward(y)


# ----------------------------------------------------------------------------------- helpers


