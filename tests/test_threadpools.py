"""convcore's thread count follows OpenMP's setting call by call (threadpoolctl, omp_set_num_threads,
torch.set_num_threads), unless ``set_num_threads(n)`` fixes it; ``set_num_threads(None)`` lifts that."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convcore as cc

threadpoolctl = pytest.importorskip("threadpoolctl")

needs_openmp = pytest.mark.skipif(not cc.has_openmp, reason="built without OpenMP: always one thread")


@pytest.fixture(autouse=True)
def follow_openmp():
    """Each test starts and ends with no fixed count."""
    cc.set_num_threads(None)
    yield
    cc.set_num_threads(None)


@needs_openmp
def test_threadpool_limits_apply_inside_the_block_and_end_with_it():
    before = cc.get_num_threads()
    cc.conv2d(np.ones((2, 3, 9, 9)), np.ones((4, 3, 3, 3)))  # used before the block: limits still apply
    with threadpoolctl.threadpool_limits(3, user_api="openmp"):
        assert cc.get_num_threads() == 3
        with threadpoolctl.threadpool_limits(1):
            assert cc.get_num_threads() == 1
            with threadpoolctl.threadpool_limits(2, user_api="openmp"):
                assert cc.get_num_threads() == 2
            assert cc.get_num_threads() == 1
        assert cc.get_num_threads() == 3
    assert cc.get_num_threads() == before


@needs_openmp
def test_set_num_threads_overrides_until_lifted():
    default = cc.get_num_threads()
    cc.set_num_threads(3)
    assert cc.get_num_threads() == 3
    with threadpoolctl.threadpool_limits(1):
        assert cc.get_num_threads() == 3  # an explicit count wins over OpenMP's setting
        cc.set_num_threads(None)
        assert cc.get_num_threads() == 1  # lifted: OpenMP's setting applies again
        cc.set_num_threads(5)
        cc.set_num_threads(0)  # 0 lifts it too
        assert cc.get_num_threads() == 1
    assert cc.get_num_threads() == default


def test_set_num_threads_rejects_bad_counts():
    with pytest.raises(ValueError, match="set_num_threads: n must be >= 1 .*got -1"):
        cc.set_num_threads(-1)
    with pytest.raises(TypeError):
        cc.set_num_threads(1.5)
    with pytest.raises(TypeError):
        cc.set_num_threads("2")


def test_results_do_not_depend_on_the_limit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 20, 20))
    w = rng.standard_normal((16, 8, 3, 3))
    free = cc.conv2d(x, w, padding=1)
    with threadpoolctl.threadpool_limits(1):
        limited = cc.conv2d(x, w, padding=1)
    assert limited.tobytes() == free.tobytes()


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})


@needs_openmp
def test_threads_are_started_only_when_the_limit_allows():
    # In a fresh process the number of OS threads shows whether OpenMP started a team: none
    # under threadpool_limits(1), even for convcore's first call, and a team after the block.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpus or 1) < 2:
        pytest.skip("one CPU: OpenMP's default is one thread")
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc/self/task to count threads with")
    run = _run("""
        import os
        import numpy as np
        import threadpoolctl
        import convcore as cc

        def threads():
            return len(os.listdir("/proc/self/task"))

        x = np.ones((16, 16, 32, 32)); w = np.ones((32, 16, 3, 3))
        start = threads()
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            cc.conv2d(x, w)
            inside = threads()
        cc.conv2d(x, w)
        print(start, inside, threads())
    """)
    assert run.returncode == 0, run.stderr
    start, inside, after = map(int, run.stdout.split())
    assert inside == start
    assert after > start


torch_parity = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0,
    reason="torch is not installed",
)


@needs_openmp
@torch_parity
def test_torch_set_num_threads_before_the_first_call_is_not_kept():
    run = _run("""
        import numpy as np
        import torch
        import convcore as cc

        before = cc.get_num_threads()
        torch_before = torch.get_num_threads()
        torch.set_num_threads(1)
        cc.conv2d(np.ones((2, 3, 9, 9)), np.ones((4, 3, 3, 3)))  # convcore's first call
        torch.set_num_threads(torch_before)
        print(before, cc.get_num_threads())
    """)
    assert run.returncode == 0, run.stderr
    before, after = map(int, run.stdout.split())
    assert after == before
