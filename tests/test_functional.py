"""convcore's public functions against the NumPy reference.

Every operation runs over the shared geometries in float32 and float64.  The
expected values are the reference's, computed in float64 from the very same
(possibly float32) inputs.
"""

import dataclasses

import numpy as np
import pytest
from conftest import (
    DTYPES,
    GEOMETRY_PARAMS,
    SMALL_GEOMETRY_PARAMS,
    Geometry,
    assert_close,
    f64,
    make_problem,
    reference,
)

import convcore as cc

METHODS = ["auto", "flip", "col2im"]
ACTIVATIONS = [None, "identity", "relu", "sigmoid", "tanh"]


# --------------------------------------------------------------------------
# Forward and the three gradients
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d(geom, dtype):
    x, w, b, _ = make_problem(geom, dtype)
    y = cc.conv2d(x, w, b, **geom.kwargs)
    assert y.dtype == dtype
    assert_close(y, reference.conv2d_forward(*f64(x, w, b), **geom.ref_kwargs))
    y = cc.conv2d(x, w, **geom.kwargs)
    assert_close(y, reference.conv2d_forward(*f64(x, w), **geom.ref_kwargs))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_conv2d_activation(geom, dtype, activation):
    x, w, b, _ = make_problem(geom, dtype)
    y = cc.conv2d(x, w, b, activation=activation, **geom.kwargs)
    assert y.dtype == dtype
    want = reference.activation_forward(reference.conv2d_forward(*f64(x, w, b), **geom.ref_kwargs), activation)
    assert_close(y, want)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d_input(geom, dtype, method):
    x, w, _, dy = make_problem(geom, dtype)
    dx = cc.conv2d_input(x.shape, w, dy, method=method, **geom.kwargs)
    assert dx.dtype == dtype
    assert dx.shape == x.shape
    assert_close(dx, reference.conv2d_backward_input(*f64(dy, w), x.shape, **geom.ref_kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d_input_methods_agree(geom, dtype):
    x, w, _, dy = make_problem(geom, dtype, seed=3)
    flip = cc.conv2d_input(x.shape, w, dy, method="flip", **geom.kwargs)
    col2im = cc.conv2d_input(x.shape, w, dy, method="col2im", **geom.kwargs)
    assert_close(flip, col2im.astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d_weight(geom, dtype):
    x, w, _, dy = make_problem(geom, dtype)
    dw = cc.conv2d_weight(x, w.shape, dy, **geom.kwargs)
    assert dw.dtype == dtype
    assert dw.shape == w.shape
    assert_close(dw, reference.conv2d_backward_weight(*f64(x, dy), w.shape, **geom.ref_kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d_bias(geom, dtype):
    *_, dy = make_problem(geom, dtype)
    db = cc.conv2d_bias(dy)
    assert db.dtype == dtype
    assert db.shape == (geom.oc,)
    assert_close(db, reference.conv2d_backward_bias(f64(dy)))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_conv2d_backward(geom, dtype, bias):
    x, w, _, dy = make_problem(geom, dtype)
    dx, dw, db = cc.conv2d_backward(x, w, dy, bias=bias, **geom.kwargs)
    assert (dx.dtype, dw.dtype, dx.shape, dw.shape) == (dtype, dtype, x.shape, w.shape)
    assert_close(dx, reference.conv2d_backward_input(*f64(dy, w), x.shape, **geom.ref_kwargs))
    assert_close(dw, reference.conv2d_backward_weight(*f64(x, dy), w.shape, **geom.ref_kwargs))
    if bias:
        assert_close(db, reference.conv2d_backward_bias(f64(dy)))
    else:
        assert db is None
    # The same bits as the three separate ops.
    np.testing.assert_array_equal(dx, cc.conv2d_input(x.shape, w, dy, **geom.kwargs))
    np.testing.assert_array_equal(dw, cc.conv2d_weight(x, w.shape, dy, **geom.kwargs))
    if bias:
        np.testing.assert_array_equal(db, cc.conv2d_bias(dy))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_accumulates_into_out(dtype):
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, _, dy = make_problem(geom, dtype)
    _, dw_once, db_once = cc.conv2d_backward(x, w, dy, **geom.kwargs)
    dw = np.zeros(w.shape, dtype)
    db = np.zeros(geom.oc, dtype)
    for _ in range(2):
        _, ret_w, ret_b = cc.conv2d_backward(x, w, dy, weight_out=dw, bias_out=db, accumulate=True,
                                             **geom.kwargs)
    assert ret_w is dw
    assert ret_b is db
    assert_close(dw, 2 * dw_once.astype(np.float64))
    assert_close(db, 2 * db_once.astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward_bad_buffers_leave_everything_untouched(dtype):
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, _, dy = make_problem(geom, dtype)
    good_w, good_b = np.ones(w.shape, dtype), np.ones(geom.oc, dtype)
    for what, out in _bad_outs(w.shape, dtype):
        before = out.copy()
        with pytest.raises((TypeError, ValueError), match="weight_out"):
            cc.conv2d_backward(x, w, dy, weight_out=out, bias_out=good_b, accumulate=True, **geom.kwargs)
        np.testing.assert_array_equal(out, before, err_msg=what)
        np.testing.assert_array_equal(good_b, 1)
    for what, out in _bad_outs((geom.oc,), dtype):
        before = out.copy()
        with pytest.raises((TypeError, ValueError), match="bias_out"):
            cc.conv2d_backward(x, w, dy, weight_out=good_w, bias_out=out, accumulate=True, **geom.kwargs)
        np.testing.assert_array_equal(out, before, err_msg=what)
        np.testing.assert_array_equal(good_w, 1)
    with pytest.raises(ValueError, match="accumulate"):
        cc.conv2d_backward(x, w, dy, weight_out=good_w, accumulate=True, **geom.kwargs)
    with pytest.raises(ValueError, match="bias_out"):
        cc.conv2d_backward(x, w, dy, bias=False, bias_out=good_b, **geom.kwargs)
    with pytest.raises(ValueError, match="bias_out"):
        cc.conv2d_backward(x, w, dy, weight_out=good_w, bias_out=good_w.reshape(-1)[: geom.oc],
                           **geom.kwargs)
    with pytest.raises(ValueError, match="weight_out"):
        cc.conv2d_backward(x, w, dy, weight_out=w, **geom.kwargs)
    with pytest.raises(ValueError, match="method"):
        cc.conv2d_backward(x, w, dy, method="fft", **geom.kwargs)
    np.testing.assert_array_equal(good_w, 1)
    np.testing.assert_array_equal(good_b, 1)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward(dtype, activation):
    rng = np.random.default_rng(0)
    a = reference.activation_forward(rng.standard_normal((2, 3, 4, 5)), activation).astype(dtype)
    g = rng.standard_normal(a.shape).astype(dtype)
    got = cc.activation_backward(g, a, activation)
    assert got.dtype == dtype
    assert_close(got, reference.activation_backward(*f64(g, a), activation or "identity"))


@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_single_sample_3d(geom):
    x, w, b, dy = make_problem(dataclasses.replace(geom, mb=1))
    x3, dy3 = x[0], dy[0]
    y = cc.conv2d(x3, w, b, **geom.kwargs)
    assert y.ndim == 3
    assert_close(y, reference.conv2d_forward(x, w, b, **geom.ref_kwargs)[0])
    for method in METHODS:
        dx = cc.conv2d_input(x3.shape, w, dy3, method=method, **geom.kwargs)
        assert dx.shape == x3.shape
        assert_close(dx, reference.conv2d_backward_input(dy, w, x.shape, **geom.ref_kwargs)[0])
    dw = cc.conv2d_weight(x3, w.shape, dy3, **geom.kwargs)
    assert_close(dw, reference.conv2d_backward_weight(x, dy, w.shape, **geom.ref_kwargs))
    assert_close(cc.conv2d_bias(dy3), dy3.sum(axis=(1, 2)))


def test_padding_forms_agree():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    one = cc.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(cc.conv2d(x, w, padding=(1, 1)), one)
    np.testing.assert_array_equal(cc.conv2d(x, w, padding=((1, 1), (1, 1))), one)
    np.testing.assert_array_equal(cc.conv2d(x, w, padding="same"), one)
    np.testing.assert_array_equal(cc.conv2d(x, w, padding="valid"), cc.conv2d(x, w, padding=0))
    np.testing.assert_array_equal(cc.conv2d(x, w, stride=(2, 2), dilation=(1, 1)), cc.conv2d(x, w, stride=2))
    # "same" keeps ceil(in / stride) for any stride
    assert cc.conv2d(x, w, stride=2, padding="same").shape == (2, 4, 4, 4)
    assert cc.conv2d(x, w, stride=3, padding="same", dilation=2).shape == (2, 4, 3, 3)


# --------------------------------------------------------------------------
# Accumulation into caller-owned buffers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_accumulate_twice_is_twice_one_call(geom, dtype):
    x, w, _, dy = make_problem(geom, dtype)
    dw_once = cc.conv2d_weight(x, w.shape, dy, **geom.kwargs)
    db_once = cc.conv2d_bias(dy)

    dw = np.zeros(w.shape, dtype)
    db = np.zeros(geom.oc, dtype)
    for _ in range(2):
        ret_w = cc.conv2d_weight(x, w.shape, dy, out=dw, accumulate=True, **geom.kwargs)
        ret_b = cc.conv2d_bias(dy, out=db, accumulate=True)
    assert ret_w is dw
    assert ret_b is db
    assert_close(dw, 2 * dw_once.astype(np.float64))
    assert_close(db, 2 * db_once.astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_over_micro_batches_is_whole_batch(dtype):
    geom = Geometry(4, 3, 7, 7, 4, 3, 3, 2, 2, padding=1)
    x, w, _, dy = make_problem(geom, dtype)
    dw = np.zeros(w.shape, dtype)
    db = np.zeros(geom.oc, dtype)
    for half in (slice(0, 2), slice(2, 4)):
        cc.conv2d_weight(x[half], w.shape, dy[half], out=dw, accumulate=True, **geom.kwargs)
        cc.conv2d_bias(dy[half], out=db, accumulate=True)
    assert_close(dw, cc.conv2d_weight(x, w.shape, dy, **geom.kwargs).astype(np.float64))
    assert_close(db, cc.conv2d_bias(dy).astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_without_accumulate_overwrites(dtype):
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, _, dy = make_problem(geom, dtype)
    dw = np.full(w.shape, np.nan, dtype)  # garbage that must never be read
    db = np.full(geom.oc, np.nan, dtype)
    assert cc.conv2d_weight(x, w.shape, dy, out=dw, **geom.kwargs) is dw
    assert cc.conv2d_bias(dy, out=db, accumulate=False) is db
    np.testing.assert_array_equal(dw, cc.conv2d_weight(x, w.shape, dy, **geom.kwargs))
    np.testing.assert_array_equal(db, cc.conv2d_bias(dy))


def _bad_outs(shape, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    yield "wrong dtype", np.zeros(shape, other)
    yield "non-contiguous", np.zeros((*shape[:-1], 2 * shape[-1]), dtype)[..., ::2]
    yield "wrong shape", np.zeros((*shape[:-1], shape[-1] + 1), dtype)
    readonly = np.zeros(shape, dtype)
    readonly.flags.writeable = False
    yield "read-only", readonly


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bad_out_raises_and_is_untouched(dtype, accumulate):
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, _, dy = make_problem(geom, dtype)
    for what, out in _bad_outs(w.shape, dtype):
        before = out.copy()
        with pytest.raises((TypeError, ValueError)):
            cc.conv2d_weight(x, w.shape, dy, out=out, accumulate=accumulate, **geom.kwargs)
        np.testing.assert_array_equal(out, before, err_msg=what)
    for what, out in _bad_outs((geom.oc,), dtype):
        before = out.copy()
        with pytest.raises((TypeError, ValueError)):
            cc.conv2d_bias(dy, out=out, accumulate=accumulate)
        np.testing.assert_array_equal(out, before, err_msg=what)


# --------------------------------------------------------------------------
# The building blocks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_expand_stride(geom, dtype):
    *_, dy = make_problem(geom, dtype)
    got = cc.expand_stride(dy, geom.stride, geom.input_shape, (geom.kh, geom.kw), geom.padding, geom.dilation)
    size = reference.expanded_size(geom.input_shape, (geom.kh, geom.kw), geom.pads, geom.dilation)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, reference.expand_stride(dy, geom.stride, size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_flip_kernels(geom, dtype):
    _, w, _, _ = make_problem(geom, dtype)
    got = cc.flip_kernels(w, groups=geom.g)
    assert got.dtype == dtype
    assert got.shape == (geom.ic, geom.oc // geom.g, geom.kh, geom.kw)
    np.testing.assert_array_equal(got, reference.flip_kernels(w, geom.g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_im2col_col2im(geom, dtype):
    x, *_ = make_problem(geom, dtype)
    conv = {"stride": geom.stride, "padding": geom.padding, "dilation": geom.dilation}
    ksize = (geom.kh, geom.kw)
    col = cc.im2col(x, ksize, **conv)
    assert col.dtype == dtype
    np.testing.assert_array_equal(col, reference.im2col(x, ksize, geom.stride, geom.pads, geom.dilation))

    c = np.random.default_rng(1).standard_normal(col.shape).astype(dtype)
    back = cc.col2im(c, x.shape, ksize, **conv)
    assert back.dtype == dtype
    want = reference.col2im(f64(c), x.shape, ksize, geom.stride, geom.pads, geom.dilation)
    assert_close(back, want)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    lhs = np.vdot(f64(col), f64(c))
    rhs = np.vdot(f64(x), f64(back))
    scale = np.vdot(np.abs(f64(col)), np.abs(f64(c)))
    assert abs(lhs - rhs) <= 10 * np.finfo(dtype).eps * scale


def test_im2col_col2im_3d():
    geom = SMALL_GEOMETRY_PARAMS[1].values[0]
    x, *_ = make_problem(geom)
    conv = {"stride": geom.stride, "padding": geom.padding, "dilation": geom.dilation}
    col = cc.im2col(x[0], (geom.kh, geom.kw), **conv)
    assert col.ndim == 2
    np.testing.assert_array_equal(col, cc.im2col(x, (geom.kh, geom.kw), **conv)[0])
    back = cc.col2im(col, x[0].shape, (geom.kh, geom.kw), **conv)
    assert back.shape == x[0].shape
    np.testing.assert_array_equal(back, cc.col2im(col[None], x.shape, (geom.kh, geom.kw), **conv)[0])


# --------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.05)], ids=["plain", "mu", "wd", "mu-wd"]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update(dtype, momentum, weight_decay):
    rng = np.random.default_rng(0)
    p = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    v = np.zeros_like(p)
    p_ref, v_ref = f64(p, v)
    for _ in range(4):
        g = rng.standard_normal(p.shape).astype(dtype)
        if momentum:
            assert cc.sgd_update(p, g, 0.1, momentum=momentum, weight_decay=weight_decay, velocity=v) is None
        else:
            assert cc.sgd_update(p, g, 0.1, weight_decay=weight_decay) is None
        p_ref, v_ref = reference.sgd_update(p_ref, f64(g), v_ref, 0.1, momentum, weight_decay)
        assert p.dtype == dtype
        assert_close(p, p_ref)
        if momentum:
            assert_close(v, v_ref)


def test_sgd_update_with_momentum_needs_velocity():
    p = np.ones(3)
    with pytest.raises((TypeError, ValueError)):
        cc.sgd_update(p, np.ones(3), 0.1, momentum=0.9)
    np.testing.assert_array_equal(p, np.ones(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_rejects_copies(dtype):
    """A parameter that would have to be copied cannot be updated in place."""
    g = np.ones(6, dtype)
    readonly = np.ones(6, dtype)
    readonly.flags.writeable = False
    for p in (np.ones(12, dtype)[::2], readonly):
        before = p.copy()
        with pytest.raises((TypeError, ValueError)):
            cc.sgd_update(p, g, 0.1)
        np.testing.assert_array_equal(p, before)


# --------------------------------------------------------------------------
# dtypes and memory layouts
# --------------------------------------------------------------------------

PROMOTION_GEOM = SMALL_GEOMETRY_PARAMS[1].values[0]


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype", "result"),
    [
        (np.float16, np.float16, np.float32),
        (np.float16, np.float32, np.float32),
        (np.int32, np.int32, np.float64),
        (np.int64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.float64, np.float32, np.float64),
    ],
    ids=lambda t: np.dtype(t).name,
)
def test_dtype_promotion(x_dtype, w_dtype, result):
    geom = PROMOTION_GEOM
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, geom.input_shape).astype(x_dtype)
    w = rng.integers(-3, 4, geom.weight_shape).astype(w_dtype)
    dy = rng.integers(-3, 4, geom.output_shape).astype(x_dtype)
    y = cc.conv2d(x, w, **geom.kwargs)
    assert y.dtype == result
    # small integers: every dtype computes these exactly
    np.testing.assert_array_equal(y, reference.conv2d_forward(*f64(x, w), **geom.ref_kwargs))
    dx = cc.conv2d_input(x.shape, w, dy, **geom.kwargs)
    assert dx.dtype == result
    np.testing.assert_array_equal(dx, reference.conv2d_backward_input(*f64(dy, w), x.shape, **geom.ref_kwargs))
    dw = cc.conv2d_weight(x, w.shape, dy.astype(w_dtype), **geom.kwargs)
    assert dw.dtype == result
    np.testing.assert_array_equal(dw, reference.conv2d_backward_weight(*f64(x, dy), w.shape, **geom.ref_kwargs))


def _layouts(a):
    yield "fortran", np.asfortranarray(a)
    strided = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    strided[..., ::2] = a
    yield "strided", strided[..., ::2]
    yield "transposed", np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    yield "reversed", np.ascontiguousarray(a[..., ::-1])[..., ::-1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    geom = Geometry(2, 4, 6, 7, 4, 3, 2, 2, 1, padding=((1, 0), (0, 1)), g=2)
    x, w, b, dy = make_problem(geom, dtype)
    y = cc.conv2d(x, w, b, **geom.kwargs)
    dx = cc.conv2d_input(x.shape, w, dy, **geom.kwargs)
    dw = cc.conv2d_weight(x, w.shape, dy, **geom.kwargs)
    db = cc.conv2d_bias(dy)
    b_strided = np.repeat(b, 2)[::2]
    for (_, xl), (_, wl), (_, dyl) in zip(_layouts(x), _layouts(w), _layouts(dy)):
        assert not xl.flags.c_contiguous
        np.testing.assert_array_equal(cc.conv2d(xl, wl, b_strided, **geom.kwargs), y)
        np.testing.assert_array_equal(cc.conv2d_input(x.shape, wl, dyl, **geom.kwargs), dx)
        np.testing.assert_array_equal(cc.conv2d_weight(xl, w.shape, dyl, **geom.kwargs), dw)
        np.testing.assert_array_equal(cc.conv2d_bias(dyl), db)
    np.testing.assert_array_equal(x, make_problem(geom, dtype)[0])  # inputs are never written


# --------------------------------------------------------------------------
# Conv2D layer and SGD optimiser
# --------------------------------------------------------------------------

LAYER_GEOM = Geometry(2, 4, 7, 6, 6, 3, 3, 2, 1, padding=1, g=2)


def _layer(activation=None, dtype=np.float64, seed=0, bias=True):
    g = LAYER_GEOM
    return cc.Conv2D(
        g.ic,
        g.oc,
        (g.kh, g.kw),
        stride=g.stride,
        padding=g.padding,
        dilation=g.dilation,
        groups=g.g,
        bias=bias,
        activation=activation,
        dtype=dtype,
        seed=seed,
    )


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_round_trip(dtype, activation):
    g = LAYER_GEOM
    layer = _layer(activation, dtype)
    assert layer.weight.shape == g.weight_shape
    assert layer.weight.dtype == dtype
    assert layer.bias.shape == (g.oc,)
    x, _, _, grad = make_problem(g, dtype, seed=5)

    a = layer.forward(x)
    a_want = cc.conv2d(x, layer.weight, layer.bias, activation=activation, **g.kwargs)
    np.testing.assert_array_equal(a, a_want)

    layer.zero_grad()
    dx = layer.backward(grad)
    delta = cc.activation_backward(grad, a, activation)
    assert_close(dx, cc.conv2d_input(x.shape, layer.weight, delta, **g.kwargs).astype(np.float64))
    dw = cc.conv2d_weight(x, g.weight_shape, delta, **g.kwargs).astype(np.float64)
    db = cc.conv2d_bias(delta).astype(np.float64)
    assert_close(layer.grad_weight, dw)
    assert_close(layer.grad_bias, db)

    # a second backward on the same forward accumulates
    layer.backward(grad)
    assert_close(layer.grad_weight, 2 * dw)
    assert_close(layer.grad_bias, 2 * db)

    layer.zero_grad()
    assert not np.any(layer.grad_weight)
    assert not np.any(layer.grad_bias)


def test_layer_matches_reference_chain():
    """The layer's backward is the tutorial's chain: delta = G * f'(y), then the three gradients."""
    g = LAYER_GEOM
    layer = _layer("tanh")
    x, _, _, grad = make_problem(g, seed=6)
    w, b = layer.weight.copy(), layer.bias.copy()
    a = layer.forward(x)
    y = reference.conv2d_forward(x, w, b, **g.ref_kwargs)
    assert_close(a, np.tanh(y))
    dx = layer.backward(grad)
    delta = grad * (1 - np.tanh(y) ** 2)
    assert_close(dx, reference.conv2d_backward_input(delta, w, x.shape, **g.ref_kwargs))
    assert_close(layer.grad_weight, reference.conv2d_backward_weight(x, delta, w.shape, **g.ref_kwargs))
    assert_close(layer.grad_bias, reference.conv2d_backward_bias(delta))


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.01)], ids=["plain", "mu-wd"])
@pytest.mark.parametrize("use_optimizer", [False, True], ids=["step", "SGD"])
def test_layer_step(momentum, weight_decay, use_optimizer):
    g = LAYER_GEOM
    layer = _layer("relu")
    w_ref, b_ref = layer.weight.copy(), layer.bias.copy()
    vw = vb = None
    opt = cc.SGD(layer.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay) if use_optimizer else None
    for step in range(3):
        x, _, _, grad = make_problem(g, seed=10 + step)
        layer.zero_grad()
        layer.forward(x)
        layer.backward(grad)
        gw, gb = layer.grad_weight.copy(), layer.grad_bias.copy()
        if opt is None:
            layer.step(0.05, momentum=momentum, weight_decay=weight_decay)
        else:
            opt.step()
        w_ref, vw = reference.sgd_update(w_ref, gw, vw, 0.05, momentum, weight_decay)
        b_ref, vb = reference.sgd_update(b_ref, gb, vb, 0.05, momentum, 0.0)  # no decay on the bias
        assert_close(layer.weight, w_ref)
        assert_close(layer.bias, b_ref)


def test_layer_seeded_init_is_reproducible():
    a, b, c = _layer(seed=1), _layer(seed=1), _layer(seed=2)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    assert np.all(np.isfinite(a.weight))
    assert np.any(a.weight)
    assert _layer().weight.dtype == np.float64
    assert cc.Conv2D(3, 4, 3, seed=0).weight.dtype == np.float32  # the default dtype


def test_layer_without_bias():
    g = LAYER_GEOM
    layer = _layer(bias=False)
    assert layer.bias is None
    x, _, _, grad = make_problem(g, seed=7)
    np.testing.assert_array_equal(layer.forward(x), cc.conv2d(x, layer.weight, None, **g.kwargs))
    dx = layer.backward(grad)
    assert_close(dx, reference.conv2d_backward_input(grad, layer.weight, x.shape, **g.ref_kwargs))
    layer.step(0.1)


# --------------------------------------------------------------------------
# Module-level utilities
# --------------------------------------------------------------------------


def test_module_info():
    assert isinstance(cc.__version__, str)
    assert cc.__version__
    assert isinstance(cc.has_openmp, bool)
    assert cc.info()
    n = cc.get_num_threads()
    assert n >= 1
    try:
        cc.set_num_threads(1)
        assert cc.get_num_threads() == 1
    finally:
        cc.set_num_threads(n)


def test_results_independent_of_thread_count():
    geom = GEOMETRY_PARAMS[-1].values[0]
    x, w, b, dy = make_problem(geom, np.float32)
    n = cc.get_num_threads()

    def run():
        return (
            cc.conv2d(x, w, b, **geom.kwargs),
            cc.conv2d_input(x.shape, w, dy, **geom.kwargs),
            cc.conv2d_weight(x, w.shape, dy, **geom.kwargs),
        )

    try:
        cc.set_num_threads(1)
        one = run()
        cc.set_num_threads(max(n, 2))
        many = run()
    finally:
        cc.set_num_threads(n)
    for a, b_ in zip(one, many):
        np.testing.assert_array_equal(a, b_)
