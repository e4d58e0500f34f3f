"""Adam, AdamW and SGD(nesterov=True): native updates against a NumPy float64 formula written
here and against torch.optim (when installed); optimiser state_dict round trips."""

import numpy as np
import pytest

import convcore as cc


def _params(dtype, seed=0, shapes=((3, 4), (5,))):
    rng = np.random.default_rng(seed)
    return [cc.Parameter(rng.standard_normal(s).astype(dtype), decay=True, name=f"p{i}")
            for i, s in enumerate(shapes)]


def _grads(step, shapes=((3, 4), (5,))):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in shapes]


def _adam_reference(values, grads_per_step, lr, b1, b2, eps, wd, decoupled):
    """Adam / AdamW in float64, as the papers and torch.optim write them (bias-corrected moments,
    eps added outside the square root)."""
    p = [v.astype(np.float64) for v in values]
    m = [np.zeros_like(v) for v in p]
    v2 = [np.zeros_like(v) for v in p]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            if decoupled:
                p[i] = p[i] * (1 - lr * wd)
            else:
                g = g + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v2[i] = b2 * v2[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1**t), v2[i] / (1 - b2**t)
            p[i] = p[i] - lr * mhat / (np.sqrt(vhat) + eps)
    return p, m, v2


def _run(opt, params, steps):
    for t in range(steps):
        for p, g in zip(params, _grads(t)):
            p.grad[...] = g
        opt.step()


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("cls,decoupled", [(cc.Adam, False), (cc.AdamW, True)])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_matches_the_float64_formula(cls, decoupled, wd, dtype, tol):
    params = _params(dtype)
    start = [p.data.copy() for p in params]
    opt = cls(params, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    _run(opt, params, 5)
    want_p, want_m, want_v = _adam_reference(start, [_grads(t) for t in range(5)], 0.01, 0.8, 0.95, 1e-6,
                                             wd, decoupled)
    for p, st, wp, wm, wv in zip(params, opt.state, want_p, want_m, want_v):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, wp, rtol=tol, atol=tol)
        np.testing.assert_allclose(st["exp_avg"], wm, rtol=tol, atol=tol)
        np.testing.assert_allclose(st["exp_avg_sq"], wv, rtol=tol, atol=tol)
        assert st["step"] == 5


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_nesterov_matches_the_float64_formula(dtype, tol):
    params = _params(dtype)
    p64 = [p.data.astype(np.float64) for p in params]
    v = [np.zeros_like(p) for p in p64]
    opt = cc.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)
    _run(opt, params, 4)
    for t in range(4):
        for i, g in enumerate(_grads(t)):
            d = g + 0.01 * p64[i]
            v[i] = 0.9 * v[i] + d
            p64[i] = p64[i] - 0.05 * (d + 0.9 * v[i])
    for p, want, vel in zip(params, p64, v):
        np.testing.assert_allclose(p.data, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(p.velocity, vel, rtol=tol, atol=tol)


def test_weight_decay_skips_parameters_without_decay():
    p = cc.Parameter(np.ones(3), decay=False)
    opt = cc.AdamW([p], lr=0.1, weight_decay=0.5)
    opt.step()  # zero gradient: m = v = 0, so only decay could move p
    np.testing.assert_array_equal(p.data, np.ones(3))


# ---------------------------------------------------------------------------------- torch.optim


@pytest.mark.parametrize("name", ["adam", "adamw", "nesterov", "sgd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimisers_match_torch_optim(name, dtype):
    torch = pytest.importorskip("torch")
    params = _params(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    kw = dict(lr=0.01, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.03)
    ours, theirs = {
        "adam": (lambda: cc.Adam(params, **kw), lambda: torch.optim.Adam(tparams, **kw)),
        "adamw": (lambda: cc.AdamW(params, **kw), lambda: torch.optim.AdamW(tparams, **kw)),
        "nesterov": (lambda: cc.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
                     lambda: torch.optim.SGD(tparams, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)),
        "sgd": (lambda: cc.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01),
                lambda: torch.optim.SGD(tparams, lr=0.05, momentum=0.9, weight_decay=0.01)),
    }[name]
    opt, topt = ours(), theirs()
    for t in range(6):
        grads = _grads(t)
        for p, tp, g in zip(params, tparams, grads):
            p.grad[...] = g
            tp.grad = torch.tensor(g.astype(dtype))
        opt.step()
        topt.step()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------- state_dict


@pytest.mark.parametrize("make", [
    lambda ps: cc.Adam(ps, lr=0.01, weight_decay=0.1),
    lambda ps: cc.AdamW(ps, lr=0.01),
    lambda ps: cc.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
])
def test_optimiser_state_dict_round_trip_continues_identically(make):
    a = _params(np.float32)
    opt_a = make(a)
    _run(opt_a, a, 3)
    sd = opt_a.state_dict()
    saved = {k: np.copy(v) for k, v in sd["state"][0].items()}
    b = [cc.Parameter(p.data.copy(), name=p.name) for p in a]
    opt_b = make(b)
    opt_b.load_state_dict(sd)
    for t in range(3, 6):  # both continue from the same state: bit-identical results
        for pa, pb, g in zip(a, b, _grads(t)):
            pa.grad[...] = g
            pb.grad[...] = g
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)
    # the dict holds copies: later steps did not change it
    for k, v in saved.items():
        np.testing.assert_array_equal(sd["state"][0][k], v)


def test_optimiser_load_state_dict_refuses_mismatches():
    ps = _params(np.float32)
    opt = cc.Adam(ps)
    _run(opt, ps, 1)
    sd = opt.state_dict()
    other = cc.Adam(_params(np.float64))
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] is float32 \(3, 4\), expected float64 \(3, 4\)"):
        other.load_state_dict(sd)
    assert other.state == [{}, {}]  # nothing changed
    bad = {"state": {0: {"step": 1, "exp_avg": np.zeros((3, 4), np.float32)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="state index 7"):
        opt.load_state_dict({"state": {7: sd["state"][0]}, "param_groups": sd["param_groups"]})
    with pytest.raises(ValueError, match="param group"):
        cc.SGD(ps, lr=0.1).load_state_dict(sd)


def test_optimiser_argument_errors():
    ps = _params(np.float32)
    with pytest.raises(ValueError, match="nesterov: Nesterov momentum requires momentum > 0"):
        cc.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"beta2: must be in \[0, 1\.0\), got 1"):
        cc.Adam(ps, betas=(0.9, 1))
    with pytest.raises(ValueError, match="lr: must be finite and >= 0"):
        cc.AdamW(ps, lr=-1)
    with pytest.raises(ValueError, match="betas: expected a pair"):
        cc.Adam(ps, betas=0.9)
    with pytest.raises(TypeError, match="params: expected Parameter"):
        cc.Adam([np.zeros(3)])
