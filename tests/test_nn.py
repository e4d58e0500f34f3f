"""The network toolkit: whole-network gradients, accumulation, save/load and a short training run."""

from __future__ import annotations

import numpy as np
import pytest

import convcore as cc
from convcore import nn
from convcore.gradcheck import numerical_grad


def small_net(dtype=np.float64, seed=0, fused_relu=False, pool=(2, 2)):
    """Conv2D -> ReLU -> MaxPool2D -> Flatten -> Linear, for (N, 2, 6, 6) inputs."""
    k, s = pool
    oh = (6 - k) // s + 1
    conv = nn.Conv2D(2, 3, 3, padding=1, activation="relu" if fused_relu else None, dtype=dtype, seed=seed)
    layers = [conv] + ([] if fused_relu else [nn.ReLU()])
    layers += [nn.MaxPool2D(k, stride=s), nn.Flatten(), nn.Linear(3 * oh * oh, 4, dtype=dtype, seed=seed + 1)]
    return nn.Sequential(*layers)


def loss_of(model, loss_fn, x, labels):
    return loss_fn.forward(model.forward(x), labels)


# ------------------------------------------------------------------------------ gradient check


@pytest.mark.parametrize(
    ("fused_relu", "pool"),
    [
        pytest.param(False, (2, 2), id="relu-layer-pool2s2"),
        pytest.param(True, (3, 2), id="fused-relu-pool3s2-overlapping"),
    ],
)
def test_whole_network_gradients_match_finite_differences(fused_relu, pool):
    rng = np.random.default_rng(0)
    model = small_net(fused_relu=fused_relu, pool=pool)
    for p in model.parameters():  # non-zero biases: the check covers them too
        p.data[...] = rng.uniform(-0.5, 0.5, size=p.data.shape) if p.name == "bias" else p.data
    loss_fn = nn.SoftmaxCrossEntropy()
    x = rng.standard_normal((3, 2, 6, 6))
    labels = np.array([0, 3, 1])

    model.zero_grad()
    loss_of(model, loss_fn, x, labels)
    dx = model.backward(loss_fn.backward(), input_grad=True)

    def loss_at(param):
        def f(value):
            saved = param.data.copy()
            np.copyto(param.data, value)
            try:
                return loss_of(model, loss_fn, x, labels)
            finally:
                np.copyto(param.data, saved)

        return f

    for name, p in model.named_parameters():
        num = numerical_grad(loss_at(p), p.data)
        np.testing.assert_allclose(p.grad, num, rtol=1e-6, atol=1e-8, err_msg=name)
    num_dx = numerical_grad(lambda v: loss_of(model, loss_fn, v, labels), x)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-6, atol=1e-8, err_msg="input")


def test_softmax_cross_entropy_against_naive_formula_and_finite_differences():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 7))
    labels = rng.integers(0, 7, size=5)
    loss_fn = nn.SoftmaxCrossEntropy()
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    want = -np.log(p[np.arange(5), labels]).mean()
    assert loss_fn.forward(logits, labels) == pytest.approx(want, rel=1e-13)
    d = loss_fn.backward()
    num = numerical_grad(lambda z: nn.SoftmaxCrossEntropy().forward(z, labels), logits)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss_fn.backward(0.5), 0.5 * d, rtol=1e-15)

    total = nn.SoftmaxCrossEntropy("sum")
    assert total.forward(logits, labels) == pytest.approx(5 * want, rel=1e-13)
    np.testing.assert_allclose(total.backward(), 5 * d, rtol=1e-13)


