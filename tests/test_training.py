"""Whole-network training mechanics: the native Linear, buffer reuse inside a Sequential (and its
safety for arrays returned to the caller), the skipped first input gradient, and pooling on
wide rows. References are NumPy float64 formulas and the layers called one by one."""

from __future__ import annotations

import numpy as np
import pytest

import convcore as cc
from convcore import _core, nn

DTYPES = [pytest.param(np.float32, 1e-5, id="f32"), pytest.param(np.float64, 1e-12, id="f64")]


def lenet(dtype=np.float32, seed=0):
    """Conv 3->8 (ReLU) - pool - Conv 8->16 (ReLU) - pool - Linear, for (N, 3, 12, 12) inputs."""
    return nn.Sequential(
        nn.Conv2D(3, 8, 3, padding=1, activation="relu", dtype=dtype, seed=seed), nn.MaxPool2D(2),
        nn.Conv2D(8, 16, 3, padding=1, activation="relu", dtype=dtype, seed=seed + 1), nn.MaxPool2D(2),
        nn.Flatten(), nn.Linear(16 * 3 * 3, 5, dtype=dtype, seed=seed + 2),
    )


def batch(n=6, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 12, 12)).astype(dtype), rng.integers(0, 5, n)


# ------------------------------------------------------------------------------------ Linear


