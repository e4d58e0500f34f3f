"""convcore.distributed: the sampler and the single-rank API in this process, and real multi-rank
runs launched with ``mpiexec -n 2`` / ``-n 3`` in subprocesses with a time limit (the programs are
in mpi_worker.py). Every multi-rank result is compared with a single-process run made in the same
test, never with stored numbers.

Skipped when mpi4py or mpiexec is missing, unless CONVCORE_REQUIRE_MPI=1 (CI sets it), which
turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convcore
from convcore import nn

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"
TIME_LIMIT_S = 180
REQUIRED = os.environ.get("CONVCORE_REQUIRE_MPI") == "1"


def _mpiexec():
    """The launcher next to this Python (the mpich wheel installs it there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _need_mpi():
    missing = [what for what, ok in (("mpi4py", importlib.util.find_spec("mpi4py") is not None),
                                     ("mpiexec", _mpiexec() is not None)) if not ok]
    if missing:
        msg = f"{' and '.join(missing)} not installed (pip install \"convcore[mpi]\")"
        if REQUIRED:
            pytest.fail(f"CONVCORE_REQUIRE_MPI=1 but {msg}")
        pytest.skip(msg)


@pytest.fixture
def dist():
    _need_mpi()
    import convcore.distributed as d

    return d


def run_mpi(n: int, *args, cwd=None) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...``; a run past the time limit is killed (with its whole
    process group) and fails the test as a hang."""
    _need_mpi()
    cmd = [_mpiexec(), "-n", str(n), sys.executable, *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung (killed after {TIME_LIMIT_S} s)\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def worker(n: int, scenario: str, out: Path, *options) -> subprocess.CompletedProcess:
    result = run_mpi(n, WORKER, scenario, out, *options)
    return result


def load(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# ------------------------------------------------------------------------- without the extra


def test_import_error_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import convcore\n"
            "try:\n    import convcore.distributed\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError: convcore.distributed needs mpi4py"), out.stdout
    assert 'pip install "convcore[mpi]"' in out.stdout


def test_convcore_itself_does_not_load_mpi():
    code = "import sys, convcore, convcore.nn, convcore.demo; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ----------------------------------------------------------------------- sampler (one process)


@pytest.mark.parametrize("n", [0, 1, 7, 32, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sampler_shares_are_disjoint_and_cover(dist, n, world):
    samplers = [dist.DistributedSampler(n, seed=5, rank=r, world_size=world) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    shares = [list(s) for s in samplers]
    assert sorted(i for share in shares for i in share) == list(range(n))
    assert [len(share) for share in shares] == [len(s) for s in samplers]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    # Batches: every rank the same number of steps; together exactly the global batches in order.
    order = samplers[0].order()
    steps = [list(s.batches(8)) for s in samplers]
    assert {len(st) for st in steps} == {-(-n // 8)}
    for k in range(len(steps[0])):
        joined = np.concatenate([st[k] for st in steps])
        np.testing.assert_array_equal(joined, order[8 * k:8 * (k + 1)])
        assert max(len(st[k]) for st in steps) - min(len(st[k]) for st in steps) <= 1


def test_sampler_epochs_and_seeds(dist):
    s = dist.DistributedSampler(50, seed=1, rank=0, world_size=1)
    first = s.order()
    s.set_epoch(1)
    assert not np.array_equal(s.order(), first)
    assert sorted(s.order()) == list(range(50))
    s.set_epoch(0)
    np.testing.assert_array_equal(s.order(), first)
    np.testing.assert_array_equal(dist.DistributedSampler(50, seed=1, rank=0, world_size=1).order(), first)
    assert not np.array_equal(dist.DistributedSampler(50, seed=2, rank=0, world_size=1).order(), first)
    np.testing.assert_array_equal(dist.DistributedSampler(50, shuffle=False, rank=0, world_size=1).order(),
                                  np.arange(50))


def test_shard_splits_like_micro_batches(dist):
    batch = np.arange(10) * 3
    shares = [dist.shard(batch, r, 4) for r in range(4)]
    assert [s.tolist() for s in shares] == [[0, 3, 6], [9, 12, 15], [18, 21], [24, 27]]
    assert [len(dist.shard(np.arange(2), r, 3)) for r in range(3)] == [1, 1, 0]


def test_sampler_and_shard_errors(dist):
    with pytest.raises(ValueError, match="n: expected"):
        dist.DistributedSampler(-1)
    with pytest.raises(ValueError, match="rank"):
        dist.DistributedSampler(10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        next(dist.DistributedSampler(10).batches(0))
    with pytest.raises(ValueError, match="rank, world_size"):
        dist.shard(np.arange(4), 3, 3)


# -------------------------------------------------------------------- the API on one rank


def small_model(seed=0):
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding=1, activation="relu", seed=seed), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10, seed=seed + 1))


def test_one_rank_takes_the_plain_step(dist):
    rng = np.random.default_rng(0)
    x, y = rng.random((12, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 12)
    plain, wrapped = small_model(), small_model()
    sgd = convcore.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    opt = dist.DistributedOptimizer(convcore.SGD(wrapped.parameters(), lr=0.1, momentum=0.9), wrapped,
                                    overlap=True, bucket_bytes=64, backward_passes_per_step=3)
    assert dist.world_size() == 1 and dist.is_main() and dist.rank() == 0
    assert len(opt.buckets) == 4  # bucket_bytes=64: each tensor alone, in backward order
    assert opt.buckets[0].params[0] is wrapped[3].bias_param
    for _ in range(3):
        expected = nn.train_step(plain, nn.SoftmaxCrossEntropy(), sgd, x, y, micro_batches=3)
        got = nn.train_step(wrapped, nn.SoftmaxCrossEntropy(), opt, x, y, micro_batches=3)
        assert got[1] == expected[1]
    # One rank: the gradient is scaled by its 12 samples and divided by 12 again.
    for a, b in zip(plain.parameters(), wrapped.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-6, atol=1e-7)
    opt.close()
    assert "backward" not in vars(wrapped) and "backward" not in vars(wrapped[0])


def test_allreduce_on_one_rank_is_the_identity(dist):
    a = np.arange(5, dtype=np.float32).reshape(5, 1)
    np.testing.assert_array_equal(dist.allreduce(a), a)
    np.testing.assert_array_equal(dist.allreduce(a, average=True), a)
    model = small_model()
    for p in model.parameters():
        p.grad[...] = 2.5
    dist.allreduce_gradients(model)
    assert all((p.grad == 2.5).all() for p in model.parameters())
    dist.allreduce_gradients(model, average=True, samples=3)
    assert all((p.grad == 2.5).all() for p in model.parameters())


def test_api_errors(dist):
    model = small_model()
    sgd = convcore.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        dist.DistributedOptimizer(object(), model)
    with pytest.raises(TypeError, match="model"):
        dist.DistributedOptimizer(sgd, object())
    with pytest.raises(ValueError, match="bucket_bytes"):
        dist.DistributedOptimizer(sgd, model, bucket_bytes=0)
    with pytest.raises(ValueError, match="backward_passes_per_step"):
        dist.DistributedOptimizer(sgd, model, backward_passes_per_step=0)
    with pytest.raises(ValueError, match="not the model's"):
        dist.DistributedOptimizer(convcore.SGD(small_model().parameters(), lr=0.1), model)
    with pytest.raises(ValueError, match="samples"):
        dist.allreduce_gradients(model, average=False, samples=2)
    with pytest.raises(ValueError, match="root"):
        dist.broadcast_parameters(model, root=1)
    x, y = np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="DistributedOptimizer"):
        dist.train_step(model, nn.SoftmaxCrossEntropy(), sgd, x, y)
    opt = dist.DistributedOptimizer(sgd, model, overlap=True)
    with pytest.raises(RuntimeError, match="no rank ran model.backward"):
        opt.step()
    with pytest.raises(RuntimeError, match="backward_passes_per_step=1"):
        nn.train_step(model, nn.SoftmaxCrossEntropy(), opt, x, y, micro_batches=2)
    with pytest.raises(RuntimeError, match="call step"):
        opt.close()
    opt.step()
    opt.close()


# ---------------------------------------------------------------------------- several ranks


def check_equivalence(out: Path, ranks: int, tol: float) -> float:
    """Every rank holds the same bits; they match the single-process run to ``tol`` (relative to
    the largest parameter). Returns the largest difference."""
    dist_runs = [load(out / f"rank{r}.npz") for r in range(ranks)]
    single = load(out / "single.npz")
    for other in dist_runs[1:]:
        for k in single:
            np.testing.assert_array_equal(other[k], dist_runs[0][k], err_msg=f"{k} differs between ranks")
    names = [k for k in single if k != "losses"]
    scale = max(float(np.abs(single[k]).max()) for k in names)
    diff = max(float(np.abs(dist_runs[0][k] - single[k]).max()) for k in names)
    assert diff <= tol * scale, (diff, scale)
    np.testing.assert_allclose(dist_runs[0]["losses"], single["losses"], rtol=tol, atol=tol)
    return diff


@pytest.mark.parametrize("ranks, options", [
    pytest.param(2, (), id="n2"),
    pytest.param(3, ("--n", 100, "--batch", 16), id="n3-uneven"),         # shares 6/5/5, last 2/1/1
    pytest.param(3, ("--n", 49, "--batch", 16), id="n3-empty-share"),     # last batch 1: shares 1/0/0
    pytest.param(3, ("--overlap", "--bucket-bytes", 2000, "--micro", 2, "--batch", 17), id="n3-overlap"),
    pytest.param(2, ("--dtype", "float64", "--overlap", "--bucket-bytes", 3000), id="n2-float64"),
])
def test_ranks_take_the_single_process_step(tmp_path, ranks, options):
    result = worker(ranks, "equivalence", tmp_path, *options)
    assert result.returncode == 0, result.stderr
    float64 = "float64" in options
    check_equivalence(tmp_path, ranks, 1e-12 if float64 else 1e-5)
    if "--bucket-bytes" in options:
        assert int(load(tmp_path / "rank0.npz")["buckets"]) > 1


def test_bitwise_repeatable(tmp_path):
    options = ("--overlap", "--bucket-bytes", 2000, "--batch", 17, "--epochs", 3)
    runs = []
    for i in range(2):
        out = tmp_path / str(i)
        out.mkdir()
        result = worker(3, "equivalence", out, *options)
        assert result.returncode == 0, result.stderr
        runs.append(load(out / "rank0.npz"))
    for k in runs[0]:
        assert runs[0][k].tobytes() == runs[1][k].tobytes(), k


def test_allreduce_values(tmp_path):
    result = worker(3, "allreduce", tmp_path)
    assert result.returncode == 0, result.stderr
    got = load(tmp_path / "allreduce.npz")
    a = np.arange(7, dtype=np.float64)
    np.testing.assert_array_equal(got["total"], a * (1 + 2 + 3))
    np.testing.assert_array_equal(got["mean"], a * 2)
    np.testing.assert_array_equal(got["ints"], [[0 + 1 + 2, 3]])
    np.testing.assert_array_equal(got["summed"], np.full((2, 3), 6, np.float32))
    np.testing.assert_allclose(got["weighted"], np.full((2, 3), (1 + 4 + 9) / 6), rtol=1e-6)


def test_differing_networks_are_refused_at_broadcast(tmp_path):
    result = worker(3, "mismatch", tmp_path)
    both = (result.stdout, result.stderr)
    assert result.returncode != 0, both
    assert "broadcast returned" not in result.stdout, both
    assert re.search(r"broadcast_parameters: parameter '0\.weight' is float32 \(8, 1, 3, 3\) on rank 1 "
                     r"but parameter '0\.weight' is float32 \(16, 1, 3, 3\) on rank 0", result.stderr), both
    assert "aborting all 3 ranks" in result.stderr, both


def test_a_failing_rank_stops_every_rank(tmp_path):
    result = worker(3, "raises", tmp_path)
    both = (result.stdout, result.stderr)
    assert result.returncode != 0, both
    assert "training finished" not in result.stdout, both
    assert "rank 1 of 3 failed with RuntimeError: injected failure on rank 1" in result.stderr, both
    assert "aborting all 3 ranks" in result.stderr, both


def test_an_exiting_rank_stops_every_rank(tmp_path):
    result = worker(3, "exits", tmp_path)
    both = (result.stdout, result.stderr)
    assert result.returncode != 0, both
    assert "allreduce returned" not in result.stdout, both
    assert "rank 1 of 3 failed with SystemExit: 3" in result.stderr, both


def test_distributed_demo_matches_one_process(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    from convcore import demo

    common = ["--epochs", "3", "--limit", "400", "--no-progress", "--save", "--threads", "1"]
    # One process splitting each batch as the two ranks do: the same sum of the same two halves.
    # (Against the unsplit batch the difference is rounding too, but over many steps a rounding
    # difference can flip a max-pooling or ReLU decision; see docs/distributed.md.)
    single = subprocess.run([sys.executable, "-m", "convcore", "demo", *common, "--micro-batches", "2",
                             "--out", tmp_path / "one"], capture_output=True, text=True, timeout=TIME_LIMIT_S)
    assert single.returncode == 0, single.stderr
    result = run_mpi(2, "-m", "convcore", "demo", "--distributed", *common, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr
    # Rank 0 alone prints: one header, one result line.
    assert result.stdout.count("digits: ") == 1 and result.stdout.count("test accuracy") == 1, result.stdout
    assert "x 2 rank(s)" in result.stdout
    accuracy = re.compile(r"test accuracy (\d+\.\d)% \(80 images\)")
    assert accuracy.search(result.stdout).group(1) == accuracy.search(single.stdout).group(1)
    one, two = load(tmp_path / "one" / demo.MODEL_FILE), load(tmp_path / "two" / demo.MODEL_FILE)
    assert one.keys() == two.keys()
    diff = max(float(np.abs(one[k] - two[k]).max()) for k in one)
    assert diff < 1e-5, diff


def test_distributed_demo_without_mpi4py_says_what_to_install(capsys, monkeypatch):
    from convcore.__main__ import main as cli_main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.delitem(sys.modules, "convcore.distributed", raising=False)
    assert cli_main(["demo", "--distributed", "--epochs", "1"]) == 2
    assert 'pip install "convcore[mpi]"' in capsys.readouterr().err


def test_example_prints_the_same_on_one_and_three_ranks():
    pytest.importorskip("sklearn")
    example = HERE.parent / "examples" / "distributed_train.py"
    outputs = {}
    for n in (1, 3):
        result = run_mpi(n, example)
        assert result.returncode == 0, result.stderr
        outputs[n] = result.stdout.replace(f"({n} rank(s))", "(N rank(s))")
    assert outputs[1] == outputs[3]
    assert re.fullmatch(r"(epoch \d: accuracy on all 1797 digits \d+\.\d\d% \(N rank\(s\)\)\n){3}", outputs[1])
