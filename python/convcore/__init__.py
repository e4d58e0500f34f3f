"""convcore: a fast, exact 2-D convolution layer for NumPy.

The C++ core computes the whole training step of a convolution layer — forward pass, error
back-propagation with flipped kernels and stride zero insertion, weight and bias gradients with
accumulation, and the SGD update — in float32 or float64, in parallel with OpenMP.
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from . import _core, functional, nn, reference
from ._blas import one_blas_thread
from ._core import __version__, get_num_threads, has_openmp, set_num_threads
from .functional import (
    activation_backward,
    col2im,
    conv2d,
    conv2d_backward,
    conv2d_bias,
    conv2d_input,
    conv2d_weight,
    expand_stride,
    flip_kernels,
    im2col,
    output_size,
    sgd_update,
)
from .functional_1d import conv1d, conv1d_backward, conv1d_bias, conv1d_input, conv1d_weight
from .functional_transposed import (
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose2d_bias,
    conv_transpose2d_input,
    conv_transpose2d_output_size,
    conv_transpose2d_weight,
)
from .layers import Conv1D, Conv2D, ConvTranspose2D
from .plan import Conv2dPlan
from .optim import SGD, Adam, AdamW, Parameter
from ._public import public_dir as _public_dir

__all__ = [
    "Adam",
    "AdamW",
    "Conv1D",
    "Conv2D",
    "Conv2dPlan",
    "ConvTranspose2D",
    "Parameter",
    "SGD",
    "__version__",
    "activation_backward",
    "col2im",
    "conv1d",
    "conv1d_backward",
    "conv1d_bias",
    "conv1d_input",
    "conv1d_weight",
    "conv2d",
    "conv2d_backward",
    "conv2d_bias",
    "conv2d_input",
    "conv2d_weight",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose2d_bias",
    "conv_transpose2d_input",
    "conv_transpose2d_output_size",
    "conv_transpose2d_weight",
    "expand_stride",
    "flip_kernels",
    "functional",
    "get_num_threads",
    "has_openmp",
    "im2col",
    "info",
    "nn",
    "one_blas_thread",
    "output_size",
    "reference",
    "set_num_threads",
    "sgd_update",
]
__dir__ = _public_dir(globals())

# CONVCORE_ISA with an unknown name, or one this CPU cannot run, is a warning, not an error: the
# variable is often set for a whole job or cluster, and the best supported path still computes
# the same results. `python -W error::RuntimeWarning` makes it fatal.
if _core.isa_env_problem() is not None:
    _warnings.warn(_core.isa_env_problem(), RuntimeWarning, stacklevel=2)


def _after_fork_in_child() -> None:
    # The native fork handler has already switched a child forked after convcore started its
    # threads to one thread (GNU libgomp's pool does not survive fork; see parallel.hpp).
    if _core._forked_single_threaded():
        _warnings.warn(
            "convcore: this process was forked after convcore had started its OpenMP threads, "
            "which do not survive fork; convcore runs on one thread here. Start workers with "
            "multiprocessing's 'spawn' or 'forkserver' method, or fork before the first "
            "convcore call, to keep them multi-threaded.",
            RuntimeWarning,
            stacklevel=2,
        )


_os.register_at_fork(after_in_child=_after_fork_in_child)


def info() -> dict:
    """Build and run-time facts: version, kernel path in use, supported paths, threads, OpenMP."""
    return {
        "version": __version__,
        "isa": _core.isa(),
        "supported_isas": list(_core.supported_isas()),
        "num_threads": get_num_threads(),
        "openmp": bool(has_openmp),
    }
