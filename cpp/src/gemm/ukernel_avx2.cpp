// AVX2 + FMA micro-kernels (BLIS haswell/zen shapes), built with -mavx2 -mfma and called only
// when the CPU has both (isa.cpp).
//
//   tiles 6x16 / 6x8 (wide) and 12x8 / 12x4 (narrow), float / double, each with its four kernels
//   (CONVCORE_DEFINE_TILE: packed, direct-B, direct-A, rows-A)
//
// Registers (wide): C is 6 rows x 2 ymm = 12 accumulators, plus 2 ymm for a row of B and 1 for the
// broadcast of A: 15 of 16. Per k step: 2 loads, 6 broadcasts, 12 FMAs; k unrolled by 2 (no
// spills with GCC 12, and faster than 1 or 4 on Zen 3).
#include <cstdint>

#include "gemm/ukernel.hpp"

#ifdef CONVCORE_X86_SIMD
#include <immintrin.h>

namespace convcore::detail {
namespace {

struct F32x8 {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // c += a*b. With 12 accumulators GCC already keeps each in its register, so the compiler
  // chooses here (the AVX-512 rows fix the registers, ukernel_simd_step says why).
  static void fmacc(V& c, V a, V b) { c = _mm256_fmadd_ps(a, b, c); }
  // For the block transpose (transpose_block_simd): interleaves within 128-bit lanes, of values
  // and of pairs of values, and a permutation of whole lanes.
  static V unpacklo(V a, V b) { return _mm256_unpacklo_ps(a, b); }
  static V unpackhi(V a, V b) { return _mm256_unpackhi_ps(a, b); }
  static V unpacklo2(V a, V b) {
    return _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
  }
  static V unpackhi2(V a, V b) {
    return _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
  }
  template <int imm>
  static V permute128(V a, V b) { return _mm256_permute2f128_ps(a, b, imm); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
};

struct F64x4 {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static void fmacc(V& c, V a, V b) { c = _mm256_fmadd_pd(a, b, c); }
  static V unpacklo(V a, V b) { return _mm256_unpacklo_pd(a, b); }
  static V unpackhi(V a, V b) { return _mm256_unpackhi_pd(a, b); }
  template <int imm>
  static V permute128(V a, V b) { return _mm256_permute2f128_pd(a, b, imm); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
};

}  // namespace
}  // namespace convcore::detail

#include "gemm/ukernel_simd.hpp"
#include "gemm/activation_simd.hpp"

namespace convcore::detail {

using F32Tile = GemmBlocking<float, Isa::avx2>;
using F64Tile = GemmBlocking<double, Isa::avx2>;
using F32Narrow = GemmBlocking<float, Isa::avx2, Tile::narrow>;
using F64Narrow = GemmBlocking<double, Isa::avx2, Tile::narrow>;
static_assert(F32Tile::MR == 6 && F32Tile::NR == 2 * F32x8::L, "6x16 float tile");
static_assert(F64Tile::MR == 6 && F64Tile::NR == 2 * F64x4::L, "6x8 double tile");
static_assert(F32Narrow::MR == 12 && F32Narrow::NR == F32x8::L, "12x8 float tile");
static_assert(F64Narrow::MR == 12 && F64Narrow::NR == F64x4::L, "12x4 double tile");

CONVCORE_DEFINE_TILE(float, 6x16, avx2_fma, F32x8, 6, 2, 2, 2)
CONVCORE_DEFINE_TILE(double, 6x8, avx2_fma, F64x4, 6, 2, 2, 2)
CONVCORE_DEFINE_TILE(float, 12x8, avx2_fma, F32x8, 12, 1, 2, 2)
CONVCORE_DEFINE_TILE(double, 12x4, avx2_fma, F64x4, 12, 1, 2, 2)

void activate_span__avx2_fma(Activation act, float* y, int64_t n) { activate_span_f32(act, y, n); }
void activate_span__avx2_fma(Activation act, double* y, int64_t n) { activate_span_f64(act, y, n); }

// 8 x 8 floats, 4 x 4 doubles (transpose_block_simd).
void transpose_block__avx2_fma(const float* s, int64_t ls, const float* add, bool relu, float* d,
                               int64_t ld) {
  transpose_block_simd<F32x8>(s, ls, add, relu, d, ld);
}
void transpose_block__avx2_fma(const double* s, int64_t ls, const double* add, bool relu,
                               double* d, int64_t ld) {
  transpose_block_simd<F64x4>(s, ls, add, relu, d, ld);
}

void fma_chains__avx2_fma(int64_t iters, float* out) { fma_chains_simd<F32x8>(iters, out); }
void fma_chains__avx2_fma(int64_t iters, double* out) { fma_chains_simd<F64x4>(iters, out); }

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
