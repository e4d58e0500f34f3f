"""NHWC activations (``layout="NHWC"``): every convolution op, path and kernel row against the
NumPy reference (run on NCHW copies of the same values) and against the NCHW path, random
geometries, both dtypes; the transposed convolution, the layers, padding modes, 3-D inputs, errors
that name the expected NHWC shape, and bits that do not depend on threads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, G, GEOMETRIES, GEOMETRY_PARAMS, assert_close, f64, make_problem, reference

import convcore as cc
from convcore import _core


def nhwc(a):
    """(N, C, H, W) -> (N, H, W, C), C-contiguous (3-D: (C, H, W) -> (H, W, C))."""
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))


def nchw(a):
    """(N, H, W, C) -> (N, C, H, W) (3-D likewise)."""
    return np.ascontiguousarray(np.moveaxis(a, -1, -3))


def _random_geometries(count, seed):
    """Random small geometries: stride, per-side padding (asymmetric included), dilation, groups
    (depthwise included), kernel sizes, all drawn so that the output is non-empty."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        g = int(rng.choice([1, 1, 2, 3]))
        icg, ocg = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        if rng.random() < 0.25:  # depthwise, channel multiplier 1 or 2
            icg, g = 1, int(rng.integers(2, 6))
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        pads = tuple(int(v) for v in rng.integers(0, 4, 4))
        ih, iw = (int(v) for v in rng.integers(3, 11, 2))
        geom = G(int(rng.integers(1, 4)), icg * g, ih, iw, ocg * g, kh, kw, sh, sw,
                 padding=(pads[:2], pads[2:]), dh=dh, dw=dw, g=g)
        if min(geom.output_shape) >= 1 and ih + pads[0] + pads[1] >= dh * (kh - 1) + 1 and \
                iw + pads[2] + pads[3] >= dw * (kw - 1) + 1:
            out.append(geom)
    return out


RANDOM_PARAMS = [pytest.param(g, id=str(g)) for g in _random_geometries(24, seed=2024)]


def _reference(geom, x, w, b, dy):
    """The four results of the NumPy reference, in NCHW."""
    xr, wr, br, dyr = f64(x, w, b, dy)
    y = reference.conv2d_forward(xr, wr, br, **geom.ref_kwargs)
    dx = reference.conv2d_backward_input(dyr, wr, geom.input_shape, **geom.ref_kwargs)
    dw = reference.conv2d_backward_weight(xr, dyr, geom.weight_shape, **geom.ref_kwargs)
    return y, dx, dw, reference.conv2d_backward_bias(dyr)


def _check_functional(geom, dtype):
    x, w, b, dy = make_problem(geom, dtype, seed=7)
    y_ref, dx_ref, dw_ref, db_ref = _reference(geom, x, w, b, dy)
    xh, dyh = nhwc(x), nhwc(dy)
    kw = geom.kwargs

    y = cc.conv2d(xh, w, b, layout="NHWC", **kw)
    assert y.shape == nhwc(y_ref).shape and y.dtype == dtype
    assert_close(nchw(y), y_ref, dtype)
    assert_close(nchw(y), cc.conv2d(x, w, b, **kw), dtype)  # the NCHW path, transposed
    for method in ("flip", "col2im", "auto"):
        dx = cc.conv2d_input(xh.shape, w, dyh, method=method, layout="NHWC", **kw)
        assert_close(nchw(dx), dx_ref, dtype)
    assert_close(nchw(dx), cc.conv2d_input(x.shape, w, dy, **kw), dtype)
    dw = cc.conv2d_weight(xh, w.shape, dyh, layout="NHWC", **kw)
    assert_close(dw, dw_ref, dtype)
    assert_close(dw, cc.conv2d_weight(x, w.shape, dy, **kw), dtype)
    db = cc.conv2d_bias(dyh, layout="NHWC")
    assert_close(db, db_ref, dtype)
    dx2, dw2, db2 = cc.conv2d_backward(xh, w, dyh, layout="NHWC", **kw)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", GEOMETRY_PARAMS)
