"""Bad input gets a clear Python exception naming the argument, and nothing is written."""

import numpy as np
import pytest

import convcore as cc

X = np.ones((2, 3, 5, 5), np.float32)
W = np.ones((4, 3, 3, 3), np.float32)
DY = np.ones((2, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        pytest.param(dict(input=np.ones(5)), ValueError, r"input: expected a 4-D", id="rank1"),
        pytest.param(dict(input=np.ones((5, 5))), ValueError, r"input: expected a 4-D", id="rank2"),
        pytest.param(dict(input=np.ones((1, 2, 3, 4, 5))), ValueError, r"got shape \(1, 2, 3, 4, 5\)", id="rank5"),
        pytest.param(dict(weight=np.ones((3, 3))), ValueError, r"weight.*4-D", id="weight-rank2"),
        pytest.param(dict(weight=np.ones((4, 2, 3, 3))), ValueError, r"weight: expected shape \(out_channels, 3", id="channels"),
        pytest.param(dict(groups=2), ValueError, r"ic=3 must be divisible by groups=2", id="ic-groups"),
        pytest.param(dict(input=np.ones((1, 4, 5, 5)), weight=np.ones((3, 2, 3, 3)), groups=2), ValueError,
                     r"oc=3 must be divisible by groups=2", id="oc-groups"),
        pytest.param(dict(groups=0), ValueError, r"groups must be >= 1", id="groups0"),
        pytest.param(dict(stride=0), ValueError, r"stride: must be >= 1", id="stride0"),
        pytest.param(dict(stride=(1, -2)), ValueError, r"stride: must be >= 1", id="stride-neg"),
        pytest.param(dict(stride=1.5), TypeError, r"stride: expected an int", id="stride-float"),
        pytest.param(dict(stride=(1, 2, 3)), ValueError, r"stride: expected an int or a pair", id="stride-triple"),
        pytest.param(dict(dilation=0), ValueError, r"dilation: must be >= 1", id="dilation0"),
        pytest.param(dict(padding=-1), ValueError, r"padding must be >= 0", id="padding-neg"),
        pytest.param(dict(padding="full"), ValueError, r"padding: expected", id="padding-name"),
        pytest.param(dict(weight=np.ones((4, 3, 7, 7))), ValueError, r"kernel 7x7.*exceeds the padded input 5x5", id="kernel-big"),
        pytest.param(dict(dilation=3), ValueError, r"dilated 7x7.*exceeds", id="dilated-big"),
        pytest.param(dict(input=np.ones((1, 3, 0, 5))), ValueError, r"height and width must be >= 1", id="zero-height"),
        pytest.param(dict(activation="gelu"), ValueError, r"activation: expected", id="activation"),
        pytest.param(dict(bias=np.ones(3)), ValueError, r"bias: expected shape \(4,\)", id="bias-shape"),
        pytest.param(dict(input=X.astype(complex)), TypeError, r"input: expected a real numeric array, got dtype complex128", id="complex"),
        pytest.param(dict(input=X.astype(object)), TypeError, r"got dtype object", id="object"),
        pytest.param(dict(input=X.astype(bool)), TypeError, r"got dtype bool", id="bool"),
        pytest.param(dict(input=np.full((1, 1, 1, 1), "a")), TypeError, r"got dtype <U1", id="string"),
        pytest.param(dict(weight=W.astype(np.longdouble)), TypeError, r"float32 or float64", id="longdouble"),
        pytest.param(dict(padding=2**62), OverflowError, r"overflows a 64-bit size", id="overflow"),
    ],
)
def test_conv2d_refuses(kwargs, exc, match):
    args = dict(input=X, weight=W)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        cc.conv2d(**args)


def test_unallocatable_output_is_memory_error():
    # 1 x 1 input padded to 2^20 x 2^20: the output alone would need 4 TiB.
    with pytest.raises(MemoryError):
        cc.conv2d(np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), padding=2**20 + 1)


def test_method_name():
    with pytest.raises(ValueError, match=r"method: expected one of"):
        cc.conv2d_input(X.shape, W, DY, method="fft")


