"""Determinism and concurrency: the same bits for any thread count, and from many Python threads."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import convcore as cc

GEOMS = [
    # (x shape, w shape, stride, padding, dilation, groups)
    pytest.param((5, 6, 13, 11), (8, 6, 3, 3), 2, 1, 1, 1, id="mb5ic6ih13iw11oc8kh3sh2ph1"),
    pytest.param((1, 16, 20, 20), (32, 16, 3, 3), 1, 1, 1, 1, id="mb1ic16ih20oc32kh3ph1"),
    pytest.param((9, 4, 10, 10), (4, 1, 3, 3), 1, 1, 2, 4, id="mb9ic4ih10oc4kh3dh2g4"),
    pytest.param((3, 8, 9, 9), (16, 8, 1, 1), 1, 0, 1, 1, id="mb3ic8ih9oc16kh1"),
]


def _all_ops(x, w, dy, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return {
        "forward": cc.conv2d(x, w, np.arange(w.shape[0], dtype=x.dtype), activation="tanh", **kw),
        "input_flip": cc.conv2d_input(x.shape, w, dy, method="flip", **kw),
        "input_col2im": cc.conv2d_input(x.shape, w, dy, method="col2im", **kw),
        "weight": cc.conv2d_weight(x, w.shape, dy, **kw),
        "bias": cc.conv2d_bias(dy),
    }


@pytest.fixture
def restore_threads():
    yield
    cc.set_num_threads(None)  # OpenMP's setting applies again


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "dilation", "groups"), GEOMS)
def test_bitwise_identical_for_any_thread_count(restore_threads, dtype, xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    oh, ow = cc.output_size(xs, ws[2:], stride, padding, dilation)
    dy = rng.standard_normal((xs[0], ws[0], oh, ow)).astype(dtype)
    results = {}
    for threads in (1, 2, 3):
        cc.set_num_threads(threads)
        for run in range(2):  # and from run to run
            results[threads, run] = _all_ops(x, w, dy, stride, padding, dilation, groups)
    base = results[1, 0]
    for key, res in results.items():
        for op, value in res.items():
            assert value.tobytes() == base[op].tobytes(), (key, op)


def test_many_python_threads_match_serial_calls():
    rng = np.random.default_rng(2)
    jobs = []
    for i in range(12):
        dtype = np.float32 if i % 2 else np.float64
        x = rng.standard_normal((2 + i % 3, 4, 12, 12)).astype(dtype)
        w = rng.standard_normal((6, 4, 3, 3)).astype(dtype)
        stride = 1 + i % 2
        oh, ow = cc.output_size(x.shape, (3, 3), stride, 1)
        dy = rng.standard_normal((x.shape[0], 6, oh, ow)).astype(dtype)
        jobs.append((x, w, dy, stride, 1, 1, 1))
    serial = [_all_ops(*job) for job in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=6) as pool:
            parallel = list(pool.map(lambda job: _all_ops(*job), jobs * 2))
        for got, want in zip(parallel, serial * 2):
            for op in want:
                assert got[op].tobytes() == want[op].tobytes(), op


def test_concurrent_accumulation_into_separate_buffers():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 9, 9))
    dy = rng.standard_normal((4, 5, 7, 7))
    want = cc.conv2d_weight(x, (5, 3, 3, 3), dy)
    outs = [np.zeros((5, 3, 3, 3)) for _ in range(8)]

    def work(out):
        for _ in range(4):
            cc.conv2d_weight(x, (5, 3, 3, 3), dy, out=out, accumulate=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, outs))
    for out in outs:
        np.testing.assert_allclose(out, 4 * want, rtol=1e-12)
