"""Gradients against central finite differences, in float64.

The loss is ``sum(conv2d(x, w, b, activation=...) * R)``; its gradients with
respect to ``x``, ``w`` and ``b`` must match what ``conv2d_input``,
``conv2d_weight`` and ``conv2d_bias`` compute from ``delta = R * f'(y)``.
"""

import numpy as np
import pytest
from conftest import SMALL_GEOMETRY_PARAMS, Geometry, make_problem

import convcore as cc
from convcore.gradcheck import GradcheckError, check_conv2d_gradients, numerical_grad

ACTIVATIONS = [None, "identity", "relu", "sigmoid", "tanh"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Finite differences make thousands of tiny calls: threads would only add start-up cost."""
    n = cc.get_num_threads()
    cc.set_num_threads(1)
    yield
    cc.set_num_threads(n)


def test_numerical_grad_of_known_functions():
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.25]])
    np.testing.assert_allclose(numerical_grad(lambda v: np.sum(v**3), x), 3 * x**2, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(numerical_grad(lambda v: np.sum(np.sin(v)), x), np.cos(x), rtol=1e-8, atol=1e-8)
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(numerical_grad(lambda v: np.vdot(a, v), x, eps=1e-3), a, rtol=1e-10)


def test_numerical_grad_leaves_input_alone():
    x = np.arange(4, dtype=np.float32)
    grad = numerical_grad(lambda v: float(v @ v), x)
    assert grad.dtype == np.float64
    np.testing.assert_array_equal(x, np.arange(4, dtype=np.float32))
    np.testing.assert_allclose(grad, 2 * x, atol=1e-8)


@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_gradients_by_finite_differences(geom):
    """Direct check, without the helper: every entry of the three gradients."""
    x, w, b, r = make_problem(geom)

    def loss(x_, w_, b_):
        return np.sum(cc.conv2d(x_, w_, b_, **geom.kwargs) * r)

    dx = cc.conv2d_input(x.shape, w, r, **geom.kwargs)
    dw = cc.conv2d_weight(x, w.shape, r, **geom.kwargs)
    db = cc.conv2d_bias(r)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("geom", SMALL_GEOMETRY_PARAMS)
def test_check_conv2d_gradients(geom, activation):
    x, w, b, _ = make_problem(geom)
    assert check_conv2d_gradients(x, w, b, activation=activation, **geom.kwargs)


@pytest.mark.parametrize("method", ["flip", "col2im"])
def test_both_input_methods_are_gradients(method):
    geom = Geometry(1, 2, 7, 6, 3, 3, 2, 3, 2, padding=((2, 0), (1, 1)), dh=2)
    x, w, b, r = make_problem(geom)
    dx = cc.conv2d_input(x.shape, w, r, method=method, **geom.kwargs)
    numeric = numerical_grad(lambda v: np.sum(cc.conv2d(v, w, b, **geom.kwargs) * r), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-7)


def test_check_conv2d_gradients_3d_and_no_bias():
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, _, _ = make_problem(geom)
    assert check_conv2d_gradients(x[0], w, None, activation="sigmoid", **geom.kwargs)


def test_check_conv2d_gradients_reports_a_wrong_gradient():
    """Mistakes are reported, not passed."""
    geom = SMALL_GEOMETRY_PARAMS[0].values[0]
    x, w, b, r = make_problem(geom)
    with pytest.raises(ValueError, match="grad_output"):
        check_conv2d_gradients(x, w, b, grad_output=r[:, :1], **geom.kwargs)
    # an impossible tolerance makes the comparison itself fail
    with pytest.raises(GradcheckError, match="gradient of"):
        check_conv2d_gradients(x, w, b, rtol=0.0, atol=0.0, eps=1e-1, activation="tanh", **geom.kwargs)
    assert not check_conv2d_gradients(
        x, w, b, rtol=0.0, atol=0.0, eps=1e-1, activation="tanh", raise_exception=False, **geom.kwargs
    )
