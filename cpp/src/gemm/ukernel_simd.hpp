#pragma once
// The register-blocked micro-kernel body shared by the ISA files, templated on a vector type
// (S: float/double lanes of one ISA), the rows MR, the vectors per row NV (NR = NV * S::L) and
// the unroll factor U of the k loop.
// Include it only from a file built with ISA flags (ukernel_avx2.cpp, ukernel_avx512.cpp), after
// <immintrin.h> and the definition of S.
//
// Everything here has internal linkage (anonymous namespace) on purpose: each ISA file gets its
// own copy compiled with its own flags, and the linker can never merge an AVX-512 copy into the
// AVX2 path. For the same reason nothing here calls an inline function from a standard header.
//
// S provides: T, V, L, zero(), load(p), bcast(p), set1(x), mul(a, b), fmadd(a, b, c) = a*b + c,
// store(p, v).
#include <cstdint>

namespace convcore::detail {
namespace {

// acc[i][v] += a[i] * b[v*L .. v*L+L-1] for one k step.
template <class S, int MR, int NV>
__attribute__((always_inline)) inline void ukernel_simd_step(typename S::V (&acc)[MR][NV],
                                                             const typename S::T* a,
                                                             const typename S::T* b) {
  typename S::V bv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * S::L);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const typename S::V ai = S::bcast(a + i);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::fmadd(ai, bv[v], acc[i][v]);
  }
}

// The micro-kernel contract of ukernel.hpp: C[MR x NR] = alpha * A * B + beta * C, with row p
// of B at brow(p): b + p*NR for a packed panel, b + boff[p] for a B read in place.
// The k loop is unrolled U times. U is chosen per shape by reading the generated loop: with
// 12 of 16 ymm (or 24 of 32 zmm) registers holding C, some unroll factors make GCC spill.
template <class S, int MR, int NV, int U, class BRow>
__attribute__((always_inline)) inline void ukernel_simd_body(int64_t kc, typename S::T alpha,
                                                             const typename S::T* a, BRow brow,
                                                             typename S::T beta,
                                                             typename S::T* c, int64_t ldc) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int NR = NV * S::L;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
  }
  // The C tile is needed only at the end; ask for it now so that it is in cache by then (a
  // prefetch is not a read: with beta == 0 C may hold NaN and is still never read). The builtin
  // is called directly because GCC deletes a prefetch made through a small wrapper function.
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
  }
  int64_t p = 0;
  for (; p + U <= kc; p += U, a += U * MR) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) ukernel_simd_step<S, MR, NV>(acc, a + u * MR, brow(p + u));
  }
  for (; p < kc; ++p, a += MR) ukernel_simd_step<S, MR, NV>(acc, a, brow(p));

  const V va = S::set1(alpha);
  if (beta == T(0)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(c + i * ldc + v * S::L, S::mul(va, acc[i][v]));
    }
  } else {
    const V vb = S::set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* cp = c + i * ldc + v * S::L;
        S::store(cp, S::fmadd(vb, S::load(cp), S::mul(va, acc[i][v])));
      }
    }
  }
}

// The packed-B kernel (Ukernel).
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd(int64_t kc, typename S::T alpha,
                                                        const typename S::T* a,
                                                        const typename S::T* b,
                                                        typename S::T beta, typename S::T* c,
                                                        int64_t ldc) {
  constexpr int NR = NV * S::L;
  ukernel_simd_body<S, MR, NV, U>(
      kc, alpha, a, [b](int64_t p) { return b + p * NR; }, beta, c, ldc);
}

// The B-in-place kernel (UkernelDirectB).
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd_direct_b(
    int64_t kc, typename S::T alpha, const typename S::T* a, const typename S::T* b,
    const int64_t* boff, typename S::T beta, typename S::T* c, int64_t ldc) {
  ukernel_simd_body<S, MR, NV, U>(
      kc, alpha, a, [b, boff](int64_t p) { return b + boff[p]; }, beta, c, ldc);
}

}  // namespace
}  // namespace convcore::detail
