#pragma once
// Square blocks transposed through SSE registers (the x86-64 baseline): 4 x 4 floats or 2 x 2
// doubles, for the GEMM's transposed panels (pack.hpp) and the NHWC/NCHW transposes
// (ops/nhwc_via_nchw.cpp). Elsewhere kSseBlock is 0 and nothing here is defined.
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace convcore::detail {

#if defined(__SSE2__)
// The block's side for T: 16 bytes of it.
template <class T>
constexpr int64_t kSseBlock = int64_t(16 / sizeof(T));

// T's SSE register, its unaligned store, and the zip of two registers' lower (upper) halves:
// (a0 b0 a1 b1), (a2 b2 a3 b3) for float; (a0 b0), (a1 b1) for double.
template <class T>
struct SseVec;
template <>
struct SseVec<float> {
  using V = __m128;
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static V zip_lo(V a, V b) { return _mm_unpacklo_ps(a, b); }
  static V zip_hi(V a, V b) { return _mm_unpackhi_ps(a, b); }
};
template <>
struct SseVec<double> {
  using V = __m128d;
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
  static V zip_lo(V a, V b) { return _mm_unpacklo_pd(a, b); }
  static V zip_hi(V a, V b) { return _mm_unpackhi_pd(a, b); }
};

// v[c] = (s[c], s[ls + c], s[2*ls + c], s[3*ls + c]): four rows of four floats, transposed.
inline void load_transposed(const float* s, int64_t ls, __m128 (&v)[4]) {
  v[0] = _mm_loadu_ps(s);
  v[1] = _mm_loadu_ps(s + ls);
  v[2] = _mm_loadu_ps(s + 2 * ls);
  v[3] = _mm_loadu_ps(s + 3 * ls);
  _MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);
}
// v[c] = (s[c], s[ls + c]): two rows of two doubles, transposed.
inline void load_transposed(const double* s, int64_t ls, __m128d (&v)[2]) {
  const __m128d a = _mm_loadu_pd(s), b = _mm_loadu_pd(s + ls);
  v[0] = _mm_unpacklo_pd(a, b);
  v[1] = _mm_unpackhi_pd(a, b);
}

// d[c*ld + r] = s[r*ls + c] for r, c < 4.
inline void transpose_block_sse(const float* s, int64_t ls, float* d, int64_t ld) {
  __m128 v[4];
  load_transposed(s, ls, v);
  for (int c = 0; c < 4; ++c) _mm_storeu_ps(d + c * ld, v[c]);
}

// d[c*ld + r] = s[r*ls + c] for r < 2, c < 4: two rows of four floats, (a0 b0 a1 b1) and
// (a2 b2 a3 b3) split into two values for each of four rows of d (what is left of a float panel
// or tensor six rows wide after its 4 x 4 blocks).
inline void transpose_2x4_sse(const float* s, int64_t ls, float* d, int64_t ld) {
  const __m128 a = _mm_loadu_ps(s), b = _mm_loadu_ps(s + ls);
  const __m128 lo = _mm_unpacklo_ps(a, b), hi = _mm_unpackhi_ps(a, b);
  _mm_storel_pi(reinterpret_cast<__m64*>(d), lo);
  _mm_storeh_pi(reinterpret_cast<__m64*>(d + ld), lo);
  _mm_storel_pi(reinterpret_cast<__m64*>(d + 2 * ld), hi);
  _mm_storeh_pi(reinterpret_cast<__m64*>(d + 3 * ld), hi);
}

// d[c*ld + r] = s[r*ls + c] for r, c < 2.
inline void transpose_block_sse(const double* s, int64_t ls, double* d, int64_t ld) {
  __m128d v[2];
  load_transposed(s, ls, v);
  for (int c = 0; c < 2; ++c) _mm_storeu_pd(d + c * ld, v[c]);
}

// d[c*ld + r] = s[r*ls + c] + add[c], clamped at 0 (relu: NaN and -0 give +0) when relu is set,
// for r, c < 4: the transposed forward's epilogue (ops/conv2d_forward.cpp).
inline void transpose_block_sse(const float* s, int64_t ls, const float* add, bool relu, float* d,
                                int64_t ld) {
  __m128 v[4];
  load_transposed(s, ls, v);
  for (int c = 0; c < 4; ++c) {
    __m128 r = _mm_add_ps(v[c], _mm_set1_ps(add[c]));
    if (relu) r = _mm_max_ps(r, _mm_setzero_ps());
    _mm_storeu_ps(d + c * ld, r);
  }
}

// The same for r, c < 2.
inline void transpose_block_sse(const double* s, int64_t ls, const double* add, bool relu,
                                double* d, int64_t ld) {
  __m128d v[2];
  load_transposed(s, ls, v);
  for (int c = 0; c < 2; ++c) {
    __m128d r = _mm_add_pd(v[c], _mm_set1_pd(add[c]));
    if (relu) r = _mm_max_pd(r, _mm_setzero_pd());
    _mm_storeu_pd(d + c * ld, r);
  }
}
#else
template <class T>
constexpr int64_t kSseBlock = 0;
#endif

}  // namespace convcore::detail
