// The channels-last batch norm's element loops built with -mavx2 (no FMA, no contraction: the
// same bits as the portable copy), used only when the active ISA is avx2 or avx512
// (batchnorm.cpp).
#include "ops/batchnorm_loops.hpp"

#ifdef CONVCORE_X86_SIMD
namespace convcore::detail {

const BatchNormLoops<float> kBatchNormAvx2F32 = batchnorm_loops_for<float, 32>();
const BatchNormLoops<double> kBatchNormAvx2F64 = batchnorm_loops_for<double, 32>();

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