def test_grad_output_shape():
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 4, 3, 3\)"):
        cc.conv2d_input(X.shape, W, np.ones((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"grad_output: expected shape"):
        cc.conv2d_weight(X, W.shape, np.ones((2, 5, 3, 3), np.float32))


def _readonly(shape, dtype=np.float32):
    a = np.full(shape, 7, dtype)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    ("out", "exc", "match"),
    [
        pytest.param(np.full((4, 3, 3, 3), 7, np.float64), TypeError, r"out: dtype must be float32, got float64", id="dtype"),
        pytest.param(np.full((3, 3, 3, 4), 7, np.float32).T, ValueError, r"out: must be C-contiguous", id="fortran"),
        pytest.param(np.full((4, 3, 3, 6), 7, np.float32)[..., ::2], ValueError, r"out: must be C-contiguous", id="strided"),
        pytest.param(_readonly((4, 3, 3, 3)), ValueError, r"out: must be writeable", id="readonly"),
        pytest.param(np.full((4, 3, 3, 2), 7, np.float32), ValueError, r"out: shape must be \(4, 3, 3, 3\)", id="shape"),
        pytest.param([[0.0]], TypeError, r"out: expected a numpy.ndarray", id="list"),
    ],
)
@pytest.mark.parametrize("accumulate", [False, True])
def test_weight_out_refused_and_untouched(out, exc, match, accumulate):
    before = np.array(out, copy=True)
    with pytest.raises(exc, match=match):
        cc.conv2d_weight(X, W.shape, DY, out=out, accumulate=accumulate)
    np.testing.assert_array_equal(np.asarray(out), before)


def test_bias_out_refused_and_untouched():
    out = np.full(4, 7, np.float64)
    with pytest.raises(TypeError, match=r"out: dtype must be float32"):
        cc.conv2d_bias(DY, out=out, accumulate=True)
    assert (out == 7).all()
    with pytest.raises(ValueError, match=r"accumulate=True needs an out buffer"):
        cc.conv2d_bias(DY, accumulate=True)


def test_out_aliasing_an_input_is_refused():
    buf = np.ones(X.size + W.size, np.float32)
    x = buf[: X.size].reshape(X.shape)
    overlapping = buf[X.size - 9: X.size - 9 + W.size].reshape(W.shape)
    before = x.copy()
    with pytest.raises(ValueError, match=r"out: must not share memory"):
        cc.conv2d_weight(x, W.shape, DY, out=overlapping)
    np.testing.assert_array_equal(x, before)
    separate = buf[X.size:].reshape(W.shape)  # same allocation, disjoint bytes: accepted
    cc.conv2d_weight(x, W.shape, DY, out=separate)
    np.testing.assert_allclose(separate, cc.conv2d_weight(X, W.shape, DY))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        pytest.param(dict(lr=-0.1), ValueError, r"lr must be finite and >= 0", id="lr-neg"),
        pytest.param(dict(lr=float("nan")), ValueError, r"lr must be finite", id="lr-nan"),
        pytest.param(dict(momentum=-1.0, velocity=np.zeros(4, np.float32)), ValueError, r"momentum must be", id="mu-neg"),
        pytest.param(dict(weight_decay=float("inf")), ValueError, r"weight_decay must be", id="wd-inf"),
        pytest.param(dict(momentum=0.9), ValueError, r"velocity: required", id="no-velocity"),
        pytest.param(dict(grad=np.ones(4)), TypeError, r"grad: dtype float64 would be narrowed", id="narrowing"),
        pytest.param(dict(grad=np.ones(5, np.float32)), ValueError, r"grad: expected shape \(4,\)", id="grad-shape"),
        pytest.param(dict(momentum=0.9, velocity=np.zeros(4)), TypeError, r"velocity: dtype must be float32", id="velocity-dtype"),
        pytest.param(dict(momentum=0.9, velocity=np.zeros(5, np.float32)), ValueError, r"velocity: shape", id="velocity-shape"),
    ],
)
def test_sgd_refused_leaves_buffers_untouched(kwargs, exc, match):
    param = np.ones(4, np.float32)
    args = dict(grad=np.ones(4, np.float32), lr=0.1)
    args.update(kwargs)
    velocity = args.get("velocity")
    v_before = None if velocity is None else velocity.copy()
    with pytest.raises(exc, match=match):
        cc.sgd_update(param, **args)
    assert (param == 1).all()
    if velocity is not None:
        np.testing.assert_array_equal(velocity, v_before)


