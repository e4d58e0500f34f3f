// The depthwise inner loops built with -mavx2 -mfma (and FMA contraction), used only when the
// CPU has both and the GEMM runs its avx2 or avx512 path (conv2d_depthwise.cpp).
#include "depthwise/depthwise_kernels.hpp"

#ifdef CONVCORE_X86_SIMD
namespace convcore::detail {

const DepthwiseKernels<float> kDepthwiseAvx2F32 = depthwise_kernels_for<float, 32>();
const DepthwiseKernels<double> kDepthwiseAvx2F64 = depthwise_kernels_for<double, 32>();

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
