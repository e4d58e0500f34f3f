"""Max pooling (native) against a NumPy reference: overlapping windows, ties, padding, errors."""

from __future__ import annotations


import numpy as np
import pytest

import convcore as cc
from convcore import nn
from conftest import Pool


POOLS = [
    Pool(2, 3, 8, 8, 2, 2, 2, 2),
    Pool(2, 3, 7, 9, 2, 2, 2, 2),  # sizes not divisible by the stride
    Pool(1, 2, 7, 7, 3, 3, 2, 2),  # overlapping windows
    Pool(2, 2, 6, 5, 3, 3, 1, 1),  # stride 1: a cell can win up to 9 windows
    Pool(1, 2, 9, 8, 3, 2, 2, 1),
    Pool(2, 2, 7, 7, 3, 3, 2, 2, 1, 1),  # padding: padded cells are -inf
    Pool(1, 3, 6, 7, 4, 3, 3, 2, 2, 1),
    Pool(1, 2, 9, 9, 3, 3, 2, 2, 1, 1, 2, 2),  # dilation
    Pool(1, 1, 5, 4, 5, 4, 1, 1),  # one window covers the plane
]
POOL_PARAMS = [pytest.param(p, id=str(p)) for p in POOLS]
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def reference_max_pool(x, p: Pool):
    """Direct loops over a -inf padded copy; np.argmax keeps the first maximum of each window."""
    mb, c, ih, iw = x.shape
    xp = np.full((mb, c, ih + 2 * p.ph, iw + 2 * p.pw), -np.inf, dtype=x.dtype)
    xp[:, :, p.ph:p.ph + ih, p.pw:p.pw + iw] = x
    oh = (ih + 2 * p.ph - p.dh * (p.kh - 1) - 1) // p.sh + 1
    ow = (iw + 2 * p.pw - p.dw * (p.kw - 1) - 1) // p.sw + 1
    y = np.empty((mb, c, oh, ow), x.dtype)
    idx = np.empty((mb, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            rows = i * p.sh + p.dh * np.arange(p.kh)
            cols = j * p.sw + p.dw * np.arange(p.kw)
            window = xp[:, :, rows[:, None], cols[None, :]].reshape(mb, c, -1)
            k = window.argmax(axis=2)
            y[:, :, i, j] = window.max(axis=2)
            r, s = np.divmod(k, p.kw)
            idx[:, :, i, j] = (rows[r] - p.ph) * iw + (cols[s] - p.pw)
    return y, idx


def reference_backward(dy, idx, x_shape):
    """Scatter-add with np.add.at: windows that share a maximum add up."""
    mb, c, ih, iw = x_shape
    dx = np.zeros((mb * c, ih * iw), dy.dtype)
    planes = np.repeat(np.arange(mb * c), idx[0, 0].size)
    np.add.at(dx, (planes, idx.reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)


def make_input(p: Pool, dtype, ties: bool, seed=0):
    rng = np.random.default_rng(seed)
    shape = (p.mb, p.c, p.ih, p.iw)
    if ties:  # values from {0, 1, 2}: most windows hold several maxima
        return rng.integers(0, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("p", POOL_PARAMS)
def test_forward_backward_match_reference(p, ties, dtype):
    x = make_input(p, dtype, ties)
    y, idx = nn.max_pool2d(x, return_indices=True, **p.args)
    y_ref, idx_ref = reference_max_pool(x, p)
    assert y.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)

    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx = nn.max_pool2d_backward(dy, idx, x.shape, **p.args)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dx, reference_backward(dy, idx_ref, x.shape), rtol=tol, atol=tol)


def test_ties_first_maximum_in_scan_order_wins():
    x = np.array([[[[1.0, 5.0], [5.0, 5.0]]]])
    y, idx = nn.max_pool2d(x, 2, return_indices=True)
    assert y.item() == 5.0 and idx.item() == 1
    dx = nn.max_pool2d_backward(np.ones_like(y), idx, x.shape, 2)
    np.testing.assert_array_equal(dx, [[[[0, 1], [0, 0]]]])


def test_overlapping_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9
    layer = nn.MaxPool2D(2, stride=1)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 9.0))
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    want = np.zeros_like(x)
    want[0, 0, 1, 1] = 10
    np.testing.assert_array_equal(dx, want)


def test_padding_is_minus_infinity():
    x = -np.ones((1, 1, 2, 2), np.float32)  # all negative: a zero-padded pooling would return 0
    y = nn.max_pool2d(x, 2, stride=1, padding=1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3), np.float32))


def test_three_dimensional_input_and_default_stride():
    x = np.random.default_rng(0).standard_normal((3, 6, 6))
    y, idx = nn.max_pool2d(x, 3, return_indices=True)
    assert y.shape == idx.shape == (3, 2, 2)
    np.testing.assert_array_equal(y, nn.max_pool2d(x[None], 3)[0])
    dx = nn.max_pool2d_backward(np.ones_like(y), idx, x.shape, 3)
    assert dx.shape == x.shape and dx.sum() == y.size


def test_integer_input_is_promoted():
    x = np.arange(16).reshape(1, 1, 4, 4)
    y = nn.max_pool2d(x, 2)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[[5, 7], [13, 15]]]])


def test_bitwise_identical_for_any_thread_count():
    p = Pool(4, 8, 13, 11, 3, 3, 2, 2, 1, 1)
    x = make_input(p, np.float32, ties=False)
    dy = np.random.default_rng(2).standard_normal((4, 8, 7, 6)).astype(np.float32)
    before = cc.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            cc.set_num_threads(threads)
            y, idx = nn.max_pool2d(x, return_indices=True, **p.args)
            results.append((y, idx, nn.max_pool2d_backward(dy, idx, x.shape, **p.args)))
    finally:
        cc.set_num_threads(before)
    for y, idx, dx in results[1:]:
        assert y.tobytes() == results[0][0].tobytes()
        assert idx.tobytes() == results[0][1].tobytes()
        assert dx.tobytes() == results[0][2].tobytes()


def test_errors():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="padding"):
        nn.max_pool2d(x, 2, padding=2)  # more than half the window
    with pytest.raises(ValueError, match="kernel"):
        nn.max_pool2d(x, 5)
    with pytest.raises(ValueError, match="stride"):
        nn.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="4-D"):
        nn.max_pool2d(np.zeros((4, 4)), 2)
    y, idx = nn.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match="index"):
        nn.max_pool2d_backward(np.ones_like(y), np.full_like(idx, 16), x.shape, 2)
    with pytest.raises(ValueError, match="index"):
        nn.max_pool2d_backward(np.ones_like(y), np.full_like(idx, -2), x.shape, 2)
    with pytest.raises(ValueError, match="grad_output"):
        nn.max_pool2d_backward(np.ones((1, 2, 3, 3)), idx, x.shape, 2)
    with pytest.raises(TypeError, match="indices"):
        nn.max_pool2d_backward(np.ones_like(y), idx.astype(np.float64), x.shape, 2)
    with pytest.raises(RuntimeError, match="forward"):
        nn.MaxPool2D(2).backward(y)