@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
@pytest.mark.parametrize(("n", "fin", "fout"), [(1, 1, 1), (32, 128, 10), (9, 4096, 10), (0, 5, 3)])
def test_native_linear_matches_numpy(n, fin, fout, dtype, tol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    b = rng.standard_normal(fout).astype(dtype)
    dy = rng.standard_normal((n, fout)).astype(dtype)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    scale = max(fin, n, 1)
    y = _core.linear_forward(x, w, b)
    np.testing.assert_allclose(y, x64 @ w64.T + b, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(_core.linear_forward(x, w), x64 @ w64.T, rtol=tol, atol=tol * scale)
    dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
    dx, dw_, db_ = _core.linear_backward(x, w, dy, weight_out=dw, bias_out=db)
    assert dw_ is dw and db_ is db
    np.testing.assert_allclose(dx, dy64 @ w64, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(dw, dy64.T @ x64, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(db, dy64.sum(axis=0), rtol=tol, atol=tol * scale)
    # Accumulating again, without dx: the gradients double and nothing else is computed.
    none, _, _ = _core.linear_backward(x, w, dy, weight_out=dw, bias_out=db, accumulate=True, input_grad=False)
    assert none is None
    np.testing.assert_allclose(dw, 2 * (dy64.T @ x64), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(db, 2 * dy64.sum(axis=0), rtol=tol, atol=tol * scale)


def test_native_linear_errors_name_the_argument():
    x, w = np.zeros((4, 3), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"input: expected shape \(N, 3\), got \(4, 5\)"):
        _core.linear_forward(np.zeros((4, 5), np.float32), w)
    with pytest.raises(ValueError, match=r"bias: expected shape \(2,\)"):
        _core.linear_forward(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"out: shape must be \(4, 2\)"):
        _core.linear_forward(x, w, None, np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="out: dtype must be float32"):
        _core.linear_forward(x, w, None, np.zeros((4, 2), np.float64))
    with pytest.raises(ValueError, match="grad_output: expected shape"):
        _core.linear_backward(x, w, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="accumulate=True needs weight_out"):
        _core.linear_backward(x, w, np.zeros((4, 2), np.float32), accumulate=True)
    with pytest.raises(ValueError, match="must not share memory"):
        big = np.zeros((4, 3), np.float32)
        _core.linear_backward(big, w, np.zeros((4, 2), np.float32), input_out=big)


def test_linear_layer_uses_no_numpy_blas(monkeypatch):
    """The layer's products are convcore's: replacing NumPy's matmul changes nothing."""
    layer = nn.Linear(6, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    expected = x.astype(np.float64) @ layer.weight.T.astype(np.float64)

    def refuse(*_a, **_k):
        raise AssertionError("NumPy BLAS called")

    monkeypatch.setattr(np, "matmul", refuse)
    monkeypatch.setattr(np, "dot", refuse)
    y = layer.forward(x)
    layer.backward(np.ones_like(y))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ buffer reuse


def manual_step(model, x, labels):
    """The same step with every layer called on its own (fresh arrays everywhere)."""
    loss_fn = nn.SoftmaxCrossEntropy()
    a = x
    for layer in model:
        a = layer.forward(a)
    loss = loss_fn.forward(a, labels)
    g = loss_fn.backward()
    for layer in reversed(model.layers):
        g = layer.backward(g)
    return loss, a, g


@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
def test_sequential_with_reuse_equals_layers_called_one_by_one(dtype, tol):
    x, labels = batch(dtype=dtype)
    a, b = lenet(dtype), lenet(dtype)
    loss_fn = nn.SoftmaxCrossEntropy()
    opt_a = cc.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = cc.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):  # the buffers of step 1 are reused by steps 2 and 3
        a.zero_grad()
        b.zero_grad()
        logits = a.forward(x)
        loss_a = loss_fn.forward(logits, labels)
        dx_a = a.backward(loss_fn.backward(), input_grad=True)
        loss_b, logits_b, dx_b = manual_step(b, x, labels)
        assert loss_a == loss_b
        np.testing.assert_array_equal(logits, logits_b)
        np.testing.assert_array_equal(dx_a, dx_b)
        for pa, pb in zip(a.parameters(), b.parameters()):
            np.testing.assert_array_equal(pa.grad, pb.grad)
        opt_a.step()
        opt_b.step()


def test_intermediate_buffers_are_reused_from_step_to_step():
    x, labels = batch()
    model, loss_fn = lenet(), nn.SoftmaxCrossEntropy()
    opt = cc.SGD(model.parameters(), lr=0.1)
    nn.train_step(model, loss_fn, opt, x, labels)
    kept = {(i, k): id(v) for i, layer in enumerate(model) for k, v in getattr(layer, "_buffers", {}).items()}
    # Every layer but the flatten keeps its output or input-gradient buffers.
    assert {i for i, _ in kept} == {0, 1, 2, 3, 5}
    nn.train_step(model, loss_fn, opt, x, labels)
    again = {(i, k): id(v) for i, layer in enumerate(model) for k, v in getattr(layer, "_buffers", {}).items()}
    assert again == kept


def test_arrays_returned_to_the_caller_are_never_overwritten():
    x, labels = batch()
    model = lenet()
    out1 = model.forward(x)
    keep1 = out1.copy()
    out2 = model.forward(x[::-1].copy())
    assert out2 is not out1
    np.testing.assert_array_equal(out1, keep1)
    dx1 = model.backward(np.ones_like(out2), input_grad=True)
    keep_dx = dx1.copy()
    dx2 = model.backward(np.full_like(out2, 2.0), input_grad=True)
    np.testing.assert_array_equal(dx1, keep_dx)
    np.testing.assert_array_equal(dx2, 2 * keep_dx)
    # A layer of the network called by the user returns new arrays too.
    conv = model[0]
    y1 = conv.forward(x)
    keep_y1 = y1.copy()
    model.forward(x[::-1].copy())
    conv.forward(x[:2])
    np.testing.assert_array_equal(y1, keep_y1)


def test_batch_shape_change_remakes_the_buffers():
    x, labels = batch(n=6)
    model, loss_fn = lenet(), nn.SoftmaxCrossEntropy()
    opt = cc.SGD(model.parameters(), lr=0.0)  # no update: every step sees the same weights
    ref = [manual_step(lenet(), x[:k], labels[:k])[0] for k in (6, 4, 6)]
    got = [nn.train_step(model, loss_fn, opt, x[:k], labels[:k])[0] for k in (6, 4, 6)]
    assert got == ref


# ---------------------------------------------------------------------- first input gradient


class Recorder(nn.Module):
    """A user layer without input_grad in its backward signature (the old protocol)."""

    def __init__(self):
        self.calls = 0

    def forward(self, x):
        return x

    def backward(self, grad_output):
        self.calls += 1
        return grad_output


def test_sequential_skips_the_first_input_gradient_unless_asked(monkeypatch):
    x, labels = batch()
    model = lenet()
    out = model.forward(x)
    conv = model[0]
    seen = []
    original = conv.plan(x.shape).backward

    plan = conv.plan(x.shape)

    class Spy:
        def __getattr__(self, name):
            return getattr(plan, name)

        def backward(self, *a, **k):
            seen.append(k.get("input_grad", True))
            return original(*a, **k)

    spy = Spy()
    monkeypatch.setattr(conv, "plan", lambda shape: spy)
    assert model.backward(np.ones_like(out)) is None
    dx = model.backward(np.ones_like(out), input_grad=True)
    assert seen == [False, True]
    assert dx.shape == x.shape


def test_user_layers_without_input_grad_still_work():
    first = Recorder()
    model = nn.Sequential(first, nn.Flatten(), nn.Linear(3 * 12 * 12, 2, seed=0))
    x, _ = batch()
    out = model.forward(x)
    assert model.backward(np.ones_like(out)) is None
    assert first.calls == 1
    np.testing.assert_array_equal(model.backward(np.ones_like(out), input_grad=True).shape, x.shape)


# ----------------------------------------------------------------------------- wide pooling


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "k", "s", "p"), [
    ((1, 2, 4, 1100), 2, 2, 0),  # rows longer than the chunk of cells
    ((1, 1, 5, 700), 3, 1, 1),
    ((2, 2, 9, 40), 3, 3, 1),  # a stride the loops take at run time
])
def test_pooling_wide_rows_with_nans_match_reference(shape, k, s, p, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[rng.choice(x.size, 25, replace=False)] = np.nan
    y, idx = nn.max_pool2d(x, k, s, p, return_indices=True)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    oh, ow = y.shape[2:]
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k].reshape(shape[0], shape[1], -1)
            a = win.argmax(axis=2)  # NumPy's argmax: the first NaN, else the first maximum
            r, c = np.divmod(a, k)
            np.testing.assert_array_equal(y[:, :, i, j], np.take_along_axis(win, a[..., None], 2)[..., 0])
            np.testing.assert_array_equal(idx[:, :, i, j], (i * s + r - p) * shape[3] + (j * s + c - p))


# ---------------------------------------------------------------------- NumPy's BLAS threads


def test_one_blas_thread_limits_and_restores_numpys_blas():
    from convcore import _blas

    libs = _blas.blas_libraries()
    if not libs:
        pytest.skip("no BLAS with a thread-count interface is loaded")
    before = [lib.get() for lib in libs]
    with _blas.one_blas_thread():
        assert [lib.get() for lib in libs] == [1] * len(libs)
        with _blas.one_blas_thread():  # nested: still one, and the outer block restores
            assert [lib.get() for lib in libs] == [1] * len(libs)
        assert [lib.get() for lib in libs] == [1] * len(libs)
    assert [lib.get() for lib in libs] == before
    with pytest.raises(RuntimeError):
        with _blas.one_blas_thread():
            raise RuntimeError("restored even so")
    assert [lib.get() for lib in libs] == before


def test_one_blas_thread_agrees_with_threadpoolctl():
    import os

    threadpoolctl = pytest.importorskip("threadpoolctl")
    from convcore import _blas

    found = {lib.path for lib in _blas.blas_libraries(refresh=True)}
    theirs = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert found == {os.path.realpath(i["filepath"]) for i in theirs if i["internal_api"] in ("openblas", "mkl")}
    with _blas.one_blas_thread():
        assert all(i["num_threads"] == 1 for i in threadpoolctl.threadpool_info() if i["filepath"] in found)


def test_training_step_runs_user_layers_with_one_blas_thread():
    from convcore import _blas

    libs = _blas.blas_libraries()
    if not libs:
        pytest.skip("no BLAS with a thread-count interface is loaded")
    seen = []

    class UserLayer(nn.Module):
        def forward(self, x):
            seen.append([lib.get() for lib in libs])
            return x

        def backward(self, g, input_grad=True):
            seen.append([lib.get() for lib in libs])
            return g

    model = nn.Sequential(nn.Flatten(), UserLayer(), nn.Linear(3 * 12 * 12, 5, seed=0))
    x, labels = batch()
    before = [lib.get() for lib in libs]
    nn.train_step(model, nn.SoftmaxCrossEntropy(), cc.SGD(model.parameters(), lr=0.1), x, labels)
    assert seen == [[1] * len(libs)] * 2
    assert [lib.get() for lib in libs] == before


def test_readme_training_example_runs_and_prints_what_it_shows():
    """The README's training example: shapes exact, losses to the printed 4 decimals within
    rounding of other instruction sets (float32 sums in another order)."""
    import pathlib
    import re
    import subprocess
    import sys

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Training a network", 1)[1]
    code, rest = section.split("```python\n", 1)[1].split("```\nprints\n```\n", 1)
    shown = rest.split("```", 1)[0].splitlines()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(shown)
    for got, want in zip(out, shown):
        if got.startswith("step"):
            g, w = (float(re.search(r"loss ([0-9.]+)", s).group(1)) for s in (got, want))
            assert abs(g - w) <= 2e-3 * max(1.0, w), (got, want)
        else:
            assert got == want


def test_blas_discovery_names_each_library_once_after_scipy_arrives():
    """An extension module linked to a BLAS (SciPy's _fblas) answers for that BLAS's functions;
    the library is still counted once, under its own path, and found after the import."""
    pytest.importorskip("scipy.linalg")
    from convcore import _blas

    libs = _blas.blas_libraries()
    paths = [lib.path for lib in libs]
    assert len(paths) == len(set(paths))
    assert all(p.rsplit("/", 1)[-1].startswith("lib") for p in paths), paths
