// AVX-512F micro-kernels, built with -mavx512f -mfma and called only when the CPU has
// AVX-512F (isa.cpp).
//
//   tiles 12x32 / 12x16 (wide), 24x16 / 24x8 (narrow), 6x32 / 6x16 (flat), 6x64 / 6x32 (broad),
//   float / double, each
//   with its four kernels (CONVCORE_DEFINE_TILE: packed, direct-B, direct-A, rows-A)
//
// Wide shape (as BLIS skylakex / oneDNN avx512 GEMM): two zmm vectors per row and 12 rows, so C takes
// 24 of the 32 zmm registers, plus 2 for a row of B and 1 for the broadcast of A. Per k step:
// 2 loads, 12 broadcasts and 24 FMAs, which keeps two FMA ports busy with 4-cycle latency.
// k is unrolled by 4 (no spills with GCC 12).
#include <cstdint>

#include "gemm/ukernel.hpp"

#ifdef CONVCORE_X86_SIMD
// GCC 12's AVX-512 unpack and shuffle intrinsics start from _mm512_undefined_*(), which its
// -Wuninitialized reports (GCC bug 105593); the warning is silenced for the header alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

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
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // c += a*b as one vfmadd231 on c's own register (ukernel_simd_step says why).
  static void fmacc(V& c, V a, V b) { asm("vfmadd231ps %1, %2, %0" : "+v"(c) : "v"(a), "v"(b)); }
  // For the block transpose (transpose_block_simd): interleaves within 128-bit lanes, of values
  // and of pairs of values, and a shuffle of whole lanes.
  static V unpacklo(V a, V b) { return _mm512_unpacklo_ps(a, b); }
  static V unpackhi(V a, V b) { return _mm512_unpackhi_ps(a, b); }
  static V unpacklo2(V a, V b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  }
  static V unpackhi2(V a, V b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  }
  template <int imm>
  static V shuffle128(V a, V b) { return _mm512_shuffle_f32x4(a, b, imm); }
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
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void fmacc(V& c, V a, V b) { asm("vfmadd231pd %1, %2, %0" : "+v"(c) : "v"(a), "v"(b)); }
  static V unpacklo(V a, V b) { return _mm512_unpacklo_pd(a, b); }
  static V unpackhi(V a, V b) { return _mm512_unpackhi_pd(a, b); }
  template <int imm>
  static V shuffle128(V a, V b) { return _mm512_shuffle_f64x2(a, b, imm); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
};

}  // namespace
}  // namespace convcore::detail

#include "gemm/ukernel_simd.hpp"
#include "gemm/activation_simd.hpp"

namespace convcore::detail {

using F32Tile = GemmBlocking<float, Isa::avx512>;
using F64Tile = GemmBlocking<double, Isa::avx512>;
using F32Narrow = GemmBlocking<float, Isa::avx512, Tile::narrow>;
using F64Narrow = GemmBlocking<double, Isa::avx512, Tile::narrow>;
using F32Flat = GemmBlocking<float, Isa::avx512, Tile::flat>;
using F64Flat = GemmBlocking<double, Isa::avx512, Tile::flat>;
using F32Broad = GemmBlocking<float, Isa::avx512, Tile::broad>;
using F64Broad = GemmBlocking<double, Isa::avx512, Tile::broad>;
static_assert(F32Tile::MR == 12 && F32Tile::NR == 2 * F32x16::L, "12x32 float tile");
static_assert(F64Tile::MR == 12 && F64Tile::NR == 2 * F64x8::L, "12x16 double tile");
static_assert(F32Narrow::MR == 24 && F32Narrow::NR == F32x16::L, "24x16 float tile");
static_assert(F64Narrow::MR == 24 && F64Narrow::NR == F64x8::L, "24x8 double tile");
static_assert(F32Flat::MR == 6 && F32Flat::NR == 2 * F32x16::L, "6x32 float tile");
static_assert(F64Flat::MR == 6 && F64Flat::NR == 2 * F64x8::L, "6x16 double tile");
static_assert(F32Broad::MR == 6 && F32Broad::NR == 4 * F32x16::L, "6x64 float tile");
static_assert(F64Broad::MR == 6 && F64Broad::NR == 4 * F64x8::L, "6x32 double tile");

// The A-in-place kernels of the 12- and 24-row tiles hold more row pointers than there are free
// general registers: unrolled 4 times, GCC reloaded several per k step and spilled accumulators
// (12x32). Unrolled once (12 rows) or twice (24 rows) they keep at most pointers on the stack;
// one core, operands in L1: 12x32 about 197 -> 210 GFLOP/s, 12x16 90 -> 96, 24x16 175 -> 179.
CONVCORE_DEFINE_TILE(float, 12x32, avx512f, F32x16, 12, 2, 4, 1)
CONVCORE_DEFINE_TILE(double, 12x16, avx512f, F64x8, 12, 2, 4, 1)
CONVCORE_DEFINE_TILE(float, 24x16, avx512f, F32x16, 24, 1, 4, 2)
CONVCORE_DEFINE_TILE(double, 24x8, avx512f, F64x8, 24, 1, 4, 2)
CONVCORE_DEFINE_TILE(float, 6x32, avx512f, F32x16, 6, 2, 4, 4)
CONVCORE_DEFINE_TILE(double, 6x16, avx512f, F64x8, 6, 2, 4, 4)
CONVCORE_DEFINE_TILE(float, 6x64, avx512f, F32x16, 6, 4, 4, 4)
CONVCORE_DEFINE_TILE(double, 6x32, avx512f, F64x8, 6, 4, 4, 4)

void activate_span__avx512f(Activation act, float* y, int64_t n) { activate_span_f32(act, y, n); }
void activate_span__avx512f(Activation act, double* y, int64_t n) { activate_span_f64(act, y, n); }

// 16 x 16 floats, 8 x 8 doubles (transpose_block_simd): 64 and 24 shuffles, where the SSE
// blocks take 128 and 32.
void transpose_block__avx512f(const float* s, int64_t ls, const float* add, bool relu, float* d,
                              int64_t ld) {
  transpose_block_simd<F32x16>(s, ls, add, relu, d, ld);
}
void transpose_block__avx512f(const double* s, int64_t ls, const double* add, bool relu,
                              double* d, int64_t ld) {
  transpose_block_simd<F64x8>(s, ls, add, relu, d, ld);
}

void fma_chains__avx512f(int64_t iters, float* out) { fma_chains_simd<F32x16>(iters, out); }
void fma_chains__avx512f(int64_t iters, double* out) { fma_chains_simd<F64x8>(iters, out); }

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
