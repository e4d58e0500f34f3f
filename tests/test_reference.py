"""The NumPy reference itself: hand-computed cases and a second, independent formulation.

The reference is the oracle of every other test, so it is checked here against
values worked out by hand and against direct per-output-pixel loops that use
neither zero insertion nor flipped kernels.
"""

import numpy as np
import pytest
from conftest import GEOMETRY_PARAMS, SMALL_GEOMETRY_PARAMS, assert_close, make_problem, reference


# --------------------------------------------------------------------------
# A second formulation: the definition, one output pixel at a time
# --------------------------------------------------------------------------


def _windows(geom, i, j):
    """Index of the input window seen by output pixel ``(i, j)`` in the padded input."""
    sh, sw = geom.stride
    dh, dw = geom.dilation
    rows = slice(i * sh, i * sh + dh * (geom.kh - 1) + 1, dh)
    cols = slice(j * sw, j * sw + dw * (geom.kw - 1) + 1, dw)
    return rows, cols


def loops_forward(x, w, b, geom):
    mb, oc, oh, ow = geom.output_shape
    g = geom.g
    xp = reference.pad(x, geom.pads)
    xp = xp.reshape(mb, g, geom.ic // g, *xp.shape[2:])
    wg = w.reshape(g, oc // g, *w.shape[1:])
    y = np.empty((mb, g, oc // g, oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows, cols = _windows(geom, i, j)
            y[..., i, j] = np.einsum("ngcrs,gocrs->ngo", xp[..., rows, cols], wg)
    return y.reshape(mb, oc, oh, ow) + b.reshape(1, -1, 1, 1)


def loops_backward(x, w, dy, geom):
    """``(dx, dw)`` by scattering every output pixel's delta back through its window."""
    mb, oc, oh, ow = geom.output_shape
    g = geom.g
    pt, _, pl, _ = geom.pads
    xp = reference.pad(x, geom.pads)
    xp = xp.reshape(mb, g, geom.ic // g, *xp.shape[2:])
    wg = w.reshape(g, oc // g, *w.shape[1:])
    dyg = dy.reshape(mb, g, oc // g, oh, ow)
    dxp = np.zeros_like(xp)
    dwg = np.zeros_like(wg)
    for i in range(oh):
        for j in range(ow):
            rows, cols = _windows(geom, i, j)
            dxp[..., rows, cols] += np.einsum("ngo,gocrs->ngcrs", dyg[..., i, j], wg)
            dwg += np.einsum("ngcrs,ngo->gocrs", xp[..., rows, cols], dyg[..., i, j])
    dxp = dxp.reshape(mb, geom.ic, *dxp.shape[3:])
    dx = dxp[:, :, pt : pt + geom.ih, pl : pl + geom.iw]
    return dx, dwg.reshape(w.shape)


@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_forward_matches_loops(geom):
    x, w, b, _ = make_problem(geom)
    y = reference.conv2d_forward(x, w, b, **geom.ref_kwargs)
    assert y.shape == geom.output_shape
    assert_close(y, loops_forward(x, w, b, geom))


@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_backward_matches_loops(geom):
    x, w, _, dy = make_problem(geom)
    dx_want, dw_want = loops_backward(x, w, dy, geom)
    dx = reference.conv2d_backward_input(dy, w, x.shape, **geom.ref_kwargs)
    dw = reference.conv2d_backward_weight(x, dy, w.shape, **geom.ref_kwargs)
    assert dx.shape == x.shape
    assert dw.shape == w.shape
    assert_close(dx, dx_want)
    assert_close(dw, dw_want)
    assert_close(reference.conv2d_backward_bias(dy), dy.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_backward_is_gradient_of_forward(geom):
    """Central differences of ``sum(conv2d(x, w, b) * dy)`` in float64."""
    x, w, b, dy = make_problem(geom)

    def loss(x_, w_, b_):
        return float(np.sum(reference.conv2d_forward(x_, w_, b_, **geom.ref_kwargs) * dy))

    eps = 1e-6
    rng = np.random.default_rng(1)
    grads = {
        0: reference.conv2d_backward_input(dy, w, x.shape, **geom.ref_kwargs),
        1: reference.conv2d_backward_weight(x, dy, w.shape, **geom.ref_kwargs),
        2: reference.conv2d_backward_bias(dy),
    }
    for k, grad in grads.items():
        args = [x, w, b]
        for flat in rng.choice(args[k].size, size=min(8, args[k].size), replace=False):
            idx = np.unravel_index(flat, args[k].shape)
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert numeric == pytest.approx(grad[idx], rel=1e-6, abs=1e-6)


# --------------------------------------------------------------------------
# Cases worked out by hand
# --------------------------------------------------------------------------

X33 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
W22 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])


def test_forward_by_hand():
    y = reference.conv2d_forward(X33, W22, np.array([1.0]))
    # y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 + 1
    np.testing.assert_array_equal(y, [[[[38.0, 48.0], [68.0, 78.0]]]])


def test_forward_stride_padding_by_hand():
    # padded input is 5x5 with the 3x3 in the middle; stride 2 picks rows/cols 0 and 2
    y = reference.conv2d_forward(X33, W22, None, stride=2, pads=1)
    # y[0,0] = 4*1 (only x[0,0] under w[1,1]); y[0,1] = 3*x[0,1] + 4*x[0,2] = 6 + 12
    # y[1,0] = 2*x[1,0] + 4*x[2,0] = 8 + 28; y[1,1] = sum(w * x[1:3, 1:3])
    np.testing.assert_array_equal(y, [[[[4.0, 18.0], [36.0, 5 + 12 + 24 + 36]]]])


def test_forward_dilation_and_groups_by_hand():
    x = np.stack([X33[0, 0], 10 * X33[0, 0]])[None]  # two channels
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]], [[[0.0, 1.0], [0.0, 0.0]]]])  # groups=2: one channel each
    y = reference.conv2d_forward(x, w, None, dilation=2, groups=2)
    # dilation 2 turns the 2x2 kernel into a 3x3 footprint: one output pixel
    np.testing.assert_array_equal(y, [[[[1.0 - 9.0]], [[30.0]]]])


def test_expand_stride_by_hand():
    delta = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # ih = iw = 5, k = 2, stride 2, no padding: eh = ew = 4, the last row/column stay zero
    got = reference.expand_stride(delta, 2, (4, 4))
    want = [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(got[0, 0], want)
    assert reference.expanded_size((5, 5), (2, 2)) == (4, 4)
    np.testing.assert_array_equal(reference.expand_stride(delta, 1, (2, 2)), delta)


def test_flip_kernels_by_hand():
    w = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    wf = reference.flip_kernels(w)
    assert wf.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(wf[1, 0], [[7.0, 6.0], [5.0, 4.0]])  # w[0, 1] rotated by 180 degrees
    np.testing.assert_array_equal(wf[2, 1], w[1, 2, ::-1, ::-1])
    # groups=2 on a (4, 1, 2, 2) weight: each group of 2 outputs becomes 1 input channel's 2 outputs
    wg = np.arange(16.0).reshape(4, 1, 2, 2)
    wfg = reference.flip_kernels(wg, groups=2)
    assert wfg.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(wfg[1, 0], wg[2, 0, ::-1, ::-1])
    np.testing.assert_array_equal(wfg[1, 1], wg[3, 0, ::-1, ::-1])
    # flipping twice gives the weight back
    np.testing.assert_array_equal(reference.flip_kernels(wfg, groups=2), wg)


def test_backward_input_by_hand():
    # a single error at (0, 0) sends the kernel itself back to the window it came from
    delta = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    dx = reference.conv2d_backward_input(delta, W22, X33.shape)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    # errors everywhere: each input pixel collects the taps that covered it
    dx = reference.conv2d_backward_input(np.ones((1, 1, 2, 2)), W22, X33.shape)
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


def test_backward_input_stride_and_padding_by_hand():
    # the forward of test_forward_stride_padding_by_hand; error only at y[1, 1]
    delta = np.array([[[[0.0, 0.0], [0.0, 1.0]]]])
    dx = reference.conv2d_backward_input(delta, W22, X33.shape, stride=2, pads=1)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 1, 2], [0, 3, 4]])
    # error only at y[0, 0]: its window is mostly padding, only x[0, 0] (under w[1, 1]) gets it
    delta = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    dx = reference.conv2d_backward_input(delta, W22, X33.shape, stride=2, pads=1)
    np.testing.assert_array_equal(dx[0, 0], [[4, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_backward_input_unreached_pixels_get_zero():
    # 4x4 input, 2x2 kernel, stride 3: row and column 2 are never read
    x = np.ones((1, 1, 4, 4))
    dx = reference.conv2d_backward_input(np.ones((1, 1, 1, 1)), W22, x.shape, stride=3)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0, 0], [3, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_backward_input_padding_larger_than_kernel():
    # padding 2 > k - 1 = 1: the gradient of the padded input is cropped
    delta = np.zeros((1, 1, 3, 3))
    delta[0, 0, 1, 1] = 1.0  # its window is x[0:2, 0:2] shifted by the padding
    dx = reference.conv2d_backward_input(delta, W22, (1, 1, 2, 2), stride=1, pads=2)
    np.testing.assert_array_equal(dx[0, 0], [[4, 0], [0, 0]])


def test_backward_weight_and_bias_by_hand():
    delta = np.ones((1, 1, 2, 2))
    dw = reference.conv2d_backward_weight(X33, delta, W22.shape)
    # dw[r, s] = sum of the 2x2 window of x starting at (r, s)
    np.testing.assert_array_equal(dw[0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(reference.conv2d_backward_bias(delta), [4.0])
    delta = np.array([[[[0.0, 2.0], [0.0, 0.0]]]])
    dw = reference.conv2d_backward_weight(X33, delta, W22.shape, stride=2, pads=1)
    # y[0, 1] reads padded rows 0..1, cols 2..3: [[0, 0], [2, 3]]
    np.testing.assert_array_equal(dw[0, 0], [[0, 0], [4, 6]])


def test_output_size_and_same_pads():
    assert reference.output_size((7, 8), (3, 3), 2, 1) == (4, 4)
    assert reference.output_size((8, 9), (3, 3), 3, 0) == (2, 3)
    assert reference.output_size((9, 9), (3, 3), 1, 2, 2) == (9, 9)
    assert reference.output_size((5, 5), (2, 2), 1, (0, 1, 0, 1)) == (5, 5)
    # "same": out = ceil(in / stride), the odd padding row at the bottom/right
    assert reference.same_pads((7, 8), (3, 3), 2) == (1, 1, 0, 1)
    assert reference.same_pads((6, 5), (4, 2)) == (1, 2, 0, 1)
    assert reference.same_pads((9, 9), (3, 3), 1, 2) == (2, 2, 2, 2)
    assert reference.same_pads((5, 5), (1, 1), 2) == (0, 0, 0, 0)
    for ih, k, s, d in [(7, 3, 2, 1), (8, 4, 3, 1), (10, 3, 1, 3), (5, 5, 2, 1)]:
        pads = reference.same_pads((ih, ih), (k, k), s, d)
        assert reference.output_size((ih, ih), (k, k), s, pads, d) == (-(-ih // s),) * 2


def test_sgd_update_by_hand():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.5])
    new_p, v = reference.sgd_update(p, g, lr=0.1)
    np.testing.assert_allclose(new_p, [0.95, -2.05])
    np.testing.assert_array_equal(p, [1.0, -2.0])  # inputs untouched
    # momentum 0.9, weight decay 0.1: v = 0.9*v + g + 0.1*p
    new_p, v = reference.sgd_update(p, g, np.array([1.0, 1.0]), lr=0.1, momentum=0.9, weight_decay=0.1)
    np.testing.assert_allclose(v, [0.9 + 0.5 + 0.1, 0.9 + 0.5 - 0.2])
    np.testing.assert_allclose(new_p, [1.0 - 0.15, -2.0 - 0.12])


def test_activations_by_hand():
    y = np.array([-1000.0, -1.0, 0.0, 2.0, 1000.0])
    np.testing.assert_array_equal(reference.activation_forward(y, "relu"), [0, 0, 0, 2, 1000])
    np.testing.assert_array_equal(reference.activation_forward(y, None), y)
    s = reference.activation_forward(y, "sigmoid")  # no overflow warning at +-1000
    np.testing.assert_allclose(s, [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-2.0)), 1.0])
    np.testing.assert_allclose(reference.activation_forward(y, "tanh"), np.tanh(y))
    a = np.array([0.0, 0.25, 0.5])
    np.testing.assert_array_equal(reference.activation_derivative(a, "relu"), [0, 1, 1])
    np.testing.assert_array_equal(reference.activation_derivative(a, "sigmoid"), [0, 0.1875, 0.25])
    np.testing.assert_array_equal(reference.activation_derivative(a, "tanh"), [1, 0.9375, 0.75])
    np.testing.assert_array_equal(reference.activation_derivative(a, "identity"), [1, 1, 1])
    with pytest.raises(ValueError, match="activation"):
        reference.activation_forward(y, "softplus")


@pytest.mark.parametrize("name", reference.ACTIVATIONS)
def test_activation_derivative_by_differences(name):
    y = np.linspace(-3, 3, 13) + 0.01  # away from relu's kink
    eps = 1e-6
    numeric = (reference.activation_forward(y + eps, name) - reference.activation_forward(y - eps, name)) / (2 * eps)
    a = reference.activation_forward(y, name)
    np.testing.assert_allclose(reference.activation_derivative(a, name), numeric, rtol=1e-7, atol=1e-8)


def test_reference_keeps_float32():
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, b, dy = make_problem(geom, np.float32)
    assert reference.conv2d_forward(x, w, b, **geom.ref_kwargs).dtype == np.float32
    assert reference.conv2d_backward_input(dy, w, x.shape, **geom.ref_kwargs).dtype == np.float32
    assert reference.conv2d_backward_weight(x, dy, w.shape, **geom.ref_kwargs).dtype == np.float32
    assert reference.flip_kernels(w).dtype == np.float32
    assert reference.expand_stride(dy, 2, (9, 9)).dtype == np.float32


@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_im2col_gemm_is_forward_and_col2im_is_adjoint(geom):
    x, w, _, _ = make_problem(geom)
    col = reference.im2col(x, w.shape, geom.stride, geom.pads, geom.dilation)
    mb, oc, oh, ow = geom.output_shape
    assert col.shape == (mb, geom.ic * geom.kh * geom.kw, oh * ow)
    if geom.g == 1:
        y = np.einsum("ok,nkp->nop", w.reshape(oc, -1), col).reshape(geom.output_shape)
        assert_close(y, reference.conv2d_forward(x, w, None, **geom.ref_kwargs))
    c = np.random.default_rng(2).standard_normal(col.shape)
    back = reference.col2im(c, x.shape, w.shape, geom.stride, geom.pads, geom.dilation)
    assert back.shape == x.shape
    assert np.vdot(col, c) == pytest.approx(np.vdot(x, back), rel=1e-12)


def test_im2col_by_hand():
    col = reference.im2col(X33, (2, 2))
    # rows are the taps (r, s) = (0,0) (0,1) (1,0) (1,1), columns the output pixels
    np.testing.assert_array_equal(col[0], [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]])
    back = reference.col2im(np.ones_like(col), X33.shape, (2, 2))
    np.testing.assert_array_equal(back[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
