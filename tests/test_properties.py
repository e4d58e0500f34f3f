"""Property-based tests: forward and every gradient against the NumPy reference over random
geometries (stride, per-side padding, dilation, groups, odd sizes, both dtypes).

The number of examples is bounded for CI; set CONVCORE_HYPOTHESIS_EXAMPLES (e.g. 2000) for a
long run: ``CONVCORE_HYPOTHESIS_EXAMPLES=2000 pytest tests/test_properties.py``.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convcore as cc
from convcore import reference as ref

EXAMPLES = int(os.environ.get("CONVCORE_HYPOTHESIS_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CONVCORE_HYPOTHESIS_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    # Mostly a few channels; now and then enough for the paths that read col in place as the
    # GEMM's A (16+ output channels; 16+ input channels for the flipped-kernel pass) and the
    # in-place weight gradient (8-64 output channels).
    icg = draw(st.sampled_from([1, 2, 3, 1, 2, 3, 17]))
    ocg = draw(st.sampled_from([1, 2, 3, 1, 2, 3, 8, 17]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 4)) for _ in range(4))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    ih = draw(st.integers(max(1, ekh - pads[0] - pads[1]), 11))
    iw = draw(st.integers(max(1, ekw - pads[2] - pads[3]), 11))
    mb = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(mb=mb, ic=icg * groups, ih=ih, iw=iw, oc=ocg * groups, kh=kh, kw=kw, stride=(sh, sw),
                pads=pads, dilation=(dh, dw), groups=groups, dtype=dtype, seed=seed)


def _tol(dtype, k):
    return (2e-5 * np.sqrt(k), 2e-5 * np.sqrt(k)) if dtype == np.float32 else (1e-12 * k, 1e-12 * k)


@SETTINGS
@given(problems())
def test_ops_match_reference(p):
    rng = np.random.default_rng(p["seed"])
    dt = p["dtype"]
    x = rng.uniform(-1, 1, (p["mb"], p["ic"], p["ih"], p["iw"])).astype(dt)
    w = rng.uniform(-1, 1, (p["oc"], p["ic"] // p["groups"], p["kh"], p["kw"])).astype(dt)
    b = rng.uniform(-1, 1, p["oc"]).astype(dt)
    pt, pb, pl, pr = p["pads"]
    kw = dict(stride=p["stride"], padding=((pt, pb), (pl, pr)), dilation=p["dilation"], groups=p["groups"])
    rkw = dict(stride=p["stride"], pads=p["pads"], dilation=p["dilation"], groups=p["groups"])
    k = w[0].size
    rtol, atol = _tol(dt, k)

    y = cc.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **rkw),
                               rtol=rtol, atol=atol)
    dy = rng.uniform(-1, 1, y.shape).astype(dt)
    want_dx = ref.conv2d_backward_input(dy.astype(np.float64), w.astype(np.float64), x.shape, **rkw)
    for method in ("flip", "col2im", "auto"):
        np.testing.assert_allclose(cc.conv2d_input(x.shape, w, dy, method=method, **kw), want_dx,
                                   rtol=rtol, atol=atol * p["oc"])
    np.testing.assert_allclose(cc.conv2d_weight(x, w.shape, dy, **kw),
                               ref.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64), w.shape, **rkw),
                               rtol=rtol, atol=atol * y[0, 0].size * p["mb"])
    np.testing.assert_allclose(cc.conv2d_bias(dy), ref.conv2d_backward_bias(dy.astype(np.float64)),
                               rtol=rtol, atol=atol * y[0, 0].size * p["mb"])


@SETTINGS
@given(problems())
def test_expand_and_flip_match_reference(p):
    rng = np.random.default_rng(p["seed"])
    pt, pb, pl, pr = p["pads"]
    oh, ow = ref.output_size((p["ih"], p["iw"]), (p["kh"], p["kw"]), p["stride"], p["pads"], p["dilation"])
    dy = rng.standard_normal((p["mb"], p["oc"], oh, ow))
    e = cc.expand_stride(dy, p["stride"], (p["ih"], p["iw"]), (p["kh"], p["kw"]), ((pt, pb), (pl, pr)), p["dilation"])
    size = ref.expanded_size((p["ih"], p["iw"]), (p["kh"], p["kw"]), p["pads"], p["dilation"])
    np.testing.assert_array_equal(e, ref.expand_stride(dy, p["stride"], size))
    w = rng.standard_normal((p["oc"], p["ic"] // p["groups"], p["kh"], p["kw"]))
    np.testing.assert_array_equal(cc.flip_kernels(w, p["groups"]), ref.flip_kernels(w, p["groups"]))