def test_sgd_param_must_be_writeable_array():
    with pytest.raises(ValueError, match=r"param: must be writeable"):
        cc.sgd_update(_readonly(4), np.ones(4, np.float32), lr=0.1)
    with pytest.raises(TypeError, match=r"param: expected a numpy.ndarray"):
        cc.sgd_update([1.0, 2.0], [1.0, 1.0], lr=0.1)
    with pytest.raises(TypeError, match=r"param: dtype must be float32 or float64"):
        cc.sgd_update(np.ones(4, np.int64), np.ones(4, np.int64), lr=0.1)


def test_thread_count():
    with pytest.raises(ValueError, match=r"n must be >= 1 \(or 0 to follow OpenMP's setting\), got -2"):
        cc.set_num_threads(-2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate(dtype):
    x = np.ones((1, 1, 4, 4), dtype)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    y = cc.conv2d(x, np.ones((1, 1, 2, 2), dtype))
    assert np.isnan(y[0, 0, 0, 0]) and np.isinf(y[0, 0, 2, 2])
    assert np.isfinite(y[0, 0, 1, 1])
    dx = cc.conv2d_input(x.shape, np.ones((1, 1, 2, 2), dtype), y)
    assert np.isnan(dx).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_empty_results(dtype):
    x = np.ones((0, 3, 5, 5), dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    y = cc.conv2d(x, w, np.ones(4, dtype), stride=2, padding=1)
    assert y.shape == (0, 4, 3, 3) and y.dtype == dtype
    dx = cc.conv2d_input(x.shape, w, y, stride=2, padding=1)
    assert dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(cc.conv2d_weight(x, w.shape, y, stride=2, padding=1), np.zeros_like(w))
    np.testing.assert_array_equal(cc.conv2d_bias(y), np.zeros(4, dtype))
    acc = np.full_like(w, 3.0)
    cc.conv2d_weight(x, w.shape, y, stride=2, padding=1, out=acc, accumulate=True)
    assert (acc == 3.0).all()  # adding an empty sum changes nothing


def test_sgd_aliasing():
    buf = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"grad: must not share memory with param"):
        cc.sgd_update(buf[:4], buf[1:5], lr=0.1)
    with pytest.raises(ValueError, match=r"velocity: must not share memory"):
        cc.sgd_update(buf[:4], np.ones(4, np.float32), lr=0.1, momentum=0.9, velocity=buf[:4])
    assert (buf == 1).all()
    p = np.ones(4, np.float32)
    cc.sgd_update(p, p, lr=0.25)  # grad is param: p -= 0.25 * p
    np.testing.assert_array_equal(p, np.full(4, 0.75, np.float32))


def test_kernel_peak_probe():
    from convcore import _core

    assert _core.kernel_peak_gflops("float32", 0.02) > 0
    assert _core.kernel_peak_gflops("float64", 0.02) > 0
    with pytest.raises(ValueError, match=r"dtype: expected 'float32' or 'float64'"):
        _core.kernel_peak_gflops("float16", 0.02)
    with pytest.raises(ValueError, match=r"seconds: expected a duration"):
        _core.kernel_peak_gflops("float32", 0.0)


def test_a_refused_array_is_shown_by_shape_not_values():
    x = np.zeros((2, 6, 12, 12), np.float32)
    w = np.zeros((16, 6, 5, 5), np.float32)
    with pytest.raises(TypeError) as info:
        cc.conv2d_input(x, w, np.zeros((2, 16, 8, 8), np.float32))  # the array, not its shape
    msg = str(info.value)
    assert msg == "input_size: expected an int, got ndarray of shape (6, 12, 12) float32"
    with pytest.raises(ValueError, match=r"layout: expected 'NCHW' or 'NHWC', got 'x+\.\.\.$") as info:
        cc.conv2d(x, w, layout="x" * 200)
    assert len(str(info.value)) < 130
