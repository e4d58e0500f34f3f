"""Processes forked after convcore ran its threads compute correctly instead of hanging.

GNU libgomp's thread pool does not survive ``fork``: a child's first parallel region would wait
forever for threads that no longer exist. convcore's native fork handler makes such a child run
on one thread, and the Python module warns once, in the child. Every case runs in its own
process group under a time limit, so a hang fails the test instead of blocking the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convcore as cc
from convcore import reference as ref

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

LIMIT_S = 120
WARNING = "convcore: this process was forked after convcore had started its OpenMP threads"

# Imported by the children of every start method (spawn and forkserver re-import it by path).
SCRIPT = textwrap.dedent('''
    import multiprocessing as mp
    import os
    import sys

    import numpy as np

    import convcore as cc


    def problem():
        rng = np.random.default_rng(0)
        return rng.standard_normal((8, 16, 24, 24)), rng.standard_normal((32, 16, 3, 3))


    def work(_):
        x, w = problem()  # large enough for a team of threads
        return cc.conv2d(x, w, padding=1), cc.get_num_threads()


    def main(how, warm):
        parent = work(0)[0] if warm else None  # `warm`: convcore ran a team before the fork
        if how == "os.fork":
            pid = os.fork()
            if pid == 0:
                y, threads = work(0)
                np.save(sys.argv[3], y)
                print("child threads", threads, flush=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            results = [(np.load(sys.argv[3]), None)]
        else:
            with mp.get_context(how).Pool(2) as pool:
                results = pool.map_async(work, range(4)).get(timeout=60)
            for _, threads in results:
                print("child threads", threads, flush=True)
        for y, _ in results:
            if parent is not None:
                assert y.tobytes() == parent.tobytes()
        np.save(sys.argv[3], results[0][0])
        print("parent threads", cc.get_num_threads(), flush=True)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2] == "warm")
''')


def _run(tmp_path, how: str, warm: bool) -> subprocess.CompletedProcess:
    script = tmp_path / "forked.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "y.npy"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.Popen([sys.executable, str(script), how, "warm" if warm else "cold", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and any hung child
        proc.communicate()
        pytest.fail(f"{how} ({'warm' if warm else 'cold'}): no result after {LIMIT_S} s, a child hangs")
    assert proc.returncode == 0, stderr
    # What every child computed equals the reference (the parent checked they agree bitwise).
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 16, 24, 24)), rng.standard_normal((32, 16, 3, 3))
    np.testing.assert_allclose(np.load(out), ref.conv2d_forward(x, w, pads=1), rtol=1e-12, atol=1e-12)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _threads(stdout: str, who: str):
    return [int(line.split()[-1]) for line in stdout.splitlines() if line.startswith(f"{who} threads")]


def _libgomp() -> bool:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return any(i["user_api"] == "openmp" and "libgomp" in os.path.basename(i["filepath"])
               for i in threadpoolctl.threadpool_info())


@pytest.mark.parametrize("how", ["os.fork", "fork"])
def test_child_forked_after_threads_runs_on_one_thread(tmp_path, how):
    run = _run(tmp_path, how, warm=True)
    children, (parent,) = _threads(run.stdout, "child"), _threads(run.stdout, "parent")
    assert children
    if cc.has_openmp and _libgomp() and parent > 1:
        assert children == [1] * len(children)
        assert run.stderr.count(WARNING) == (1 if how == "os.fork" else 2)  # once per child
        assert "spawn" in run.stderr and "forkserver" in run.stderr  # what to do instead


@pytest.mark.parametrize("how", ["os.fork", "fork"])
def test_child_forked_before_threads_keeps_them(tmp_path, how):
    run = _run(tmp_path, how, warm=False)
    assert set(_threads(run.stdout, "child")) == set(_threads(run.stdout, "parent"))
    assert WARNING not in run.stderr


@pytest.mark.parametrize("how", ["forkserver", "spawn"])
def test_fresh_workers_keep_their_threads(tmp_path, how):
    run = _run(tmp_path, how, warm=True)
    assert set(_threads(run.stdout, "child")) == set(_threads(run.stdout, "parent"))
    assert WARNING not in run.stderr
