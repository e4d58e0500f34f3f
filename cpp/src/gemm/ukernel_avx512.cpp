// AVX-512F micro-kernels, built with -mavx512f -mfma and called only when the CPU has
// AVX-512F (isa.cpp).
//
//   ukernel_12x32__avx512f (float), ukernel_12x16__avx512f (double), and their direct-B and direct-A twins
//
// Shape (as BLIS skylakex / oneDNN avx512 GEMM): two zmm vectors per row and 12 rows, so C takes
// 24 of the 32 zmm registers, plus 2 for a row of B and 1 for the broadcast of A. Per k step:
// 2 loads, 12 broadcasts and 24 FMAs, which keeps two FMA ports busy with 4-cycle latency.
// k is unrolled by 4 (no spills with GCC 12).
#include <cstdint>

#include "gemm/ukernel.hpp"

#ifdef CONVCORE_X86_SIMD
#include <immintrin.h>

namespace convcore::detail {
namespace {

struct F32x16 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
};

struct F64x8 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
};

}  // namespace
}  // namespace convcore::detail

#include "gemm/ukernel_simd.hpp"
#include "gemm/activation_simd.hpp"

namespace convcore::detail {

using F32Tile = GemmBlocking<float, Isa::avx512>;
using F64Tile = GemmBlocking<double, Isa::avx512>;
static_assert(F32Tile::MR == 12 && F32Tile::NR == 2 * F32x16::L, "12x32 float tile");
static_assert(F64Tile::MR == 12 && F64Tile::NR == 2 * F64x8::L, "12x16 double tile");

void ukernel_12x32__avx512f(int64_t kc, float alpha, const float* a, const float* b, float beta,
                            float* c, int64_t ldc) {
  ukernel_simd<F32x16, 12, 2, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_12x16__avx512f(int64_t kc, double alpha, const double* a, const double* b,
                            double beta, double* c, int64_t ldc) {
  ukernel_simd<F64x8, 12, 2, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_12x32_direct_b__avx512f(int64_t kc, float alpha, const float* a, const float* b,
                                     const int64_t* boff, float beta, float* c, int64_t ldc) {
  ukernel_simd_direct_b<F32x16, 12, 2, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_12x16_direct_b__avx512f(int64_t kc, double alpha, const double* a, const double* b,
                                     const int64_t* boff, double beta, double* c, int64_t ldc) {
  ukernel_simd_direct_b<F64x8, 12, 2, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_12x32_direct_a__avx512f(int64_t kc, float alpha, const float* const* arow,
                                     const int64_t* koff, const float* b, float beta, float* c, int64_t ldc) {
  ukernel_simd_direct_a<F32x16, 12, 2, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

void ukernel_12x16_direct_a__avx512f(int64_t kc, double alpha, const double* const* arow,
                                     const int64_t* koff, const double* b, double beta, double* c, int64_t ldc) {
  ukernel_simd_direct_a<F64x8, 12, 2, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

// The narrow tiles: one vector per row of C, 24 rows.
using F32Narrow = GemmBlocking<float, Isa::avx512, Tile::narrow>;
using F64Narrow = GemmBlocking<double, Isa::avx512, Tile::narrow>;
static_assert(F32Narrow::MR == 24 && F32Narrow::NR == F32x16::L, "24x16 float tile");
static_assert(F64Narrow::MR == 24 && F64Narrow::NR == F64x8::L, "24x8 double tile");

void ukernel_24x16__avx512f(int64_t kc, float alpha, const float* a, const float* b, float beta,
                            float* c, int64_t ldc) {
  ukernel_simd<F32x16, 24, 1, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_24x8__avx512f(int64_t kc, double alpha, const double* a, const double* b,
                           double beta, double* c, int64_t ldc) {
  ukernel_simd<F64x8, 24, 1, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_24x16_direct_b__avx512f(int64_t kc, float alpha, const float* a, const float* b,
                                     const int64_t* boff, float beta, float* c, int64_t ldc) {
  ukernel_simd_direct_b<F32x16, 24, 1, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_24x8_direct_b__avx512f(int64_t kc, double alpha, const double* a, const double* b,
                                    const int64_t* boff, double beta, double* c, int64_t ldc) {
  ukernel_simd_direct_b<F64x8, 24, 1, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_24x16_direct_a__avx512f(int64_t kc, float alpha, const float* const* arow,
                                     const int64_t* koff, const float* b, float beta, float* c,
                                     int64_t ldc) {
  ukernel_simd_direct_a<F32x16, 24, 1, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

void ukernel_24x8_direct_a__avx512f(int64_t kc, double alpha, const double* const* arow,
                                    const int64_t* koff, const double* b, double beta, double* c,
                                    int64_t ldc) {
  ukernel_simd_direct_a<F64x8, 24, 1, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

// The rows-A kernels (A's rows consecutive in memory), one per tile above.
void ukernel_12x32_rows_a__avx512f(int64_t kc, float alpha, const float* a, const int64_t* koff,
                              const float* b, float beta, float* c, int64_t ldc) {
  ukernel_simd_rows_a<F32x16, 12, 2, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

void ukernel_12x16_rows_a__avx512f(int64_t kc, double alpha, const double* a, const int64_t* koff,
                              const double* b, double beta, double* c, int64_t ldc) {
  ukernel_simd_rows_a<F64x8, 12, 2, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

void ukernel_24x16_rows_a__avx512f(int64_t kc, float alpha, const float* a, const int64_t* koff,
                              const float* b, float beta, float* c, int64_t ldc) {
  ukernel_simd_rows_a<F32x16, 24, 1, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

void ukernel_24x8_rows_a__avx512f(int64_t kc, double alpha, const double* a, const int64_t* koff,
                              const double* b, double beta, double* c, int64_t ldc) {
  ukernel_simd_rows_a<F64x8, 24, 1, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

// The flat tiles: two vectors per row of C, 6 rows.
using F32Flat = GemmBlocking<float, Isa::avx512, Tile::flat>;
using F64Flat = GemmBlocking<double, Isa::avx512, Tile::flat>;
static_assert(F32Flat::MR == 6 && F32Flat::NR == 2 * F32x16::L, "6x32 float tile");
static_assert(F64Flat::MR == 6 && F64Flat::NR == 2 * F64x8::L, "6x16 double tile");

void ukernel_6x32__avx512f(int64_t kc, float alpha, const float* a, const float* b, float beta,
                          float* c, int64_t ldc) {
  ukernel_simd<F32x16, 6, 2, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_6x32_direct_b__avx512f(int64_t kc, float alpha, const float* a, const float* b,
                                   const int64_t* boff, float beta, float* c, int64_t ldc) {
  ukernel_simd_direct_b<F32x16, 6, 2, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_6x32_direct_a__avx512f(int64_t kc, float alpha, const float* const* arow,
                                   const int64_t* koff, const float* b, float beta, float* c,
                                   int64_t ldc) {
  ukernel_simd_direct_a<F32x16, 6, 2, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

void ukernel_6x32_rows_a__avx512f(int64_t kc, float alpha, const float* a, const int64_t* koff,
                                 const float* b, float beta, float* c, int64_t ldc) {
  ukernel_simd_rows_a<F32x16, 6, 2, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

void ukernel_6x16__avx512f(int64_t kc, double alpha, const double* a, const double* b, double beta,
                          double* c, int64_t ldc) {
  ukernel_simd<F64x8, 6, 2, 4>(kc, alpha, a, b, beta, c, ldc);
}

void ukernel_6x16_direct_b__avx512f(int64_t kc, double alpha, const double* a, const double* b,
                                   const int64_t* boff, double beta, double* c, int64_t ldc) {
  ukernel_simd_direct_b<F64x8, 6, 2, 4>(kc, alpha, a, b, boff, beta, c, ldc);
}

void ukernel_6x16_direct_a__avx512f(int64_t kc, double alpha, const double* const* arow,
                                   const int64_t* koff, const double* b, double beta, double* c,
                                   int64_t ldc) {
  ukernel_simd_direct_a<F64x8, 6, 2, 4>(kc, alpha, arow, koff, b, beta, c, ldc);
}

void ukernel_6x16_rows_a__avx512f(int64_t kc, double alpha, const double* a, const int64_t* koff,
                                 const double* b, double beta, double* c, int64_t ldc) {
  ukernel_simd_rows_a<F64x8, 6, 2, 4>(kc, alpha, a, koff, b, beta, c, ldc);
}

void activate_span__avx512f(Activation act, float* y, int64_t n) { activate_span_f32(act, y, n); }
void activate_span__avx512f(Activation act, double* y, int64_t n) { activate_span_f64(act, y, n); }

void fma_chains__avx512f(int64_t iters, float* out) { fma_chains_simd<F32x16>(iters, out); }
void fma_chains__avx512f(int64_t iters, double* out) { fma_chains_simd<F64x8>(iters, out); }

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
