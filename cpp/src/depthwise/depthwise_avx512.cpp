// The depthwise inner loops built with -mavx512f -mfma (and FMA contraction), used only when
// the CPU has AVX-512F and the GEMM runs its avx512 path (conv2d_depthwise.cpp).
#include "depthwise/direct_loops.hpp"

#ifdef CONVCORE_X86_SIMD
namespace convcore::detail {

const DirectLoops<float> kDirectLoopsAvx512F32 = direct_loops_for<float, 64>();
const DirectLoops<double> kDirectLoopsAvx512F64 = direct_loops_for<double, 64>();

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
