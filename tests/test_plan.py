"""Conv2dPlan: every path of the path table, on every geometry it supports (its boundaries
included) and every kernel row this CPU has, against the NumPy reference; forced paths agree with
each other, plans give the functional API's bits, and the bits do not depend on threads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import G, GEOMETRIES, assert_close, make_problem, reference

import convcore as cc
from convcore import _core

ISAS = [isa for isa in _core.supported_isas()]
OPS = ("forward", "backward_input", "backward_weight")

# Each path's boundaries: 1x1 (gemm_1x1 only there), stride 1 with wide padded rows
# (b_in_place), strided (no b_in_place), one input channel per group (depthwise), crops in the
# flipped pass (padding > k-1), channel counts around the tiles (1, 6, 8, 12, 16, 17, 32).
PLAN_GEOMETRIES = GEOMETRIES + [
    G(2, 4, 6, 6, 8, 3, 3, padding=1, g=4),  # depthwise, multiplier 2
    G(2, 3, 7, 7, 3, 3, 3, 2, 2, padding=1, g=3),  # depthwise, strided
    G(1, 16, 6, 5, 17, 3, 3, padding=1),
    G(2, 6, 8, 8, 12, 5, 5, padding=2),
    G(1, 17, 5, 6, 32, 3, 3, 2, 2, padding=1),
    G(2, 1, 9, 9, 6, 5, 5),  # LeNet's first layer, small
    G(1, 3, 5, 9, 4, 3, 3, padding=1, dh=1, dw=3),  # wide dilated rows
    G(2, 2, 9, 7, 3, 3, 3, padding=((3, 2), (4, 3))),  # crop in the flipped pass
    G(1, 30, 7, 6, 6, 3, 3, 2, 2, padding=1, g=3),  # phases: 16 channels of dx a pass, across groups
    G(2, 3, 4, 30, 5, 3, 3, padding=1),  # rows of 30 pixels: whole tiles of a row, even 24 tall, read as rows-A
    # phases: three images stacked per product (fewer left to a thread at 2 or 3 threads), nine
    # channels of dx (two SSE blocks and one more), dx rows of 13 (six pairs and one more column)
    G(3, 6, 13, 13, 9, 3, 3, 2, 2, padding=1),
    G(2, 4, 9, 9, 5, 3, 3, 2, 2, padding=2, dh=2, dw=2),  # phases: odd rows and columns get no tap
]
# The weight gradient's splits: dw's columns shared among the threads (the packed path, with at
# least 16 column panels on every kernel row: 576 columns per group), and fewer image chunks
# where their partial sums would not fit L2 (64 x 64 x 3 x 3).
WEIGHT_SPLIT_GEOMETRIES = [
    G(3, 128, 5, 5, 8, 3, 3, padding=1, g=2),
    G(5, 64, 6, 6, 64, 3, 3, padding=1),
]
PLAN_GEOMETRIES += WEIGHT_SPLIT_GEOMETRIES


def _plan(geom, dtype, op=None, path=None, isa=None, activation=None, bias=True, tile=None):
    paths = {op: path} if op else None
    return cc.Conv2dPlan(geom.input_shape, geom.weight_shape, dtype=dtype, activation=activation, bias=bias,
                         paths=paths, isa=isa, tile=tile, **geom.kwargs)


def _supported(geom, op, isa):
    """The paths of op that support geom on the kernel row isa (from the plan's own table)."""
    d = _plan(geom, np.float64, isa=isa).describe()[op]
    return [c["path"] for c in d["candidates"] if c["supported"]]


def _tiles(isa, dtype):
    """The micro-tiles of isa's kernel rows for dtype, as the plan lists its candidates."""
    d = cc.Conv2dPlan((1, 1, 4, 4), (1, 1, 3, 3), dtype=dtype, isa=isa).describe()["forward"]
    return sorted({c["tile"] for c in d["candidates"]})


def _rows():
    for geom in PLAN_GEOMETRIES:
        for op in OPS:
            for isa in ISAS:
                for t in range(len(_tiles(isa, np.float32))):
                    for path in cc.Conv2dPlan.path_names()[op]:
                        yield pytest.param(geom, op, isa, t, path, id=f"{geom}-{op}-{path}-{isa}-tile{t}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("geom", "op", "isa", "tile", "path"), list(_rows()))
def test_every_path_matches_reference(geom, op, isa, tile, path, dtype):
    """Every path on every kernel row (instruction set and micro-tile) against the reference."""
    tiles = _tiles(isa, dtype)
    assert len(tiles) == len(_tiles(isa, np.float32))
    tile = tiles[tile]
    if path not in _supported(geom, op, isa):
        with pytest.raises(ValueError, match=f"{op}: path '{path}' does not support"):
            _plan(geom, dtype, op, path, isa, tile=tile)
        return
    x, w, b, dy = make_problem(geom, dtype, seed=3)
    plan = _plan(geom, dtype, op, path, isa, tile=tile)
    d = plan.describe()[op]
    assert (d["path"], d["isa"], d["tile"], d["forced"]) == (path, isa, tile, True)
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
    if op == "forward":
        got = plan.forward(x, w, b)
        want = reference.conv2d_forward(x64, w64, b64, **geom.ref_kwargs)
    elif op == "backward_input":
        got = plan.backward_input(w, dy)
        want = reference.conv2d_backward_input(dy64, w64, geom.input_shape, **geom.ref_kwargs)
    else:
        got = plan.backward_weight(x, dy)
        want = reference.conv2d_backward_weight(x64, dy64, geom.weight_shape, **geom.ref_kwargs)
    assert got.dtype == dtype
    assert_close(got, want, dtype)


@pytest.mark.parametrize("geom", PLAN_GEOMETRIES, ids=str)
def test_plan_bits_equal_functional_and_any_thread_count(geom):
    x, w, b, dy = make_problem(geom, np.float32, seed=5)
    plan = _plan(geom, np.float32, activation="relu")
    before = cc.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            cc.set_num_threads(threads)
            y = plan.forward(x, w, b)
            dx, dw, db = plan.backward(x, w, dy)
            results.append((y, dx, dw, db))
        cc.set_num_threads(before)
        fy = cc.conv2d(x, w, b, activation="relu", **geom.kwargs)
        fdx, fdw, fdb = cc.conv2d_backward(x, w, dy, **geom.kwargs)
    finally:
        cc.set_num_threads(before)
    for got in results[1:] + [(fy, fdx, fdw, fdb)]:
        for a, e in zip(got, results[0]):
            np.testing.assert_array_equal(a, e)


# The forward's epilogues (bias, then the activation) on every forward path: channel and pixel
# counts that are not multiples of the 4 x 4 / 2 x 2 register blocks of the transposed write-back,
# plus a NaN, which relu turns into 0 (where NumPy's maximum, the reference's, keeps it).
EPILOGUE_GEOMETRIES = [G(2, 3, 7, 9, 6, 3, 3, padding=1), G(3, 5, 6, 5, 7, 3, 3, 2, 2, padding=1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("geom", EPILOGUE_GEOMETRIES, ids=str)
def test_forward_epilogue_on_every_path(geom, activation, bias, dtype):
    x, w, b, _ = make_problem(geom, dtype, seed=11)
    x[0, 0, 2, 3] = np.nan
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b_arg = b if bias else None
    want = reference.conv2d_forward(x64, w64, b.astype(np.float64) if bias else None, **geom.ref_kwargs)
    want = reference.activation_forward(want, activation)
    for isa in ISAS:
        for path in _supported(geom, "forward", isa):
            got = _plan(geom, dtype, "forward", path, isa, activation, bias).forward(x, w, b_arg)
            nan = np.isnan(want)
            if activation == "relu":  # convcore's relu maps NaN to 0 (activation.hpp)
                np.testing.assert_array_equal(got[nan], 0, err_msg=f"{path} {isa}")
            else:
                np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{path} {isa}")
            assert_close(got[~nan], want[~nan], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_in_place_stacks_images_for_large_weights(dtype):
    # 256 x 256 x 3 x 3 weights (2.4 MB in float32) exceed half of any L2 this runs on, so the
    # a_in_place forward (and the flipped input gradient on it) stacks several images per product
    # although one image fills an A block (144 pixels); five images leave a remainder whatever the
    # stack and the thread split.
    geom = G(5, 256, 12, 12, 256, 3, 3, padding=1)
    x, w, b, dy = make_problem(geom, dtype, seed=5)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    want_y = reference.conv2d_forward(x64, w64, b.astype(np.float64), **geom.ref_kwargs)
    want_dx = reference.conv2d_backward_input(dy64, w64, x.shape, **geom.ref_kwargs)
    for isa in ISAS:
        if "a_in_place" in _supported(geom, "forward", isa):
            assert_close(_plan(geom, dtype, "forward", "a_in_place", isa).forward(x, w, b), want_y, dtype)
        plan = cc.Conv2dPlan(x.shape, w.shape, padding=1, dtype=dtype, isa=isa,
                             paths={"backward_input": "flip"})
        assert_close(plan.backward_input(w, dy), want_dx, dtype)


def test_backward_equals_the_separate_ops_and_accumulates():
    geom = G(2, 3, 7, 7, 4, 3, 3, 2, 2, padding=1)
    x, w, b, dy = make_problem(geom, np.float64, seed=7)
    plan = _plan(geom, np.float64)
    dx, dw, db = plan.backward(x, w, dy)
    np.testing.assert_array_equal(dx, plan.backward_input(w, dy))
    np.testing.assert_array_equal(dw, plan.backward_weight(x, dy))
    assert_close(db, reference.conv2d_backward_bias(dy))
    wo, bo = np.zeros_like(dw), np.zeros_like(db)
    plan.backward(x, w, dy, weight_out=wo, bias_out=bo, accumulate=True)
    plan.backward(x, w, dy, weight_out=wo, bias_out=bo, accumulate=True)
    assert_close(wo, 2 * dw)
    assert_close(bo, 2 * db)
    out = np.full_like(dw, np.nan)
    assert plan.backward_weight(x, dy, out=out) is out
    np.testing.assert_array_equal(out, dw)


def test_single_sample_shapes_and_output_shape():
    plan = cc.Conv2dPlan((3, 8, 8), (4, 3, 3, 3), padding=1, dtype=np.float64)
    assert plan.input_shape == (3, 8, 8)
    assert plan.output_shape == (4, 8, 8)
    x = np.random.default_rng(0).standard_normal((3, 8, 8))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    np.testing.assert_array_equal(plan.forward(x, w), cc.conv2d(x, w, padding=1))


def test_non_contiguous_input_is_copied_not_refused():
    geom = G(2, 3, 6, 6, 4, 3, 3, padding=1)
    x, w, b, _ = make_problem(geom, np.float64)
    plan = _plan(geom, np.float64)
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(plan.forward(xt, w, b), plan.forward(x, w, b))


def test_describe_names_every_op_and_candidate():
    d = _plan(G(2, 3, 7, 7, 4, 3, 3, padding=1), np.float32).describe()
    assert d["dtype"] == "float32" and d["geometry"].startswith("mb2ic3ih7iw7oc4kh3kw3")
    names = cc.Conv2dPlan.path_names()
    for op in OPS:
        assert d[op]["path"] in names[op] and d[op]["isa"] in ISAS and not d[op]["forced"]
        key = ("path", "isa", "tile")
        chosen = [c for c in d[op]["candidates"] if all(c.get(k) == d[op].get(k) for k in key)]
        assert len(chosen) == 1
        cheapest = min(c["cost"] for c in d[op]["candidates"] if c["supported"])
        assert chosen[0]["cost"] == cheapest
    if d["backward_input"]["path"] == "flip":
        assert d["backward_input"]["detail"].startswith("flipped forward: ")


def test_forced_path_errors_list_the_paths():
    geom = G(2, 3, 7, 7, 4, 3, 3, 2, 2, padding=1)
    with pytest.raises(ValueError, match=r"forward: unknown path 'fast'; paths: gemm_1x1, packed"):
        _plan(geom, np.float32, "forward", "fast")
    with pytest.raises(ValueError, match=r"does not support .*supported here: packed, a_in_place"):
        _plan(geom, np.float32, "forward", "b_in_place")
    with pytest.raises(ValueError, match=r"paths: unknown op 'backward'"):
        cc.Conv2dPlan(geom.input_shape, geom.weight_shape, paths={"backward": "flip"})
    with pytest.raises(ValueError, match=r"isa: 'avx1024' is not a kernel path"):
        _plan(geom, np.float32, isa="avx1024")
    with pytest.raises(ValueError, match=r"tile: '5x5' is not the micro-tile of a kernel row enabled here; tiles: "):
        _plan(geom, np.float32, isa=ISAS[-1], tile="5x5")
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64"):
        cc.Conv2dPlan(geom.input_shape, geom.weight_shape, dtype=np.int32)
    with pytest.raises(ValueError, match=r"kernel 3x3 .* exceeds the padded input"):
        cc.Conv2dPlan((1, 1, 2, 2), (1, 1, 3, 3))


def test_buffer_errors_name_the_argument():
    geom = G(2, 3, 6, 6, 4, 3, 3, padding=1)
    x, w, b, dy = make_problem(geom, np.float32)
    plan = _plan(geom, np.float32)
    with pytest.raises(TypeError, match=r"input: dtype must be float32 \(the plan's\), got float64"):
        plan.forward(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4, 3, 3, 3\) for this plan, got \(4, 3, 3\)"):
        plan.forward(x, w[..., 0])
    with pytest.raises(TypeError, match=r"input: expected a numpy.ndarray, got list"):
        plan.forward(x.tolist(), w)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 4, 6, 6\)"):
        plan.backward_input(w, dy[:1])
    out = np.zeros(plan.output_shape, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: must be writeable"):
        plan.forward(x, w, b, out=out)
    with pytest.raises(ValueError, match=r"out: shape must be \(2, 4, 6, 6\)"):
        plan.forward(x, w, b, out=np.zeros((2, 4, 6, 5), np.float32))
    with pytest.raises(ValueError, match=r"out: must be C-contiguous"):
        plan.forward(x, w, b, out=np.zeros((6, 6, 4, 2), np.float32).T)
    with pytest.raises(ValueError, match=r"out: must not share memory with an input"):
        plan.backward_weight(x, dy, out=dy.reshape(-1)[:108].reshape(4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"accumulate=True needs an out buffer"):
        plan.backward_weight(x, dy, accumulate=True)
    nob = _plan(geom, np.float32, bias=False)
    with pytest.raises(ValueError, match=r"bias: given to a plan made with bias=False"):
        nob.forward(x, w, b)
    assert nob.backward(x, w, dy)[2] is None


def test_layer_holds_its_plan_and_names_a_wrong_input():
    layer = cc.Conv2D(3, 4, 3, padding=1, seed=0)
    x = np.zeros((2, 3, 5, 5), np.float32)
    layer.forward(x)
    plan = layer.plan(x.shape)
    layer.forward(x)
    assert layer.plan(x.shape) is plan
    with pytest.raises(ValueError, match=r"input: expected 3 channels on axis 1 .* got 5 \(an NHWC array"):
        layer.forward(np.zeros((2, 5, 5, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", WEIGHT_SPLIT_GEOMETRIES, ids=str)
def test_weight_gradient_paths_same_bits_for_any_thread_count_and_accumulate(geom, dtype):
    """Every weight-gradient path, forced: the same bits on 1, 2 and 3 threads, and accumulate=True
    adds to what the buffer held."""
    x, w, b, dy = make_problem(geom, dtype, seed=11)
    want = reference.conv2d_backward_weight(*(a.astype(np.float64) for a in (x, dy)), geom.weight_shape,
                                            **geom.ref_kwargs)
    before = cc.get_num_threads()
    try:
        for path in _supported(geom, "backward_weight", None):
            plan = _plan(geom, dtype, "backward_weight", path)
            results = []
            for threads in (1, 2, 3):
                cc.set_num_threads(threads)
                results.append(plan.backward_weight(x, dy))
            for got in results[1:]:
                np.testing.assert_array_equal(got, results[0])
            assert_close(results[0], want, dtype)
            held = np.full(geom.weight_shape, 0.5, dtype)
            plan.backward_weight(x, dy, out=held, accumulate=True)
            assert_close(held, want + 0.5, dtype)
    finally:
        cc.set_num_threads(before)


# The in-place weight gradients add their chunks' transposed partial sums into dw in register
# blocks: row counts (ocg) and K that leave rows and values past whole blocks, groups, a stride.
TRANSPOSED_SUM_GEOMETRIES = [
    G(3, 3, 9, 9, 6, 3, 3, padding=1),
    G(4, 6, 7, 8, 10, 3, 3, padding=1, g=2),
    G(2, 5, 6, 6, 17, 3, 3, 2, 2, padding=1),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", TRANSPOSED_SUM_GEOMETRIES, ids=str)
def test_in_place_weight_gradient_sums_and_accumulates(geom, dtype, layout):
    x, w, b, dy = make_problem(geom, dtype, seed=13)
    want = reference.conv2d_backward_weight(*(a.astype(np.float64) for a in (x, dy)), geom.weight_shape,
                                            **geom.ref_kwargs)
    path = "a_in_place" if layout == "NCHW" else "nhwc_in_place"
    if layout == "NHWC":
        x, dy = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, dy))
    held = np.random.default_rng(3).standard_normal(geom.weight_shape).astype(dtype)
    for isa in ISAS:
        plan = cc.Conv2dPlan(x.shape, geom.weight_shape, dtype=dtype, layout=layout, isa=isa,
                             paths={"backward_weight": path}, **geom.kwargs)
        assert_close(plan.backward_weight(x, dy), want, dtype)
        out = held.copy()
        plan.backward_weight(x, dy, out=out, accumulate=True)
        assert_close(out, want + held.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("isa", ISAS)
def test_depthwise_weight_gradient_ignores_values_past_a_row(isa, dtype):
    # The depthwise weight gradient reads whole vectors at the end of each row and clears the
    # lanes past it. An infinity in input column 0 lies in those lanes for the right-hand taps
    # (past the end of one padded row, two columns into the next), which never meet it: their
    # gradient stays finite and exact, and the other taps' are what the reference gives.
    geom = G(2, 3, 7, 11, 3, 3, 3, padding=1, g=3)
    x, _, _, dy = make_problem(geom, dtype, seed=5)
    x[:, :, 3, 0] = np.inf
    plan = _plan(geom, dtype, "backward_weight", "depthwise", isa)
    got = plan.backward_weight(x, dy)
    with np.errstate(invalid="ignore"):
        want = reference.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64),
                                                geom.weight_shape, **geom.ref_kwargs)
    assert np.isfinite(want[..., 2]).all() and not np.isfinite(want[..., 0]).all()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flip_packs_the_rotated_weights_straight_from_w(dtype):
    """Where the flipped forward is a_in_place, a_wide or nhwc_in_place, the input gradient packs
    rot180(w)^T from the layer's w through a table, without a flipped copy: against the reference
    on every kernel row, both layouts, with groups, stride and dilation; each of the three is met."""
    geoms = [G(2, 6, 7, 6, 4, 3, 3, padding=1, g=2), G(1, 5, 9, 8, 7, 3, 2, 2, 2, padding=(1, 0)),
             G(2, 4, 9, 9, 6, 3, 3, padding=2, dh=2, dw=2), G(1, 16, 6, 5, 17, 3, 3, padding=1)]
    seen = set()
    for geom in geoms:
        x, w, b, dy = make_problem(geom, dtype, seed=11)
        want = reference.conv2d_backward_input(dy.astype(np.float64), w.astype(np.float64), x.shape, **geom.ref_kwargs)
        for isa in ISAS:
            for tile in _tiles(isa, dtype):
                for layout in ("NCHW", "NHWC"):
                    nhwc = layout == "NHWC"
                    xs = (x.shape[0], *x.shape[2:], x.shape[1]) if nhwc else x.shape
                    plan = cc.Conv2dPlan(xs, w.shape, dtype=dtype, isa=isa, tile=tile, layout=layout,
                                         paths={"backward_input": "flip"}, **geom.kwargs)
                    seen.add(plan.describe()["backward_input"]["detail"].split(": ")[1])
                    got = plan.backward_input(w, np.ascontiguousarray(dy.transpose(0, 2, 3, 1)) if nhwc else dy)
                    assert_close(got.transpose(0, 3, 1, 2) if nhwc else got, want, dtype)
    assert {"a_in_place", "a_wide", "nhwc_in_place"} <= seen, seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_through_a_table_over_several_kc_blocks(dtype):
    """W^T packed through a table (the NHWC forward's (r, s, c) order; the flipped forward's rot180
    taps) is packed panel by panel across its kc blocks, in w's memory order, in SSE blocks where
    places run on: K of 360 and 315 (two kc blocks), 35 and 40 columns (an edge panel), groups,
    every kernel row; against the reference, forward and input gradient, both layouts."""
    for geom in (G(2, 40, 6, 5, 35, 3, 3, padding=1), G(1, 80, 5, 4, 70, 3, 3, padding=1, g=2),
                 G(1, 41, 5, 6, 37, 3, 3, 2, 2, padding=1)):
        x, w, b, dy = make_problem(geom, dtype, seed=17)
        y_want = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                          **geom.ref_kwargs)
        dx_want = reference.conv2d_backward_input(dy.astype(np.float64), w.astype(np.float64), x.shape,
                                                  **geom.ref_kwargs)
        for isa in ISAS:
            for tile in _tiles(isa, dtype):
                for layout in ("NCHW", "NHWC"):
                    nhwc = layout == "NHWC"
                    t = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if nhwc else (lambda a: a)
                    back = (lambda a: a.transpose(0, 3, 1, 2)) if nhwc else (lambda a: a)
                    plan = cc.Conv2dPlan(t(x).shape, w.shape, dtype=dtype, isa=isa, tile=tile, layout=layout,
                                         paths={"backward_input": "flip"}, **geom.kwargs)
                    assert_close(back(plan.forward(t(x), w, b)), y_want, dtype)
                    assert_close(back(plan.backward_input(w, t(dy))), dx_want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("layout", "path"), [("NCHW", "a_in_place"), ("NHWC", "nhwc_in_place")])
def test_weight_gradient_of_weights_past_l2(dtype, layout, path):
    """256 x 256 x 3 x 3 weights (2.4 MB in float32) exceed a core's L2 on the CPUs this runs on:
    one chunk of images, each image's product and its padded copy split among the threads (the
    last image's product writing dw, or with accumulate adding into it). Against the reference,
    and the same bits on 1, 2 and 3 threads."""
    geom = G(3, 256, 6, 5, 256, 3, 3, padding=1)
    x, w, b, dy = make_problem(geom, dtype, seed=13)
    want = reference.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64), w.shape, **geom.ref_kwargs)
    if layout == "NHWC":
        x, dy = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, dy))
    n = cc.get_num_threads()
    got = []
    try:
        for threads in (1, 2, 3):
            cc.set_num_threads(threads)
            plan = cc.Conv2dPlan(x.shape, w.shape, dtype=dtype, layout=layout,
                                 paths={"backward_weight": path}, **geom.kwargs)
            got.append(plan.backward_weight(x, dy))
    finally:
        cc.set_num_threads(n)
    assert_close(got[0], want, dtype)
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])
    start = np.random.default_rng(5).standard_normal(w.shape).astype(dtype)
    summed = plan.backward_weight(x, dy, out=start.copy(), accumulate=True)
    assert_close(summed, start + want, dtype)
