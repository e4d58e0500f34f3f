"""Benchmark: convcore against PyTorch and a plain NumPy im2col + matmul baseline.

Run it as ``python -m convcore bench [options]`` or ``python benchmarks/bench_conv.py [options]``;
``--help`` lists the options and ``benchmarks/README.md`` explains how to read the output.

For every shape of the suite and every dtype, the three libraries are timed in the same process,
at the same thread count, interleaved (convcore, torch, numpy, convcore, torch, ...), after a
warm-up and a check that they agree. Each sample runs enough calls to last ``--min-time``; the
figure reported is the median of ``--repeat`` samples. Ops:

- ``fwd``: ``y = conv2d(x, w, b)``
- ``bwd_input``: ``dx`` from ``dy`` (convcore ``conv2d_input``, torch ``convolution_backward``
  with output mask ``[True, False, False]``)
- ``bwd_weight``: ``dw`` and ``db`` from ``x`` and ``dy`` (mask ``[False, True, True]``)
- ``total``: the sum of the three medians

GFLOP/s count useful work only: ``2*mb*oc*oh*ow*(ic/groups)*kh*kw`` per op (multiplications by
padding or inserted zeros are not counted). Only NumPy is needed to import this package; PyTorch and
matplotlib are used when installed.

Modules: ``suite`` (shapes, FLOP counts, inputs), ``libraries`` (each library's op callables and
thread count, the correctness check), ``timing`` (interleaved samples, the torch(heap) child,
memory mode), ``report`` (tables, JSON, plot, machine facts) and ``cli`` (options and ``main``).
"""

from .cli import main, parse_args, plan
from .libraries import (LIB_TITLES, LIBS, TOLERANCE, BlasThreads, NumpyConv, convcore_ops, library_ops,
                        relative_error, torch_ops)
from .report import (ENV_KEYS, available_cpus, blas_matmul_rate, format_tables, geomean, machine_info, plot,
                     measured_peak, summarize, theoretical_peak)
from .suite import FLOAT64_SHAPES, OPS, OVERHEAD_SHAPE, QUICK_SHAPES, SHAPES, SUITE, Shape, make_inputs
from .timing import (HEAP_REUSE_ENV, HEAP_REUSE_ENV_FALLBACK, NUMPY_CALL_LIMIT_S, measure_memory, run_case,
                     run_heap_reuse)
from .._public import public_dir as _public_dir

__all__ = [
    "ENV_KEYS", "FLOAT64_SHAPES", "HEAP_REUSE_ENV", "HEAP_REUSE_ENV_FALLBACK", "LIBS", "LIB_TITLES",
    "NUMPY_CALL_LIMIT_S", "OPS", "OVERHEAD_SHAPE", "QUICK_SHAPES", "SHAPES", "SUITE", "TOLERANCE",
    "BlasThreads", "NumpyConv", "Shape", "available_cpus", "blas_matmul_rate", "convcore_ops", "format_tables",
    "geomean", "library_ops", "machine_info", "main", "make_inputs", "measure_memory", "parse_args", "plan", "plot",
    "measured_peak", "relative_error", "run_case", "run_heap_reuse", "summarize", "theoretical_peak",
    "torch_ops",
]
__dir__ = _public_dir(globals())
