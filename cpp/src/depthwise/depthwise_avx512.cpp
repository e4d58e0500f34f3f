// The depthwise inner loops built with -mavx512f -mfma (and FMA contraction), used only when
// the CPU has AVX-512F and the GEMM runs its avx512 path (conv2d_depthwise.cpp).
#include "depthwise/depthwise_kernels.hpp"

#ifdef CONVCORE_X86_SIMD
namespace convcore::detail {

const DepthwiseKernels<float> kDepthwiseAvx512F32 = depthwise_kernels_for<float, 64>();
const DepthwiseKernels<double> kDepthwiseAvx512F64 = depthwise_kernels_for<double, 64>();

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
