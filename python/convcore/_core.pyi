"""
convcore native core: 2-D convolution forward, backward and SGD in C++.
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
__all__: list[str] = ['Conv2dPlan', 'Geometry', 'activation_backward', 'activation_forward', 'adam_update', 'avg_pool2d_backward', 'avg_pool2d_forward', 'batchnorm_backward', 'batchnorm_forward', 'col2im', 'conv2d_backward_bias', 'expand_stride', 'flip_kernels', 'get_num_threads', 'has_openmp', 'im2col', 'isa', 'isa_env_problem', 'kernel_peak_gflops', 'linear_backward', 'linear_forward', 'max_pool2d_backward', 'max_pool2d_forward', 'plan_path_names', 'register_peak_gflops', 'set_isa', 'set_num_threads', 'sgd_update', 'supported_isas']
class Geometry:
    """
    Sizes of a 2-D convolution; per-side padding pt pb pl pr; activations in `layout` ('NCHW' or 'NHWC').
    """
    @typing.overload
    def __init__(self) -> None:
        ...
    @typing.overload
    def __init__(self, mb: typing.SupportsInt | typing.SupportsIndex, ic: typing.SupportsInt | typing.SupportsIndex, ih: typing.SupportsInt | typing.SupportsIndex, iw: typing.SupportsInt | typing.SupportsIndex, oc: typing.SupportsInt | typing.SupportsIndex, kh: typing.SupportsInt | typing.SupportsIndex, kw: typing.SupportsInt | typing.SupportsIndex, sh: typing.SupportsInt | typing.SupportsIndex = 1, sw: typing.SupportsInt | typing.SupportsIndex = 1, pt: typing.SupportsInt | typing.SupportsIndex = 0, pb: typing.SupportsInt | typing.SupportsIndex = 0, pl: typing.SupportsInt | typing.SupportsIndex = 0, pr: typing.SupportsInt | typing.SupportsIndex = 0, dh: typing.SupportsInt | typing.SupportsIndex = 1, dw: typing.SupportsInt | typing.SupportsIndex = 1, groups: typing.SupportsInt | typing.SupportsIndex = 1, layout: str = 'NCHW') -> None:
        ...
    def __repr__(self) -> str:
        ...
    def validate(self, op: str = 'conv2d') -> None:
        """
        Raises ValueError (or OverflowError) when the geometry is not a valid convolution.
        """
    @property
    def dh(self) -> int:
        ...
    @dh.setter
    def dh(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def dw(self) -> int:
        ...
    @dw.setter
    def dw(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def eh(self) -> int:
        ...
    @property
    def ew(self) -> int:
        ...
    @property
    def groups(self) -> int:
        ...
    @groups.setter
    def groups(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def ic(self) -> int:
        ...
    @ic.setter
    def ic(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def ih(self) -> int:
        ...
    @ih.setter
    def ih(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def iw(self) -> int:
        ...
    @iw.setter
    def iw(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kh(self) -> int:
        ...
    @kh.setter
    def kh(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def kw(self) -> int:
        ...
    @kw.setter
    def kw(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def layout(self) -> str:
        """
        'NCHW' or 'NHWC': how activations lie in memory (weights are OIHW in both).
        """
    @layout.setter
    def layout(self, arg1: str) -> None:
        ...
    @property
    def mb(self) -> int:
        ...
    @mb.setter
    def mb(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def oc(self) -> int:
        ...
    @oc.setter
    def oc(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def oh(self) -> int:
        ...
    @property
    def ow(self) -> int:
        ...
    @property
    def pb(self) -> int:
        ...
    @pb.setter
    def pb(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pl(self) -> int:
        ...
    @pl.setter
    def pl(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pr(self) -> int:
        ...
    @pr.setter
    def pr(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def pt(self) -> int:
        ...
    @pt.setter
    def pt(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def sh(self) -> int:
        ...
    @sh.setter
    def sh(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def sw(self) -> int:
        ...
    @sw.setter
    def sw(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class Conv2dPlan:
    """
    A convolution planned once: paths chosen, geometry validated.
    """
    def __init__(self, geometry: Geometry, dtype: str, single: bool, activation: str, bias: bool, forward: str, backward_input: str, backward_weight: str, isa: str, tile: str = '') -> None:
        ...
    def backward(self, input: typing.Any, weight: typing.Any, grad_output: typing.Any, *, weight_out: typing.Any = None, bias_out: typing.Any = None, accumulate: bool = False, input_out: typing.Any = None, input_grad: bool = True) -> tuple:
        ...
    def backward_input(self, weight: typing.Any, grad_output: typing.Any, out: typing.Any = None) -> numpy.ndarray:
        ...
    def backward_weight(self, input: typing.Any, grad_output: typing.Any, out: typing.Any = None, accumulate: bool = False) -> numpy.ndarray:
        ...
    def describe(self) -> dict:
        ...
    def forward(self, input: typing.Any, weight: typing.Any, bias: typing.Any = None, out: typing.Any = None) -> numpy.ndarray:
        ...
    @property
    def dtype(self) -> numpy.dtype[typing.Any]:
        ...
    @property
    def input_shape(self) -> tuple:
        ...
    @property
    def output_shape(self) -> tuple:
        ...
    @property
    def weight_shape(self) -> tuple:
        ...
def _forked_single_threaded() -> bool:
    """
    Whether this process was forked after convcore had started its threads, and so runs on one thread.
    """
def _num_threads_override() -> int:
    """
    The count set_num_threads fixed, or 0 when none is (what a caller restores it to).
    """
@typing.overload
def activation_backward(activation: str, grad: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: typing.Any = None) -> numpy.ndarray:
    ...
@typing.overload
def activation_backward(activation: str, grad: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], out: typing.Any = None) -> numpy.ndarray:
    ...
@typing.overload
def activation_forward(activation: str, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: typing.Any = None) -> numpy.ndarray:
    """
    y = f(input) elementwise on convcore's threads (relu: 0 for NaN); out, if given, must not overlap input.
    """
@typing.overload
def activation_forward(activation: str, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], out: typing.Any = None) -> numpy.ndarray:
    """
    y = f(input) elementwise on convcore's threads (relu: 0 for NaN); out, if given, must not overlap input.
    """
def adam_update(param: numpy.ndarray, grad: numpy.ndarray, exp_avg: numpy.ndarray, exp_avg_sq: numpy.ndarray, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool) -> None:
    """
    One Adam (or AdamW, decoupled_weight_decay=True) step in place; step is the count after it (>= 1).
    """
@typing.overload
def avg_pool2d_backward(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], count_include_pad: bool, out: typing.Any = None) -> numpy.ndarray:
    """
    Gradient of average pooling: each grad_output / divisor added to its window's cells.
    """
@typing.overload
def avg_pool2d_backward(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], count_include_pad: bool, out: typing.Any = None) -> numpy.ndarray:
    """
    Gradient of average pooling: each grad_output / divisor added to its window's cells.
    """
@typing.overload
def avg_pool2d_forward(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], count_include_pad: bool, out: typing.Any = None) -> numpy.ndarray:
    """
    Average pooling in the geometry's layout (no dilation).
    """
@typing.overload
def avg_pool2d_forward(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], count_include_pad: bool, out: typing.Any = None) -> numpy.ndarray:
    """
    Average pooling in the geometry's layout (no dilation).
    """
@typing.overload
def batchnorm_backward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, save_mean: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], save_invstd: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], *, batch_stats: bool, weight_out: typing.Any = None, bias_out: typing.Any = None, accumulate: bool = False, input_grad: bool = True, input_out: typing.Any = None, layout: str = 'NCHW') -> tuple[typing.Any, typing.Any, typing.Any]:
    """
    Gradients of batchnorm_forward: (dx or None, dweight or None, dbias or None); dweight and dbias only into weight_out / bias_out (added to with accumulate=True).
    """
@typing.overload
def batchnorm_backward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, save_mean: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], save_invstd: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], *, batch_stats: bool, weight_out: typing.Any = None, bias_out: typing.Any = None, accumulate: bool = False, input_grad: bool = True, input_out: typing.Any = None, layout: str = 'NCHW') -> tuple[typing.Any, typing.Any, typing.Any]:
    """
    Gradients of batchnorm_forward: (dx or None, dweight or None, dbias or None); dweight and dbias only into weight_out / bias_out (added to with accumulate=True).
    """
@typing.overload
def batchnorm_forward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, bias: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, running_mean: typing.Any, running_var: typing.Any, *, batch_stats: bool, eps: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any = None, layout: str = 'NCHW') -> tuple[numpy.ndarray, numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Batch normalisation of (N, C, H, W), or (N, H, W, C) with layout='NHWC': (y, saved mean, saved invstd). Running statistics are updated in place with batch statistics, used as they are otherwise.
    """
