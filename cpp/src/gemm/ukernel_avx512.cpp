// AVX-512F micro-kernels, built with -mavx512f -mfma and called only when the CPU has
// AVX-512F (isa.cpp).
//
//   tiles 12x32 / 12x16 (wide), 24x16 / 24x8 (narrow), 6x32 / 6x16 (flat), float / double, each
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
using F32Narrow = GemmBlocking<float, Isa::avx512, Tile::narrow>;
using F64Narrow = GemmBlocking<double, Isa::avx512, Tile::narrow>;
using F32Flat = GemmBlocking<float, Isa::avx512, Tile::flat>;
using F64Flat = GemmBlocking<double, Isa::avx512, Tile::flat>;
static_assert(F32Tile::MR == 12 && F32Tile::NR == 2 * F32x16::L, "12x32 float tile");
static_assert(F64Tile::MR == 12 && F64Tile::NR == 2 * F64x8::L, "12x16 double tile");
static_assert(F32Narrow::MR == 24 && F32Narrow::NR == F32x16::L, "24x16 float tile");
static_assert(F64Narrow::MR == 24 && F64Narrow::NR == F64x8::L, "24x8 double tile");
static_assert(F32Flat::MR == 6 && F32Flat::NR == 2 * F32x16::L, "6x32 float tile");
static_assert(F64Flat::MR == 6 && F64Flat::NR == 2 * F64x8::L, "6x16 double tile");

CONVCORE_DEFINE_TILE(float, 12x32, avx512f, F32x16, 12, 2, 4)
CONVCORE_DEFINE_TILE(double, 12x16, avx512f, F64x8, 12, 2, 4)
CONVCORE_DEFINE_TILE(float, 24x16, avx512f, F32x16, 24, 1, 4)
CONVCORE_DEFINE_TILE(double, 24x8, avx512f, F64x8, 24, 1, 4)
CONVCORE_DEFINE_TILE(float, 6x32, avx512f, F32x16, 6, 2, 4)
CONVCORE_DEFINE_TILE(double, 6x16, avx512f, F64x8, 6, 2, 4)

void activate_span__avx512f(Activation act, float* y, int64_t n) { activate_span_f32(act, y, n); }
void activate_span__avx512f(Activation act, double* y, int64_t n) { activate_span_f64(act, y, n); }

// 16 x 16 floats: pairs of rows interleaved (unpack ps, then pd), which leaves each 128-bit lane
// holding four rows of one column; then the 4 x 4 grid of lanes transposed by two rounds of
// shuffle_f32x4. 64 shuffles for 256 values (the SSE 4 x 4 blocks take 128).
void transpose_block__avx512f(const float* s, int64_t ls, const float* add, bool relu, float* d,
                              int64_t ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(s + i * ls);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4i + j], lane L: column 4L + j of rows 4i .. 4i+3.
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]),
                  c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  // Column 4L + j, lane R = u[4R + j] lane L.
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    t[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
  for (int c = 0; c < 16; ++c) {
    __m512 v = _mm512_add_ps(t[c], _mm512_set1_ps(add[c]));
    if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
    _mm512_storeu_ps(d + c * ld, v);
  }
}

// 8 x 8 doubles: pairs of rows interleaved, each 128-bit lane then two rows of one column; the
// 4 x 4 grid of lanes transposed as for float.
void transpose_block__avx512f(const double* s, int64_t ls, const double* add, bool relu,
                              double* d, int64_t ld) {
  __m512d r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_pd(s + i * ls);
  // t[2i + j], lane L: column 2L + j of rows 2i, 2i+1.
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  for (int j = 0; j < 2; ++j) {
    const __m512d v0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x44);
    const __m512d v1 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xEE);
    const __m512d v2 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x44);
    const __m512d v3 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xEE);
    r[j] = _mm512_shuffle_f64x2(v0, v2, 0x88);
    r[2 + j] = _mm512_shuffle_f64x2(v0, v2, 0xDD);
    r[4 + j] = _mm512_shuffle_f64x2(v1, v3, 0x88);
    r[6 + j] = _mm512_shuffle_f64x2(v1, v3, 0xDD);
  }
  for (int c = 0; c < 8; ++c) {
    __m512d v = _mm512_add_pd(r[c], _mm512_set1_pd(add[c]));
    if (relu) v = _mm512_max_pd(v, _mm512_setzero_pd());
    _mm512_storeu_pd(d + c * ld, v);
  }
}

void fma_chains__avx512f(int64_t iters, float* out) { fma_chains_simd<F32x16>(iters, out); }
void fma_chains__avx512f(int64_t iters, double* out) { fma_chains_simd<F64x8>(iters, out); }

}  // namespace convcore::detail
#endif  // CONVCORE_X86_SIMD
