"""Smoke test of the benchmark: a minimal run completes and writes the documented JSON."""

import json
import math

import numpy as np
import pytest

bench = pytest.importorskip("convcore.bench")

OPS = ("fwd", "bwd_input", "bwd_weight", "total")


def run(tmp_path, *extra):
    path = tmp_path / "bench.json"
    argv = ["--quick", "--repeat", "1", "--min-time", "0.001", "--threads", "1", "--shapes", "tiny",
            "--no-torch-heap-reuse", "--quiet", "--json", str(path), *extra]
    assert bench.main(argv) == 0
    return json.loads(path.read_text())


def check_times(case, lib):
    for op in OPS:
        entry = case["libs"][lib][op]
        assert math.isfinite(entry["ms"])
        assert entry["ms"] > 0
        assert entry["gflops"] > 0


def test_json_keys_and_positive_times(tmp_path):
    data = run(tmp_path, "--no-torch")
    assert {"schema", "date", "machine", "settings", "peak", "cases", "summary"} <= data.keys()
    assert {"cpu_model", "threads", "numpy", "convcore"} <= data["machine"].keys()
    assert data["machine"]["convcore"]["num_threads"] >= 1
    assert data["peak"]["blas"]["float32"] > 0
    assert {"gflops", "register_gflops"} <= data["peak"]["measured"]["float32"].keys()
    [case] = data["cases"]
    assert (case["shape"], case["dtype"]) == ("tiny", "float32")
    assert case["flops"]["fwd"] == 2 * 1 * 1 * 3 * 3 * 1 * 3 * 3
    for lib in ("convcore", "numpy"):
        check_times(case, lib)
    assert all(c["ok"] for c in case["check"].values())
    assert case["overhead_us"]["convcore"]["fwd"] > 0
    assert case["overhead_us"]["convcore"]["fwd_bwd"] > 0


def test_with_torch(tmp_path):
    pytest.importorskip("torch")
    data = run(tmp_path, "--no-numpy")
    [case] = data["cases"]
    check_times(case, "convcore")
    check_times(case, "torch")
    assert case["check"]["convcore/fwd"]["ok"]
    assert data["summary"]["geomean_torch_over_convcore_total"]["all"] > 0


def test_numpy_baseline_agrees_with_convcore():
    import convcore as cc

    shapes = (bench.Shape("strided", 2, 4, 9, 8, 6, 3, 2, 1), bench.Shape("grouped", 2, 4, 7, 7, 8, 3, 1, 1, groups=4))
    for shape in shapes:
        x, w, b, dy = bench.make_inputs(shape, "float64")
        base = bench.NumpyConv(shape, x, w, b, dy)
        kw = {"stride": shape.stride, "padding": shape.pad, "groups": shape.groups}
        np.testing.assert_allclose(base.fwd(), cc.conv2d(x, w, b, **kw), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(base.bwd_input(), cc.conv2d_input(x.shape, w, dy, **kw), rtol=1e-10, atol=1e-10)
        dw, db = base.bwd_weight()
        np.testing.assert_allclose(dw, cc.conv2d_weight(x, w.shape, dy, **kw), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(db, cc.conv2d_bias(dy), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------ --network


def run_network(tmp_path, *extra, name="digits"):
    path = tmp_path / "network.json"
    code = bench.main(["--network", name, "--repeat", "1", "--steps", "1", "--threads", "1", "--quiet",
                       "--json", str(path), *extra])
    return code, json.loads(path.read_text())


def test_network_without_torch(tmp_path):
    code, data = run_network(tmp_path, "--no-torch", "--user-matmul")
    assert code == 0
    [r] = data["networks"]
    assert set(r["ms_per_step"]) == {"convcore", "convcore+np.matmul"}
    assert all(v > 0 for v in r["ms_per_step"].values())
    assert r["check"] is None


@pytest.mark.parametrize("name", ["lenet-cifar", "resnet8"])
def test_network_torch_twin_computes_the_same_network(name):
    torch = pytest.importorskip("torch")
    from convcore.bench import network

    net = network.NETWORKS[name]
    model = network.build_convcore(net)
    x, _ = network.make_batch(net)
    with torch.no_grad():
        theirs = network.build_torch(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), theirs, rtol=1e-4, atol=1e-5)


def test_network_with_torch_checks_the_losses(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    code, data = run_network(tmp_path, "--user-matmul")
    assert code == 0
    [r] = data["networks"]
    assert r["check"]["ok"] and r["check"]["max_rel"] <= 1e-4
    assert len(r["check"]["torch"]) == 5 and r["speedup"]["convcore"] > 0
    # A twin that is not the same network is caught before anything is timed.
    from convcore.bench import network

    real = network.build_torch

    def off_by_a_little(model):
        t = real(model)
        with torch.no_grad():
            t[0].weight.mul_(1.01)
        return t

    monkeypatch.setattr(network, "build_torch", off_by_a_little)
    code, data = run_network(tmp_path)
    assert code == 1
    assert not data["networks"][0]["check"]["ok"]
    assert "ms_per_step" not in data["networks"][0]


def test_resnet8_losses_agree_with_torch(tmp_path):
    pytest.importorskip("torch")
    code, data = run_network(tmp_path, name="resnet8")
    assert code == 0
    [r] = data["networks"]
    assert r["check"]["ok"] and r["check"]["max_rel"] <= 1e-4
    assert "Residual" not in r["description"] and "stem Conv 3->16" in r["description"]


def test_register_fma_probe():
    """The register-only FMA probe: a positive rate on a SIMD path, 0.0 on the portable one (which
    has no probe), and clear errors for bad arguments."""
    import convcore as cc

    isa = cc._core.isa()
    for dt in ("float32", "float64"):
        rate = cc._core.register_peak_gflops(dt, 0.01)
        assert math.isfinite(rate)
        assert (rate > 0) == (isa != "generic")
    with pytest.raises(ValueError, match="seconds"):
        cc._core.register_peak_gflops("float32", 0.0)
    with pytest.raises(ValueError, match="dtype"):
        cc._core.register_peak_gflops("float16", 0.1)


def test_register_probe_is_zero_on_the_portable_path():
    import subprocess
    import sys

    code = "import convcore as cc; print(cc._core.isa(), cc._core.register_peak_gflops('float32', 0.01))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "CONVCORE_ISA": "generic"}).stdout.split()
    assert out == ["generic", "0.0"]