def test_softmax_cross_entropy_is_stable_for_large_logits():
    loss_fn = nn.SoftmaxCrossEntropy()
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 1000.0]], np.float32)
    loss = loss_fn.forward(logits, np.array([0, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(np.log(2) / 2, rel=1e-6)
    d = loss_fn.backward()
    assert d.dtype == np.float32 and np.all(np.isfinite(d))


def test_linear_matches_numpy_and_accumulates():
    rng = np.random.default_rng(2)
    layer = nn.Linear(5, 3, dtype=np.float64, seed=3)
    assert np.all(np.abs(layer.weight) <= 1 / np.sqrt(5)) and not layer.bias.any()
    layer.bias[...] = rng.standard_normal(3)
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 3))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.T + layer.bias, rtol=1e-14)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dy @ layer.weight, rtol=1e-14)
    np.testing.assert_allclose(layer.weight_param.grad, dy.T @ x, rtol=1e-14)
    np.testing.assert_allclose(layer.bias_param.grad, dy.sum(0), rtol=1e-14)
    layer.backward(dy)  # gradients add up until zero_grad
    np.testing.assert_allclose(layer.weight_param.grad, 2 * (dy.T @ x), rtol=1e-14)
    np.testing.assert_allclose(layer.bias_param.grad, 2 * dy.sum(0), rtol=1e-14)
    layer.zero_grad()
    assert not layer.weight_param.grad.any() and not layer.bias_param.grad.any()


def test_same_seed_same_weights():
    a, b = small_net(seed=5), small_net(seed=5)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.data.tobytes() == q.data.tobytes()
    assert not np.array_equal(small_net(seed=6)[0].weight, a[0].weight)


def test_relu_and_flatten():
    x = np.array([[[[-1.0, 2.0], [0.0, 3.0]]]], np.float32)
    relu, flat = nn.ReLU(), nn.Flatten()
    y = flat.forward(relu.forward(x))
    np.testing.assert_array_equal(y, [[0, 2, 0, 3]])
    assert y.dtype == np.float32
    g = relu.backward(flat.backward(np.ones((1, 4), np.float32)))
    np.testing.assert_array_equal(g, [[[[0, 1], [0, 1]]]])


def test_network_parameter_gradients_accumulate():
    rng = np.random.default_rng(3)
    model = small_net()
    loss_fn = nn.SoftmaxCrossEntropy()
    x, labels = rng.standard_normal((2, 2, 6, 6)), np.array([1, 2])
    model.zero_grad()
    for _ in range(2):
        loss_of(model, loss_fn, x, labels)
        model.backward(loss_fn.backward())
    twice = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    loss_of(model, loss_fn, x, labels)
    model.backward(loss_fn.backward())
    for p, g2 in zip(model.parameters(), twice):
        np.testing.assert_allclose(g2, 2 * p.grad, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- micro-batches


@pytest.mark.parametrize("micro_batches", [2, 3, 10])
@pytest.mark.parametrize(("dtype", "tol"), [pytest.param(np.float64, 1e-12, id="f64"),
                                            pytest.param(np.float32, 2e-5, id="f32")])
def test_micro_batches_give_the_whole_batch_update(micro_batches, dtype, tol):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 2, 6, 6)).astype(dtype)
    labels = rng.integers(0, 4, size=10)
    models = [small_net(dtype, seed=7), small_net(dtype, seed=7)]
    opts = [cc.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3) for m in models]
    loss_fn = nn.SoftmaxCrossEntropy()
    for _ in range(3):  # several steps: momentum carries the update forward
        whole = nn.train_step(models[0], loss_fn, opts[0], x, labels)
        parts = nn.train_step(models[1], loss_fn, opts[1], x, labels, micro_batches=micro_batches)
        assert parts[0] == pytest.approx(whole[0], rel=tol)
        assert parts[1] == whole[1]
        for (name, p), (_, q) in zip(models[0].named_parameters(), models[1].named_parameters()):
            np.testing.assert_allclose(q.grad, p.grad, rtol=tol, atol=tol * np.abs(p.grad).max(), err_msg=name)
            np.testing.assert_allclose(q.data, p.data, rtol=tol, atol=tol, err_msg=name)


def test_train_step_rejects_bad_micro_batches():
    model, loss_fn = small_net(), nn.SoftmaxCrossEntropy()
    opt = cc.SGD(model.parameters(), lr=0.1)
    x, labels = np.zeros((3, 2, 6, 6)), np.zeros(3, np.int64)
    for k in (0, 4):
        with pytest.raises(ValueError, match="micro_batches"):
            nn.train_step(model, loss_fn, opt, x, labels, micro_batches=k)


# ------------------------------------------------------------------------------- save / load