@typing.overload
def batchnorm_forward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, bias: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, running_mean: typing.Any, running_var: typing.Any, *, batch_stats: bool, eps: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any = None, layout: str = 'NCHW') -> tuple[numpy.ndarray, numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64]]:
    """
    Batch normalisation of (N, C, H, W), or (N, H, W, C) with layout='NHWC': (y, saved mean, saved invstd). Running statistics are updated in place with batch statistics, used as they are otherwise.
    """
@typing.overload
def col2im(geometry: Geometry, col: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    ...
@typing.overload
def col2im(geometry: Geometry, col: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
@typing.overload
def conv2d_backward_bias(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: numpy.ndarray | None, accumulate: bool) -> numpy.ndarray:
    ...
@typing.overload
def conv2d_backward_bias(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], out: numpy.ndarray | None, accumulate: bool) -> numpy.ndarray:
    ...
@typing.overload
def expand_stride(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    ...
@typing.overload
def expand_stride(geometry: Geometry, grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
@typing.overload
def flip_kernels(geometry: Geometry, weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    ...
@typing.overload
def flip_kernels(geometry: Geometry, weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def get_num_threads() -> int:
    """
    Number of threads convcore's next call on this thread will use: set_num_threads' count, else OpenMP's current setting (1 without OpenMP, 1 in a child forked after convcore had started its threads).
    """
@typing.overload
def im2col(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    ...
@typing.overload
def im2col(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
    ...
def isa() -> str:
    """
    Name of the GEMM kernel path in use: 'avx512', 'avx2' or 'generic'.
    """
def isa_env_problem() -> str | None:
    """
    Why CONVCORE_ISA was not followed (unknown or unsupported name), or None.
    """
def kernel_peak_gflops(dtype: str, seconds: typing.SupportsFloat | typing.SupportsIndex = 0.2) -> float:
    """
    FMA throughput (GFLOP/s) of the active micro-kernel on L1-resident panels, on all threads: the machine's practical peak.
    """
@typing.overload
def linear_backward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], *, weight_out: typing.Any = None, bias_out: typing.Any = None, accumulate: bool = False, input_grad: bool = True, input_out: typing.Any = None) -> tuple[typing.Any, numpy.ndarray, typing.Any]:
    """
    Gradients of linear_forward: (dx or None, dw, db or None); dw and db are added to weight_out / bias_out with accumulate=True. db is computed only when bias_out is given.
    """
@typing.overload
def linear_backward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], *, weight_out: typing.Any = None, bias_out: typing.Any = None, accumulate: bool = False, input_grad: bool = True, input_out: typing.Any = None) -> tuple[typing.Any, numpy.ndarray, typing.Any]:
    """
    Gradients of linear_forward: (dx or None, dw, db or None); dw and db are added to weight_out / bias_out with accumulate=True. db is computed only when bias_out is given.
    """
@typing.overload
def linear_forward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], bias: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, out: typing.Any = None) -> numpy.ndarray:
    """
    y = x W^T + b: input (N, in), weight (out, in), bias (out,) -> (N, out).
    """
@typing.overload
def linear_forward(input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], bias: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None = None, out: typing.Any = None) -> numpy.ndarray:
    """
    y = x W^T + b: input (N, in), weight (out, in), bias (out,) -> (N, out).
    """