def test_functional_nhwc_matches_reference_and_nchw(geom, dtype):
    _check_functional(geom, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", RANDOM_PARAMS)
def test_random_geometries_nhwc(geom, dtype):
    _check_functional(geom, dtype)


# Every path of every op that serves NHWC, forced, on every kernel row this CPU has.
PATH_GEOMETRIES = GEOMETRIES[:3] + [
    G(2, 4, 5, 5, 3, 1, 1),  # 1x1: nhwc_1x1
    G(2, 2, 9, 7, 3, 3, 3, padding=((3, 2), (4, 3))),  # crop in the flipped pass
    G(1, 17, 5, 6, 32, 3, 3, 2, 2, padding=1),
    G(2, 4, 6, 6, 8, 3, 3, padding=1, g=4),  # depthwise, multiplier 2
    G(2, 12, 7, 6, 12, 3, 3, 2, 1, padding=((1, 0), (2, 1)), dh=1, dw=2, g=12),  # depthwise, multiplier 1
    # nhwc_via_nchw: one input channel (x is its own NCHW array), one output channel, and 4-value
    # transpose blocks with edges on both sides (9 channels, 5 x 7 pixels).
    G(2, 1, 7, 6, 5, 3, 3, padding=1),
    G(2, 3, 6, 5, 1, 3, 3, 2, 1),
    G(1, 9, 5, 7, 6, 3, 3, padding=1),
    # 2 x 4 blocks: six input channels (two left over), ten output channels, 35 pixels (two rows
    # left over, then one).
    G(2, 6, 5, 7, 10, 3, 3, padding=1),
    # depthwise, multiplier 1, 43 channels: whole register blocks, single vectors and a scalar tail
    # on every row; padding 3 > k - 1 leaves border pixels with no tap (the bias alone).
    G(2, 43, 5, 6, 43, 3, 3, padding=3, g=43),
    # depthwise, multiplier 1: runs of interior pixels in groups of 4 and a remainder, stride 2
    # across; and a 5x5 filter (25 taps: the weight gradient's tap sums in several passes).
    G(2, 20, 5, 15, 20, 3, 3, 1, 2, padding=1, g=20),
    G(1, 9, 7, 12, 9, 5, 5, padding=2, g=9),
    # nhwc_spread (one input channel per group, stride 1): one input channel and six outputs (the
    # weights repeat every few vectors; rows end inside a vector), dilated across, uneven padding;
    # eleven outputs per input channel (each pixel spread eleven times, rows in two runs, the
    # input gradient adding eleven values per pixel); three groups of three.
    G(2, 1, 9, 23, 6, 3, 5, padding=((1, 0), (2, 3)), dw=2),
    G(1, 1, 6, 40, 11, 3, 3, padding=1),
    G(2, 3, 5, 7, 9, 3, 3, padding=1, g=3),
    # 32 channels, multiplier 2: weight periods of one to sixteen vectors across the rows and
    # dtypes (the blocks sharing weight vectors, and the general ones).
    G(2, 16, 5, 9, 32, 3, 3, padding=1, g=16),
    # phases: groups reading one copy of every channel from their own offsets, three images
    # stacked per product; strides 3 and 2 with phases that get no tap (dilation 2 across).
    G(3, 6, 9, 10, 4, 3, 3, 2, 2, padding=1, g=2),
    G(2, 5, 10, 9, 3, 3, 3, 3, 2, padding=((1, 2), (2, 1)), dh=1, dw=2),
]


def _tiles(isa, dtype):
    """The micro-tiles of isa's kernel rows for dtype, as the plan lists its candidates."""
    d = cc.Conv2dPlan((1, 4, 4, 1), (1, 1, 3, 3), dtype=dtype, isa=isa, layout="NHWC").describe()["forward"]
    return sorted({c["tile"] for c in d["candidates"]})


def _path_rows():
    for geom in PATH_GEOMETRIES:
        for op in ("forward", "backward_input", "backward_weight"):
            for isa in _core.supported_isas():
                for t in range(len(_tiles(isa, np.float32))):
                    for path in cc.Conv2dPlan.path_names()[op]:
                        yield pytest.param(geom, op, isa, t, path, id=f"{geom}-{op}-{path}-{isa}-tile{t}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("geom", "op", "isa", "tile", "path"), list(_path_rows()))
def test_every_nhwc_path_and_kernel_row(geom, op, isa, tile, path, dtype):
    tile = _tiles(isa, dtype)[tile]
    xh_shape = nhwc(np.empty(geom.input_shape, np.int8)).shape
    make = lambda: cc.Conv2dPlan(xh_shape, geom.weight_shape, dtype=dtype, paths={op: path}, isa=isa,  # noqa: E731
                                 tile=tile, layout="NHWC", **geom.kwargs)
    described = cc.Conv2dPlan(xh_shape, geom.weight_shape, dtype=dtype, isa=isa, tile=tile, layout="NHWC",
                              **geom.kwargs).describe()[op]
    supported = [c["path"] for c in described["candidates"] if c["supported"]]
    nchw_only = not path.startswith("nhwc_") and path not in ("flip", "col2im", "phases")
    if path not in supported:
        sh, sw = geom.stride
        assert nchw_only or (path == "nhwc_1x1" and (geom.kh, geom.kw) != (1, 1)) or (
            path == "phases" and ((sh, sw) == (1, 1) or sh * sw > geom.kh * geom.kw)) or (
            path == "nhwc_depthwise" and not (geom.g > 1 and geom.ic == geom.g)) or (
            path == "nhwc_spread" and not (geom.ic == geom.g and geom.stride == (1, 1))), path
        with pytest.raises(ValueError, match=f"{op}: path '{path}' does not support"):
            make()
        return
    assert not nchw_only
    x, w, b, dy = make_problem(geom, dtype, seed=3)
    y_ref, dx_ref, dw_ref, _ = _reference(geom, x, w, b, dy)
    plan = make()
    assert (plan.describe()[op]["path"], plan.describe()[op]["tile"]) == (path, tile)
    if op == "forward":
        assert_close(nchw(plan.forward(nhwc(x), w, b)), y_ref, dtype)
    elif op == "backward_input":
        assert_close(nchw(plan.backward_input(w, nhwc(dy))), dx_ref, dtype)
    else:
        assert_close(plan.backward_weight(nhwc(x), nhwc(dy)), dw_ref, dtype)


def test_nchw_plans_never_take_an_nhwc_path():
    for geom in PATH_GEOMETRIES:
        d = cc.Conv2dPlan(geom.input_shape, geom.weight_shape, **geom.kwargs).describe()
        for op in ("forward", "backward_weight"):
            assert not any(c["supported"] for c in d[op]["candidates"] if c["path"].startswith("nhwc_"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [G(1, 1, 5, 5, 1, 3, 3), G(3, 1, 9, 8, 1, 3, 2, 2, 1, padding=1, dh=2),
                                  G(2, 1, 7, 7, 1, 1, 1)], ids=str)
def test_one_channel_nhwc_is_planned_as_nchw(geom, dtype):
    """With one channel in and one out, NHWC arrays are the NCHW arrays: the unforced ops take the
    NCHW twin's paths and give its bits (against the reference, and NCHW's results exactly); a
    forced NHWC path is still run as asked."""
    x, w, b, dy = make_problem(geom, dtype, seed=5)
    nhwc_shape = (x.shape[0], *x.shape[2:], 1)
    plan = cc.Conv2dPlan(nhwc_shape, w.shape, dtype=dtype, layout="NHWC", **geom.kwargs)
    twin = cc.Conv2dPlan(x.shape, w.shape, dtype=dtype, **geom.kwargs)
    d, t = plan.describe(), twin.describe()
    for op in ("forward", "backward_input", "backward_weight"):
        assert (d[op]["path"], d[op]["tile"]) == (t[op]["path"], t[op]["tile"]), op
        assert "planned as NCHW" in d[op]["detail"], d[op]
    y_ref, dx_ref, dw_ref, _ = _reference(geom, x, w, b, dy)
    y = plan.forward(nhwc(x), w, b)
    dx = plan.backward_input(w, nhwc(dy))
    dw = plan.backward_weight(nhwc(x), nhwc(dy))
    assert_close(nchw(y), y_ref, dtype)
    assert_close(nchw(dx), dx_ref, dtype)
    assert_close(dw, dw_ref, dtype)
    assert np.array_equal(nchw(y), twin.forward(x, w, b))
    assert np.array_equal(nchw(dx), twin.backward_input(w, dy))
    assert np.array_equal(dw, twin.backward_weight(x, dy))
    forced = cc.Conv2dPlan(nhwc_shape, w.shape, dtype=dtype, layout="NHWC", paths={"forward": "nhwc_in_place"},
                           **geom.kwargs)
    assert forced.describe()["forward"]["path"] == "nhwc_in_place"
    assert_close(nchw(forced.forward(nhwc(x), w, b)), y_ref, dtype)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("geom", [G(2, 5, 7, 6, 9, 3, 3, 2, 1, padding=1),
                                  G(2, 43, 5, 6, 43, 3, 3, padding=3, g=43)], ids=str)
def test_plan_activation_nhwc(activation, bias, geom):
    x, w, b, _ = make_problem(geom, np.float64, seed=5)
    b = b if bias else None
    want = cc.conv2d(x, w, b, activation=activation, **geom.kwargs)
    got = cc.conv2d(nhwc(x), w, b, activation=activation, layout="nhwc", **geom.kwargs)
    assert_close(nchw(got), want)
    ref = reference.activation_forward(reference.conv2d_forward(x, w, b, **geom.ref_kwargs), activation)
    assert_close(nchw(got), ref)


@pytest.mark.parametrize(("paths", "geom"), [
    (None, G(5, 16, 12, 11, 24, 3, 3, 2, 1, padding=1)),
    ("nhwc_via_nchw", G(5, 16, 12, 11, 24, 3, 3, 2, 1, padding=1)),
    # Eleven images over the weight gradient's chunks; rows of 40 pixels in two runs.
    ("nhwc_spread", G(11, 2, 9, 40, 12, 3, 3, padding=1, g=2)),
], ids=str)
def test_bits_do_not_depend_on_threads_nhwc(paths, geom):
    x, w, b, dy = make_problem(geom, np.float32, seed=9)
    x, dy = nhwc(x), nhwc(dy)
    forced = paths and {op: paths for op in ("forward", "backward_input", "backward_weight")}
    plan = cc.Conv2dPlan(x.shape, geom.weight_shape, dtype=np.float32, layout="NHWC", paths=forced,
                         **geom.kwargs)
    before = cc.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            cc.set_num_threads(threads)
            results.append((plan.forward(x, w, b), *plan.backward(x, w, dy)))
    finally:
        cc.set_num_threads(before)
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom", [
    G(2, 4, 5, 6, 16, 1, 1, g=2),  # 1x1: the product writes dx directly, per group
    G(2, 4, 8, 9, 32, 1, 1, 2, 2, g=2),  # strided 1x1: col2im's scatter
    G(2, 3, 8, 8, 16, 3, 3, padding=1),
], ids=str)
def test_via_nchw_col2im_packs_nhwc_dy(geom, dtype):
    # Where the NCHW twin's input gradient is col2im, its product packs dy from NHWC order
    # itself (dy is not transposed): every row, groups, images.
    x, w, b, dy = make_problem(geom, dtype, seed=4)
    _, dx_ref, _, _ = _reference(geom, x, w, b, dy)
    for isa in _core.supported_isas():
        plan = cc.Conv2dPlan(nhwc(x).shape, w.shape, dtype=dtype, layout="NHWC", isa=isa,
                             paths={"backward_input": "nhwc_via_nchw"}, **geom.kwargs)
        if dtype == np.float32:
            assert plan.describe()["backward_input"]["detail"] == "NCHW path: col2im"
        assert_close(nchw(plan.backward_input(w, nhwc(dy))), dx_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pixels", [(1, 1), (1, 3), (2, 2), (1, 5), (2, 4), (3, 3), (4, 7), (8, 8)], ids=str)
def test_via_nchw_three_channel_input_gradient(pixels, dtype):
    """dx of a three-channel layer goes back to NHWC in 4 x 4 blocks stored overlapping, the last
    four pixels of each image one by one: every image's pixels in the right place, nothing written
    past dx (its guard values intact), images of 1 to 64 pixels."""
    ih, iw = pixels
    geom = G(3, 3, ih, iw, 5, 1, 1)
    x, w, b, dy = make_problem(geom, dtype, seed=6)
    _, dx_ref, _, _ = _reference(geom, x, w, b, dy)
    plan = cc.Conv2dPlan(nhwc(x).shape, w.shape, dtype=dtype, layout="NHWC",
                         paths={"backward_input": "nhwc_via_nchw"}, **geom.kwargs)
    guarded = np.full(x.size + 8, 7.0, dtype=dtype)
    dx = guarded[:x.size].reshape(nhwc(x).shape)
    plan.backward_input(w, nhwc(dy), out=dx)
    assert_close(nchw(dx), dx_ref, dtype)
    assert np.all(guarded[x.size:] == 7.0)
    twin = cc.Conv2dPlan(x.shape, w.shape, dtype=dtype, paths={"backward_input": plan.describe()[
        "backward_input"]["detail"].split(": ")[1]}, **geom.kwargs)
    assert np.array_equal(nchw(dx), twin.backward_input(w, dy))


def test_via_nchw_names_its_nchw_path():
    # The NCHW twin runs on the path an NCHW plan of the same geometry and row would take.
    geom = G(2, 1, 12, 12, 6, 5, 5)
    ops = ("forward", "backward_input", "backward_weight")
    xh_shape = nhwc(np.empty(geom.input_shape, np.int8)).shape
    via = cc.Conv2dPlan(xh_shape, geom.weight_shape, layout="NHWC", paths={op: "nhwc_via_nchw" for op in ops},
                        **geom.kwargs).describe()
    for op in ops:
        twin = cc.Conv2dPlan(geom.input_shape, geom.weight_shape, isa=via[op]["isa"], tile=via[op]["tile"],
                             **geom.kwargs).describe()[op]
        assert via[op]["detail"] == f"NCHW path: {twin['path']}", op


def test_one_sample_is_hwc():
    geom = G(1, 3, 6, 7, 4, 3, 3, padding=1)
    x, w, b, dy = make_problem(geom, np.float64)
    y = cc.conv2d(nhwc(x)[0], w, b, padding=1, layout="NHWC")
    assert y.shape == (6, 7, 4)
    assert_close(y, nhwc(cc.conv2d(x, w, b, padding=1))[0])
    dx = cc.conv2d_input((6, 7, 3), w, nhwc(dy)[0], padding=1, layout="NHWC")
    assert dx.shape == (6, 7, 3)
    assert_close(dx, nhwc(cc.conv2d_input(x.shape, w, dy, padding=1))[0])
    assert_close(cc.conv2d_bias(nhwc(dy)[0], layout="NHWC"), dy.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 8, 9, 2047, 2048, 2049, 4105])
@pytest.mark.parametrize("oc", [1, 3, 255, 256, 257, 600])
def test_nhwc_bias_gradient_rows_and_channels(rows, oc, dtype):
    # The NHWC bias gradient sums rows in groups of eight within chunks of 2048 rows, over blocks
    # of 256 channels: row counts and channel counts on either side of each boundary.
    rng = np.random.default_rng(rows * 1000 + oc)
    dy = rng.standard_normal((1, rows, 1, oc)).astype(dtype)
    want = f64(dy).sum(axis=(0, 1, 2))
    assert_close(cc.conv2d_bias(dy, layout="NHWC"), want, dtype, scale=float(np.sqrt(rows)))
    if oc == 1:  # one channel: the same memory as NCHW, and the same sums
        nchw = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(cc.conv2d_bias(dy, layout="NHWC"), cc.conv2d_bias(nchw))
    db = rng.standard_normal(oc).astype(dtype)
    start = f64(db)
    cc.conv2d_bias(dy, out=db, accumulate=True, layout="NHWC")
    assert_close(db, start + want, dtype, scale=float(np.sqrt(rows)))
    before = cc.get_num_threads()
    try:
        sums = []
        for threads in (1, 3):
            cc.set_num_threads(threads)
            sums.append(cc.conv2d_bias(dy, layout="NHWC"))
    finally:
        cc.set_num_threads(before)
    np.testing.assert_array_equal(sums[0], sums[1])


def test_errors_name_the_nhwc_shape():
    w = np.zeros((4, 3, 3, 3), np.float32)
    plan = cc.Conv2dPlan((2, 7, 7, 3), w.shape, padding=1, layout="NHWC")
    assert plan.input_shape == (2, 7, 7, 3) and plan.output_shape == (2, 7, 7, 4)
    with pytest.raises(ValueError, match=r"input: expected shape \(2, 7, 7, 3\)"):
        plan.forward(np.zeros((2, 3, 7, 7), np.float32), w)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 7, 7, 4\)"):
        plan.backward_input(w, np.zeros((2, 4, 7, 7), np.float32))
    with pytest.raises(ValueError, match=r"expected a 4-D \(N, H, W, C\) or 3-D \(H, W, C\)"):
        cc.conv2d(np.zeros((7, 7), np.float32), w, layout="NHWC")
    with pytest.raises(ValueError, match="layout: expected 'NCHW' or 'NHWC', got 'CHWN'"):
        cc.conv2d(np.zeros((1, 7, 7, 3), np.float32), w, layout="CHWN")
    with pytest.raises(ValueError, match=r"weight: expected shape \(out_channels, 5, kh, kw\)"):
        cc.conv2d(np.zeros((1, 7, 7, 5), np.float32), w, layout="NHWC")
    layer = cc.Conv2D(3, 4, 3, layout="NHWC")
    with pytest.raises(ValueError, match=r"expected 3 channels on axis 3 .* got 7 \(an NCHW array\?"):
        layer(np.zeros((2, 3, 7, 7), np.float32))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_nhwc(mode):
    geom = G(2, 3, 6, 7, 4, 3, 3, 2, 1)
    pads = ((1, 2), (2, 1))
    x, w, b, dy = make_problem(G(2, 3, 6, 7, 4, 3, 3, 2, 1, padding=pads), np.float64, seed=4)
    kw = dict(stride=geom.stride, padding=pads, padding_mode=mode)
    y = cc.conv2d(nhwc(x), w, b, layout="NHWC", **kw)
    xp = reference.pad_mode(x, (1, 2, 2, 1), mode)
    assert_close(nchw(y), reference.conv2d_forward(xp, w, b, stride=geom.stride))
    dx, dw, db = cc.conv2d_backward(nhwc(x), w, nhwc(dy), layout="NHWC", **kw)
    dxp = reference.conv2d_backward_input(dy, w, xp.shape, stride=geom.stride)
    assert_close(nchw(dx), reference.pad_mode_backward(dxp, x.shape, (1, 2, 2, 1), mode))
    assert_close(dw, reference.conv2d_backward_weight(xp, dy, w.shape, stride=geom.stride))
    assert_close(nchw(cc.conv2d_input(nhwc(x).shape, w, nhwc(dy), layout="NHWC", **kw)), nchw(dx))
    assert_close(cc.conv2d_weight(nhwc(x), w.shape, nhwc(dy), layout="NHWC", **kw), dw)
    layer = cc.Conv2D(3, 4, 3, stride=geom.stride, padding=pads, padding_mode=mode, dtype=np.float64,
                      layout="NHWC", seed=1)
    ref_layer = cc.Conv2D(3, 4, 3, stride=geom.stride, padding=pads, padding_mode=mode, dtype=np.float64, seed=1)
    assert_close(nchw(layer(nhwc(x))), ref_layer(x))
    assert_close(nchw(layer.backward(nhwc(dy))), ref_layer.backward(dy))
    assert_close(layer.grad_weight, ref_layer.grad_weight)


