"""BatchNorm2D, AvgPool2D, GlobalAvgPool2D, Dropout and Residual: against direct NumPy loops,
finite differences (float64, alone and inside whole networks), PyTorch's modules (when
installed), buffer reuse inside a Sequential, train/eval modes and state_dict round trips."""

from __future__ import annotations

import numpy as np
import pytest

import convcore as cc
from convcore import nn
from convcore.gradcheck import numerical_grad
from conftest import assert_param_grads, fd_check

DTYPES = [(np.float32, 2e-5), (np.float64, 1e-12)]


# ----------------------------------------------------------------------------- BatchNorm2D


def _bn_reference(x, gamma, beta, eps):
    """Batch normalisation with batch statistics, written out in float64 per channel."""
    x = x.astype(np.float64)
    y = np.empty_like(x)
    means, vars_ = [], []
    for c in range(x.shape[1]):
        v = x[:, c]
        mean = v.sum() / v.size
        var = ((v - mean) ** 2).sum() / v.size
        y[:, c] = (v - mean) / np.sqrt(var + eps) * gamma[c] + beta[c]
        means.append(mean)
        vars_.append(var)
    return y, np.array(means), np.array(vars_)


@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
def test_batchnorm_forward_and_running_stats_match_the_formula(dtype, tol):
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm2D(4, eps=1e-3, momentum=0.2, dtype=dtype)
    bn.weight_param.data[...] = rng.uniform(0.5, 1.5, 4)
    bn.bias_param.data[...] = rng.standard_normal(4)
    rm, rv = np.zeros(4), np.ones(4)
    for step in range(3):
        x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 3).astype(dtype)
        y = bn.forward(x)
        want, mean, var = _bn_reference(x, bn.weight_param.data, bn.bias_param.data, 1e-3)
        np.testing.assert_allclose(y, want, rtol=tol * 10, atol=tol * 10)
        m = x.size // 4
        rm = 0.8 * rm + 0.2 * mean
        rv = 0.8 * rv + 0.2 * var * m / (m - 1)  # the unbiased variance, as PyTorch
        np.testing.assert_allclose(bn.running_mean, rm, rtol=tol, atol=tol)
        np.testing.assert_allclose(bn.running_var, rv, rtol=tol, atol=tol)
        assert int(bn.num_batches_tracked) == step + 1
    bn.eval()
    x = rng.standard_normal((2, 4, 3, 3)).astype(dtype)
    want = ((x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-3)
            * bn.weight_param.data[None, :, None, None] + bn.bias_param.data[None, :, None, None])
    np.testing.assert_allclose(bn.forward(x), want, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(bn.running_mean, rm, rtol=tol, atol=tol)  # eval leaves them alone
    assert int(bn.num_batches_tracked) == 3


def test_batchnorm_cumulative_average_and_no_running_stats():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm2D(2, momentum=None, dtype=np.float64)
    xs = [rng.standard_normal((2, 2, 3, 3)) + i for i in range(3)]
    for x in xs:
        bn.forward(x)
    means = [_bn_reference(x, np.ones(2), np.zeros(2), 1e-5)[1] for x in xs]
    np.testing.assert_allclose(bn.running_mean, np.mean(means, axis=0), rtol=1e-12)
    plain = nn.BatchNorm2D(2, affine=False, track_running_stats=False, dtype=np.float64).eval()
    assert plain.parameters() == [] and plain.state_dict() == {}
    np.testing.assert_allclose(plain.forward(xs[0]), _bn_reference(xs[0], np.ones(2), np.zeros(2), 1e-5)[0],
                               rtol=1e-12, atol=1e-12)  # batch statistics even in eval mode


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_gradients_match_finite_differences(mode, affine):
    rng = np.random.default_rng(2)
    bn = nn.BatchNorm2D(3, affine=affine, dtype=np.float64)
    if affine:
        bn.weight_param.data[...] = rng.uniform(0.5, 1.5, 3)
        bn.bias_param.data[...] = rng.standard_normal(3)
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 2, 3)
    bn.train(mode == "train")
    x = rng.standard_normal((2, 3, 4, 3)) * 1.5 + 0.5
    fd_check(lambda v: (bn.forward(v), bn), x, rng, params=bn.parameters())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_matches_torch(dtype, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    bn = nn.BatchNorm2D(5, eps=1e-4, momentum=0.3, affine=affine, dtype=dtype)
    tbn = torch.nn.BatchNorm2d(5, eps=1e-4, momentum=0.3, affine=affine, dtype=tdt)
    if affine:
        w, b = rng.uniform(0.5, 1.5, 5).astype(dtype), rng.standard_normal(5).astype(dtype)
        bn.weight_param.data[...] = w
        bn.bias_param.data[...] = b
        with torch.no_grad():
            tbn.weight.copy_(torch.tensor(w))
            tbn.bias.copy_(torch.tensor(b))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for mode in ("train", "train", "eval"):
        bn.train(mode == "train")
        tbn.train(mode == "train")
        x = (rng.standard_normal((4, 5, 6, 7)) * 3 + 1).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        bn.zero_grad()
        y = bn.forward(x)
        dx = bn.backward(dy)
        tx = torch.tensor(x, requires_grad=True)
        ty = tbn(tx)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
        if affine:
            np.testing.assert_allclose(bn.weight_param.grad, tbn.weight.grad.numpy(), rtol=tol, atol=tol * 10)
            np.testing.assert_allclose(bn.bias_param.grad, tbn.bias.grad.numpy(), rtol=tol, atol=tol * 10)
            tbn.weight.grad = tbn.bias.grad = None
        state = bn.state_dict()
        for k, v in tbn.state_dict().items():
            np.testing.assert_allclose(state[k], v.numpy(), rtol=tol, atol=tol, err_msg=k)


def test_batchnorm_errors():
    bn = nn.BatchNorm2D(3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bn.forward(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.forward(np.zeros((1, 3, 1, 1), np.float32))
    assert int(bn.num_batches_tracked) == 0  # the refused batch was not counted
    with pytest.raises(TypeError, match="narrowed"):
        bn.forward(np.zeros((2, 3, 2, 2), np.float64))
    with pytest.raises(RuntimeError, match="call forward first"):
        nn.BatchNorm2D(3).backward(np.zeros((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2D(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm2D(3, eps=0)
    bn.forward(np.ones((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(2, 3, 2, 2\)"):
        bn.backward(np.zeros((2, 3, 2, 1), np.float32))


# ------------------------------------------------------------------------------- AvgPool2D


def _avg_pool_reference(x, k, s, p, include_pad):
    """Average pooling by direct loops over the windows (zero padding)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - ph, j * sw - pw
            rows = range(max(r0, 0), min(r0 + kh, h))
            cols = range(max(c0, 0), min(c0 + kw, w))
            total = x[:, :, rows.start:rows.stop, cols.start:cols.stop].sum(axis=(2, 3))
            y[:, :, i, j] = total / (kh * kw if include_pad else len(rows) * len(cols))
    return y


GEOMETRIES = [((2, 2), None, (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0)), ((4, 4), (3, 1), (2, 2))]


@pytest.mark.parametrize(("k", "s", "p"), GEOMETRIES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_matches_direct_loops_and_finite_differences(k, s, p, include_pad):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8))
    pool = nn.AvgPool2D(k, s, p, count_include_pad=include_pad)
    want = _avg_pool_reference(x, k, s if s is not None else k, p, include_pad)
    np.testing.assert_allclose(pool.forward(x), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nn.AvgPool2D(k, s, p, include_pad).forward(x.astype(np.float32)), want,
                               rtol=1e-5, atol=1e-6)
    fd_check(lambda v: (pool.forward(v), pool), x, rng)


@pytest.mark.parametrize(("k", "s", "p"), GEOMETRIES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_matches_torch(k, s, p, include_pad):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 8))
    dy_shape = nn.AvgPool2D(k, s, p).forward(x).shape
    dy = rng.standard_normal(dy_shape)
    pool = nn.AvgPool2D(k, s, p, count_include_pad=include_pad)
    y = pool.forward(x)
    dx = pool.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.AvgPool2d(k, s, p, count_include_pad=include_pad)(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_avg_pool_errors():
    with pytest.raises(ValueError, match="at most half"):
        nn.AvgPool2D(2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        nn.AvgPool2D(2).forward(np.zeros((3, 4, 4)))
    with pytest.raises(RuntimeError, match="call forward first"):
        nn.AvgPool2D(2).backward(np.zeros((1, 1, 1, 1)))


def test_global_avg_pool():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5, 2))
    gap = nn.GlobalAvgPool2D()
    y = gap.forward(x)
    want = np.array([[x[n, c].sum() / 10 for c in range(4)] for n in range(3)])
    np.testing.assert_allclose(y, want, rtol=1e-13)
    fd_check(lambda v: (gap.forward(v), gap), x, rng)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gap.forward(np.zeros((2, 3)))


# --------------------------------------------------------------------------------- Dropout


def test_dropout_masks_scales_and_is_seeded():
    x = np.ones((200, 100))
    a, b = nn.Dropout(0.3, seed=7), nn.Dropout(0.3, seed=7)
    ya = a.forward(x)
    np.testing.assert_array_equal(ya, b.forward(x))  # same seed, same mask
    kept = ya != 0
    assert 0.67 < kept.mean() < 0.73
    np.testing.assert_allclose(ya[kept], 1 / 0.7)  # inverted dropout: the expectation is kept
    mask = np.random.default_rng(7).random(x.shape) >= 0.3  # the documented draw
    np.testing.assert_array_equal(kept, mask)
    dy = np.arange(x.size, dtype=np.float64).reshape(x.shape)
    np.testing.assert_allclose(a.backward(dy), dy * mask / 0.7)
    assert not np.array_equal(a.forward(x), ya)  # a new mask each step
    a.eval()
    y = a.forward(dy)
    np.testing.assert_array_equal(y, dy)
    assert y is not dy
    np.testing.assert_array_equal(a.backward(dy), dy)
    np.testing.assert_array_equal(nn.Dropout(1.0).forward(x), 0 * x)
    np.testing.assert_array_equal(nn.Dropout(0.0).forward(x), x)
    with pytest.raises(ValueError, match=r"p: dropout probability must be in \[0, 1\]"):
        nn.Dropout(1.5)


# -------------------------------------------------------------------------------- Residual


def test_residual_identity_and_projection_gradients():
    rng = np.random.default_rng(8)
    block = nn.Sequential(nn.Conv2D(2, 3, 3, padding=1, dtype=np.float64, seed=1), nn.ReLU(),
                          nn.Conv2D(3, 3, 3, padding=1, dtype=np.float64, seed=2))
    proj = nn.Conv2D(2, 3, 1, dtype=np.float64, seed=3)
    res = nn.Residual(block, proj)
    x = rng.standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(res.forward(x), block.forward(x) + proj.forward(x), rtol=1e-14)
    fd_check(lambda v: (res.forward(v), res), x, rng, params=res.parameters())
    names = [n for n, _ in res.named_parameters()]
    assert names == ["block.0.weight", "block.0.bias", "block.2.weight", "block.2.bias",
                     "projection.weight", "projection.bias"]
    ident = nn.Residual(nn.Conv2D(2, 2, 3, padding=1, dtype=np.float64, seed=4))
    fd_check(lambda v: (ident.forward(v), ident), x, rng, params=ident.parameters())
    with pytest.raises(ValueError, match=r"block\(x\) has shape \(2, 3, 5, 5\) but the input has shape"):
        nn.Residual(nn.Conv2D(2, 3, 3, padding=1)).forward(x.astype(np.float32))
    with pytest.raises(TypeError, match="projection"):
        nn.Residual(block, object())


def test_train_and_eval_reach_every_layer():
    bn, drop = nn.BatchNorm2D(2), nn.Dropout(0.5)
    model = nn.Sequential(nn.Residual(nn.Sequential(bn), drop), nn.ReLU())
    assert model.eval() is model
    assert not bn.training and not drop.training and not model[0].training
    model.train()
    assert bn.training and drop.training


# ---------------------------------------------------------------------- whole networks


def resnet_like(dtype=np.float64, seed=0):
    """Conv -> BN -> ReLU -> Residual(conv-BN-ReLU-conv-BN) -> Residual(.., 1x1 projection) ->
    AvgPool -> Dropout -> GlobalAvgPool -> Linear, for (N, 2, 6, 6)."""
    def conv(i, o, k, s):
        return nn.Conv2D(i, o, k, padding=k // 2, bias=False, dtype=dtype, seed=s)

    return nn.Sequential(
        conv(2, 3, 3, seed), nn.BatchNorm2D(3, dtype=dtype), nn.ReLU(),
        nn.Residual(nn.Sequential(conv(3, 3, 3, seed + 1), nn.BatchNorm2D(3, dtype=dtype), nn.ReLU(),
                                  conv(3, 3, 3, seed + 2), nn.BatchNorm2D(3, dtype=dtype))),
        nn.ReLU(),
        nn.Residual(nn.Sequential(conv(3, 4, 3, seed + 3), nn.BatchNorm2D(4, dtype=dtype)),
                    nn.Sequential(conv(3, 4, 1, seed + 4), nn.BatchNorm2D(4, dtype=dtype))),
        nn.AvgPool2D(3, stride=1, padding=1, count_include_pad=False), nn.Dropout(0.3, seed=1),
        nn.GlobalAvgPool2D(), nn.Linear(4, 3, dtype=dtype, seed=seed + 5),
    )


def test_whole_resnet_like_network_gradients_match_finite_differences():
    rng = np.random.default_rng(9)
    model = resnet_like()
    for name, p in model.named_parameters():  # BN weights and biases away from 1 and 0
        if "bias" in name or p.data.ndim == 1:
            p.data[...] = rng.uniform(0.5, 1.5, p.data.shape) if name.endswith("weight") else rng.uniform(-.5, .5, p.data.shape)
    loss_fn = nn.SoftmaxCrossEntropy()
    x = rng.standard_normal((3, 2, 6, 6))
    labels = np.array([0, 2, 1])
    drop = next(layer for layer in model if isinstance(layer, nn.Dropout))

    def loss(v):
        drop._rng = np.random.default_rng(11)  # the same mask for every evaluation
        return loss_fn.forward(model.forward(v), labels)

    model.zero_grad()
    loss(x)
    dx = model.backward(loss_fn.backward(), input_grad=True)
    assert_param_grads(model.named_parameters(), loss, x, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-5, atol=1e-8, err_msg="input")


def _manual(model, x, labels, loss_fn):
    """The layers called one by one, with no container (no buffer reuse)."""
    a = x
    for layer in model.layers:
        a = layer.forward(a)
    loss = loss_fn.forward(a, labels)
    g = loss_fn.backward()
    for layer in reversed(model.layers):
        g = layer.backward(g)
    return loss, a, g


@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
def test_sequential_reuse_with_the_new_modules_equals_layers_one_by_one(dtype, tol):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 2, 6, 6)).astype(dtype)
    labels = np.array([0, 1, 2, 1])
    a, b = resnet_like(dtype), resnet_like(dtype)
    loss_fn = nn.SoftmaxCrossEntropy()
    opt_a, opt_b = cc.Adam(a.parameters(), lr=0.01), cc.Adam(b.parameters(), lr=0.01)
    outs = []
    for _ in range(3):  # the buffers of step 1 are reused by steps 2 and 3
        a.zero_grad()
        b.zero_grad()
        logits = a.forward(x)
        outs.append((logits, logits.copy()))
        loss_a = loss_fn.forward(logits, labels)
        dx_a = a.backward(loss_fn.backward(), input_grad=True)
        loss_b, logits_b, dx_b = _manual(b, x, labels, loss_fn)
        assert loss_a == loss_b
        np.testing.assert_array_equal(logits, logits_b)
        np.testing.assert_array_equal(dx_a, dx_b)
        for pa, pb in zip(a.parameters(), b.parameters()):
            np.testing.assert_array_equal(pa.grad, pb.grad)
        opt_a.step()
        opt_b.step()
    for returned, copy in outs:  # arrays handed to the caller were never overwritten
        np.testing.assert_array_equal(returned, copy)
    assert a[1]._buffers["output"] is not None  # BN inside the network kept its output buffer
    # Inside a Residual, the branches' outputs and input gradients only feed its sums: the
    # projection's layers keep those buffers too.
    proj = a[5].projection
    assert proj[1]._buffers["output"] is not None and proj[0]._buffers["grad_input"] is not None


# ------------------------------------------------------------------------------- state_dict


def test_state_dict_round_trip_of_every_module():
    rng = np.random.default_rng(12)
    a, b = resnet_like(np.float32, seed=0), resnet_like(np.float32, seed=20)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    a.forward(x)  # running statistics move
    state = a.state_dict()
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked", "3.block.0.weight",
            "5.projection.1.running_var", "9.weight"} <= set(state)
    assert state["1.num_batches_tracked"].dtype == np.int64 and int(state["1.num_batches_tracked"]) == 1
    refs = [p.data for p in b.parameters()]
    b.load_state_dict(state)
    for k, v in b.state_dict().items():
        assert v.tobytes() == state[k].tobytes(), k
    assert all(r is p.data for r, p in zip(refs, b.parameters()))  # in place
    a.eval()
    b.eval()
    assert a.forward(x).tobytes() == b.forward(x).tobytes()
    # A single layer has one too.
    bn = nn.BatchNorm2D(3)
    assert sorted(bn.state_dict()) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    conv = cc.Conv2D(1, 2, 3, seed=1)
    other = cc.Conv2D(1, 2, 3, seed=2)
    other.load_state_dict(conv.state_dict())
    np.testing.assert_array_equal(other.weight, conv.weight)


def test_load_state_dict_errors_name_the_key_and_change_nothing():
    bn = nn.BatchNorm2D(3)
    before = bn.state_dict()
    bad = dict(before, running_var=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"'running_var' is float32 \(4,\), the network expects float32 \(3,\)"):
        bn.load_state_dict(bad)
    bad = dict(before, weight=np.ones(3, np.float64), running_mean=np.full(3, 7, np.float32))
    with pytest.raises(ValueError, match=r"'weight' is float64 \(3,\), the network expects float32"):
        bn.load_state_dict(bad)
    bad = {k: v for k, v in before.items() if k != "num_batches_tracked"}
    with pytest.raises(ValueError, match=r"missing \['num_batches_tracked'\]"):
        bn.load_state_dict(bad)
    for k, v in bn.state_dict().items():
        assert v.tobytes() == before[k].tobytes(), k


def test_readme_residual_example_runs_and_prints_what_it_shows():
    """The README's residual-network example: losses to the printed 4 decimals within rounding of
    other instruction sets, every other line exact."""
    import pathlib
    import re
    import subprocess
    import sys

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Residual networks", 1)[1]
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_relu_one_pass_paths_match_the_mask_formula(dtype):
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    if dtype != np.int64:
        x[0, 0, :3] = [np.nan, -0.0, 0.0]
    g = rng.standard_normal(x.shape).astype(np.float64 if dtype == np.int64 else dtype)
    relu = nn.ReLU()
    y = relu.forward(x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))  # NaN -> 0, as the mask
    np.testing.assert_array_equal(relu.backward(g), np.where(x > 0, g, 0))
    assert relu.backward(g, input_grad=False) is None
    with pytest.raises(ValueError, match="grad_output must have shape"):
        relu.backward(g[:1])


def test_residual_first_in_a_sequential_skips_only_the_input_gradient(tmp_path):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 2, 5, 5))
    make = lambda: nn.Sequential(  # noqa: E731
        nn.Residual(nn.Sequential(nn.Conv2D(2, 2, 3, padding=1, dtype=np.float64, seed=1),
                                  nn.BatchNorm2D(2, dtype=np.float64))),
        nn.GlobalAvgPool2D(), nn.Linear(2, 3, dtype=np.float64, seed=2))
    a, b = make(), make()
    g = rng.standard_normal((2, 3))
    a.forward(x)
    assert a.backward(g) is None  # the first layer's input gradient is not computed ...
    b.forward(x)
    assert b.backward(g, input_grad=True).shape == x.shape
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=name)  # ... the parameters' are
    # save / load carry the buffers too
    a.save(tmp_path / "res.npz")
    c = make()
    c.load(tmp_path / "res.npz")
    assert int(c[0].block[1].num_batches_tracked) == 1
    np.testing.assert_array_equal(c[0].block[1].running_var, a[0].block[1].running_var)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_activation_forward_matches_numpy(dtype):
    rng = np.random.default_rng(31)
    x = (rng.standard_normal(3 * 4096 + 5) * 6).astype(dtype)
    x[:3] = [np.nan, -0.0, np.inf]
    relu = cc._core.activation_forward("relu", x)
    np.testing.assert_array_equal(relu, np.where(x > 0, x, 0))  # NaN -> 0
    assert not np.signbit(relu[1])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    x64 = x[3:].astype(np.float64)
    np.testing.assert_allclose(cc._core.activation_forward("sigmoid", x[3:]), 1 / (1 + np.exp(-x64)), rtol=tol, atol=tol)
    np.testing.assert_allclose(cc._core.activation_forward("tanh", x[3:]), np.tanh(x64), rtol=tol, atol=tol)
    out = np.empty_like(x)
    assert cc._core.activation_forward("identity", x, out=out) is out
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="out"):
        cc._core.activation_forward("relu", x, out=np.empty(3, dtype))
    with pytest.raises(ValueError, match="activation"):
        cc._core.activation_forward("gelu", x)
