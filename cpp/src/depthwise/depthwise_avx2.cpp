// The depthwise inner loops built with -mavx2 -mfma (and FMA contraction), used only when the
// CPU has both and the GEMM runs its avx2 or avx512 path (conv2d_depthwise.cpp).
#include "depthwise/direct_loops.hpp"

#ifdef CONVCORE_X86_SIMD
namespace convcore::detail {

const DirectLoops<float> kDirectLoopsAvx2F32 = direct_loops_for<float, 32>();
const DirectLoops<double> kDirectLoopsAvx2F64 = direct_loops_for<double, 32>();

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