@typing.overload
def max_pool2d_backward(geometry: Geometry, indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: typing.Any = None) -> numpy.ndarray:
    """
    Gradient of max pooling: grad_output added into the cells the indices name.
    """
@typing.overload
def max_pool2d_backward(geometry: Geometry, indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], grad_output: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], out: typing.Any = None) -> numpy.ndarray:
    """
    Gradient of max pooling: grad_output added into the cells the indices name.
    """
@typing.overload
def max_pool2d_forward(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: typing.Any = None, indices_out: typing.Any = None) -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    Max pooling: (output, indices) in the geometry's layout, indices flat (h * iw + w) into each H x W input plane (int64) in either layout.
    """
@typing.overload
def max_pool2d_forward(geometry: Geometry, input: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], out: typing.Any = None, indices_out: typing.Any = None) -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    Max pooling: (output, indices) in the geometry's layout, indices flat (h * iw + w) into each H x W input plane (int64) in either layout.
    """
def plan_path_names(op: str) -> list[str]:
    ...
def register_peak_gflops(dtype: str, seconds: typing.SupportsFloat | typing.SupportsIndex = 0.2) -> float:
    """
    FMA ceiling (GFLOP/s) of the active instruction set on all threads: independent chains of register-only vector FMAs. 0.0 on the portable path, which has no probe.
    """
def set_isa(name: str) -> None:
    """
    Forces a kernel path (any case; it must be supported).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex | None) -> None:
    """
    Fixes the number of threads convcore uses (n >= 1), overriding OpenMP's setting; None or 0 lifts the override, so OMP_NUM_THREADS, omp_set_num_threads and threadpoolctl apply again. Without OpenMP convcore runs on one thread whatever n is.
    """
def sgd_update(param: numpy.ndarray, grad: numpy.ndarray, velocity: numpy.ndarray | None, lr: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool = False) -> None:
    ...
def supported_isas() -> list[str]:
    """
    Kernel paths this CPU and build can run.
    """
__version__: str
has_openmp: bool