def test_save_load_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(5)
    model = small_net(np.float32, seed=1)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    path = tmp_path / "net.params"  # any name: written exactly there
    model.save(path)
    assert path.exists()

    other = small_net(np.float32, seed=2)
    refs = [p.data for p in other.parameters()]
    other.load(path)
    for (name, p), (_, q) in zip(model.named_parameters(), other.named_parameters()):
        assert p.data.tobytes() == q.data.tobytes(), name
    assert all(r is p.data for r, p in zip(refs, other.parameters()))  # loaded in place
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    assert model.forward(x).tobytes() == other.forward(x).tobytes()
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "4.bias", "4.weight"]


def test_load_refuses_mismatched_files(tmp_path):
    model = small_net(np.float32)
    before = [p.data.copy() for p in model.parameters()]

    small_net(np.float64).save(tmp_path / "f64.npz")
    with pytest.raises(ValueError, match="float64"):
        model.load(tmp_path / "f64.npz")

    small_net(np.float32, pool=(3, 2)).save(tmp_path / "shape.npz")  # Linear(12, 4) vs Linear(27, 4)
    with pytest.raises(ValueError, match="4.weight"):
        model.load(tmp_path / "shape.npz")

    state = model.state_dict()
    del state["0.bias"]
    state["9.weight"] = np.zeros(1, np.float32)
    np.savez(tmp_path / "names.npz", **state)
    with pytest.raises(ValueError, match=r"missing \['0.bias'\], unexpected \['9.weight'\]"):
        model.load(tmp_path / "names.npz")

    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="npz"):
        model.load(tmp_path / "single.npy")

    for p, b in zip(model.parameters(), before):  # nothing was changed by the failed loads
        assert p.data.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- Module protocol


def test_layers_share_the_module_protocol():
    assert nn.Conv2D is cc.Conv2D
    for layer in (cc.Conv2D(1, 2, 3), nn.MaxPool2D(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3), nn.Sequential()):
        assert isinstance(layer, nn.Module)
    assert nn.ReLU().parameters() == []
    with pytest.raises(TypeError, match="layer 1"):
        nn.Sequential(nn.ReLU(), object())


def test_errors():
    with pytest.raises(TypeError, match="narrowed"):
        nn.Linear(2, 3).forward(np.zeros((1, 2), np.float64))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        nn.Linear(2, 3).forward(np.zeros((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        nn.Linear(2, 3).backward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        relu = nn.ReLU()
        relu.forward(np.zeros((2, 3)))
        relu.backward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        nn.SoftmaxCrossEntropy("none")


# ------------------------------------------------------------------------------ training run


def synthetic_digits(n, rng):
    """Four classes of 8x8 images (a bar: horizontal, vertical, diagonal, anti-diagonal) with noise."""
    templates = np.zeros((4, 8, 8), np.float32)
    templates[0, 3:5, 1:7] = 1
    templates[1, 1:7, 3:5] = 1
    templates[2][np.arange(1, 7), np.arange(1, 7)] = 1
    templates[3][np.arange(1, 7), np.arange(6, 0, -1)] = 1
    labels = rng.integers(0, 4, size=n)
    shifts = rng.integers(-1, 2, size=(n, 2))
    images = np.stack([np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
    images += 0.4 * rng.standard_normal(images.shape).astype(np.float32)
    return images[:, None], labels


def test_short_training_run_learns():
    rng = np.random.default_rng(6)
    x, labels = synthetic_digits(600, rng)
    x_train, y_train, x_test, y_test = x[:480], labels[:480], x[480:], labels[480:]
    model = nn.Sequential(
        nn.Conv2D(1, 8, 3, padding=1, activation="relu", seed=1), nn.MaxPool2D(2),
        nn.Conv2D(8, 16, 3, padding=1, activation="relu", seed=2), nn.MaxPool2D(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 4, seed=3),
    )
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = cc.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = loss_fn.forward(model.forward(x_test), y_test)
    losses = []
    for step in range(300):
        batch = rng.integers(0, len(x_train), size=16)
        losses.append(nn.train_step(model, loss_fn, opt, x_train[batch], y_train[batch], micro_batches=1 + step % 2)[0])
    last = loss_fn.forward(model.forward(x_test), y_test)
    accuracy = np.mean(model.forward(x_test).argmax(1) == y_test)
    assert np.mean(losses[-50:]) < 0.25 * np.mean(losses[:20])
    assert last < 0.25 * first
    assert accuracy >= 0.9  # chance is 0.25