TRANSPOSED = [
    # (N, ic, H, W), oc, kernel, stride, padding, output_padding, dilation, groups
    ((2, 3, 5, 4), 4, (3, 3), (2, 2), (1, 1), (1, 0), (1, 1), 1),
    ((1, 4, 4, 5), 6, (3, 2), (1, 2), (0, 1), (0, 1), (2, 1), 2),
    ((2, 2, 3, 3), 3, (2, 2), (3, 3), (0, 0), (2, 2), (1, 1), 1),
    ((1, 3, 4, 4), 3, (3, 3), (2, 2), (0, 0), (2, 0), (3, 1), 3),  # output_padding - padding >= stride
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSED, ids=str)
def test_conv_transpose2d_nhwc(case, dtype):
    (mb, ic, ih, iw), oc, k, s, p, op, d, g = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((mb, ic, ih, iw)).astype(dtype)
    w = rng.standard_normal((ic, oc // g, *k)).astype(dtype)
    b = rng.standard_normal(oc).astype(dtype)
    kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    y_ref = reference.conv_transpose2d_forward(*f64(x, w, b), **kw)
    y = cc.conv_transpose2d(nhwc(x), w, b, layout="NHWC", **kw)
    assert_close(nchw(y), y_ref, dtype)
    for method in ("flip", "col2im"):
        assert_close(nchw(cc.conv_transpose2d(nhwc(x), w, b, method=method, layout="NHWC", **kw)), y_ref, dtype)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = reference.conv_transpose2d_backward_input(*f64(dy, w), x.shape, **kw)
    dw_ref = reference.conv_transpose2d_backward_weight(*f64(x, dy), w.shape, **kw)
    dx = cc.conv_transpose2d_input(nhwc(x).shape, w, nhwc(dy), layout="NHWC", **kw)
    assert_close(nchw(dx), dx_ref, dtype)
    assert_close(cc.conv_transpose2d_weight(nhwc(x), w.shape, nhwc(dy), layout="NHWC", **kw), dw_ref, dtype)
    assert_close(cc.conv_transpose2d_bias(nhwc(dy), layout="NHWC"), f64(dy).sum(axis=(0, 2, 3)), dtype)
    dx2, dw2, db2 = cc.conv_transpose2d_backward(nhwc(x), w, nhwc(dy), layout="NHWC", **kw)
    assert_close(nchw(dx2), dx_ref, dtype)
    assert_close(dw2, dw_ref, dtype)
    assert_close(db2, f64(dy).sum(axis=(0, 2, 3)), dtype)

    layer = cc.ConvTranspose2D(ic, oc, k, s, p, op, g, dilation=d, dtype=dtype, seed=3, layout="NHWC")
    twin = cc.ConvTranspose2D(ic, oc, k, s, p, op, g, dilation=d, dtype=dtype, seed=3)
    assert_close(nchw(layer(nhwc(x))), twin(x), dtype)
    assert_close(nchw(layer.backward(nhwc(dy))), twin.backward(dy), dtype)
    assert_close(layer.grad_weight, twin.grad_weight, dtype)
    assert_close(layer.grad_bias, twin.grad_bias, dtype)
    layer.backward(nhwc(dy), input_grad=False)
    twin.backward(dy, input_grad=False)
    assert_close(layer.grad_weight, twin.grad_weight, dtype)
    assert_close(layer.grad_bias, twin.grad_bias, dtype)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_conv2d_layer_nhwc_matches_nchw_layer(activation):
    x = np.random.default_rng(0).standard_normal((3, 5, 9, 8))
    dy = np.random.default_rng(1).standard_normal((3, 6, 5, 8))
    args = dict(kernel_size=(3, 2), stride=(2, 1), padding=((1, 1), (0, 1)), activation=activation,
                dtype=np.float64, seed=5)
    layer, twin = cc.Conv2D(5, 6, layout="NHWC", **args), cc.Conv2D(5, 6, **args)
    assert "layout='NHWC'" in repr(layer)
    for _ in range(2):  # gradients add up over steps
        assert_close(nchw(layer(nhwc(x))), twin(x))
        assert_close(nchw(layer.backward(nhwc(dy))), twin.backward(dy))
    assert_close(layer.grad_weight, twin.grad_weight)
    assert_close(layer.grad_bias, twin.grad_bias)
    assert layer.plan(nhwc(x).shape).describe()["forward"]["path"].startswith("nhwc_")


def test_pytorch_channels_last():
    torch = pytest.importorskip("torch")
    geom = G(2, 6, 9, 8, 8, 3, 3, 2, 1, padding=1, g=2)
    x, w, b, dy = make_problem(geom, np.float64, seed=2)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt.to(memory_format=torch.channels_last), wt, torch.tensor(b),
                                    stride=geom.stride, padding=1, groups=2)
    yt.backward(torch.tensor(dy))
    y = cc.conv2d(nhwc(x), w, b, layout="NHWC", **geom.kwargs)
    dx, dw, _ = cc.conv2d_backward(nhwc(x), w, nhwc(dy), layout="NHWC", **geom.kwargs)
    assert_close(nchw(y), yt.detach().numpy())
    assert_close(nchw(dx), xt.grad.numpy())
    assert_close(dw, wt.grad.numpy())


def test_channels_last_network_matches_nchw():
    """Convolutions, batch norm, pooling and ReLU on NHWC: the NCHW network's results, transposed."""
    from convcore import nn

    def net(layout):
        return nn.Sequential(cc.Conv2D(3, 8, 3, padding=1, dtype=np.float64, seed=1, layout=layout),
                             nn.BatchNorm2D(8, dtype=np.float64, layout=layout), nn.ReLU(),
                             nn.MaxPool2D(2, layout=layout),
                             cc.ConvTranspose2D(8, 4, 2, stride=2, dtype=np.float64, seed=2, layout=layout))
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8))
    a, b = net("NHWC"), net("NCHW")
    ya, yb = a.forward(nhwc(x)), b.forward(x)
    assert_close(nchw(ya), yb)
    g = np.random.default_rng(4).standard_normal(yb.shape)
    assert_close(nchw(a.backward(nhwc(g), input_grad=True)), b.backward(g, input_grad=True))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert_close(pa.grad, pb.grad), name
