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
// S provides: T, V, L, zero(), load(p), bcast(p), set1(x), mul(a, b), add(a, b), max(a, b),
// fmadd(a, b, c) = a*b + c, fmacc(c, a, b): c += a*b in c's register, store(p, v).
#include <cstdint>

namespace convcore::detail {
namespace {

// acc[i][v] += A[i] * b[v*L .. v*L+L-1] for one k step, A[i] at a(i).
//
// With several vectors a row, each accumulator is updated in its own register (fmacc): left to
// choose, GCC writes some FMAs into the broadcast's register instead and then moves accumulators
// between registers, in the AVX-512 wide tiles' unrolled loops (with alpha and beta held in
// registers too, below: 13-14 moves and 5-7 stack accesses a loop of 96 FMAs; now 2 and none). With one vector a row the broadcast is used once and is best
// folded into the FMA as a memory operand, which only fmadd lets the compiler do.
template <class S, int MR, int NV, class AElem>
__attribute__((always_inline)) inline void ukernel_simd_step(typename S::V (&acc)[MR][NV],
                                                             AElem a, const typename S::T* b) {
  typename S::V bv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * S::L);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    const typename S::V ai = S::bcast(a(i));
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if constexpr (NV == 1)
        acc[i][v] = S::fmadd(ai, bv[v], acc[i][v]);
      else
        S::fmacc(acc[i][v], ai, bv[v]);
    }
  }
}

// The micro-kernel contract of ukernel.hpp: C[MR x NR] = alpha * A * B + beta * C, with column
// p of A at acol(p) (acol(p)(i) points to A[i][p]) and row p of B at brow(p): a + p*MR + i and
// b + p*NR for packed panels, arow[i] + koff[p] and b + boff[p] for operands read in place.
// The k loop is unrolled U times. U is chosen per shape by reading the generated loop: with
// 12 of 16 ymm (or 24 of 32 zmm) registers holding C, some unroll factors make GCC spill.
template <class S, int MR, int NV, int U, class ACol, class BRow>
__attribute__((always_inline)) inline void ukernel_simd_body(int64_t kc, typename S::T alpha,
                                                             ACol acol, BRow brow,
                                                             typename S::T beta,
                                                             typename S::T* c, int64_t ldc) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int NR = NV * S::L;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
  }
  // The C tile is needed only at the end; ask for it now so that it is in cache by then (a
  // prefetch is not a read: with beta == 0 C may hold NaN and is still never read). The builtin
  // is called directly because GCC deletes a prefetch made through a small wrapper function.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
  }
  // alpha, beta and C's place are needed only after the k loop. Passed through memory around it
  // (the empty asm may change them, so nothing computed from them before can be reused after),
  // they hold no register during the loop: kept live, GCC held the prefetches' row addresses and
  // alpha and beta in vector registers, leaving the AVX-512 wide tiles too few for theirs.
  struct {
    T alpha, beta;
    T* c;
    int64_t ldc;
  } after{alpha, beta, c, ldc};
  asm("" : "+m"(after));
  int64_t p = 0;
  for (; p + U <= kc; p += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) ukernel_simd_step<S, MR, NV>(acc, acol(p + u), brow(p + u));
  }
  for (; p < kc; ++p) ukernel_simd_step<S, MR, NV>(acc, acol(p), brow(p));
  asm("" : "+m"(after));
  alpha = after.alpha;
  beta = after.beta;
  c = after.c;
  ldc = after.ldc;

  const V va = S::set1(alpha);
  if (beta == T(0)) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(c + i * ldc + v * S::L, S::mul(va, acc[i][v]));
    }
  } else {
    const V vb = S::set1(beta);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* cp = c + i * ldc + v * S::L;
        S::store(cp, S::fmadd(vb, S::load(cp), S::mul(va, acc[i][v])));
      }
    }
  }
}

// Column p of a packed A panel.
template <class S, int MR>
__attribute__((always_inline)) inline auto packed_a_col(const typename S::T* a) {
  return [a](int64_t p) {
    const typename S::T* ap = a + p * MR;
    return [ap](int i) { return ap + i; };
  };
}

// The packed kernel (Ukernel).
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd(int64_t kc, typename S::T alpha,
                                                        const typename S::T* a,
                                                        const typename S::T* b,
                                                        typename S::T beta, typename S::T* c,
                                                        int64_t ldc) {
  constexpr int NR = NV * S::L;
  ukernel_simd_body<S, MR, NV, U>(kc, alpha, packed_a_col<S, MR>(a),
                                  [b](int64_t p) { return b + p * NR; }, beta, c, ldc);
}

// The B-in-place kernel (UkernelDirectB).
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd_direct_b(
    int64_t kc, typename S::T alpha, const typename S::T* a, const typename S::T* b,
    const int64_t* boff, typename S::T beta, typename S::T* c, int64_t ldc) {
  ukernel_simd_body<S, MR, NV, U>(kc, alpha, packed_a_col<S, MR>(a),
                                  [b, boff](int64_t p) { return b + boff[p]; }, beta, c, ldc);
}

// The A-in-place kernel (UkernelDirectA): A[i][p] = arow[i][koff[p]].
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd_direct_a(
    int64_t kc, typename S::T alpha, const typename S::T* const* arow, const int64_t* koff,
    const typename S::T* b, typename S::T beta, typename S::T* c, int64_t ldc) {
  using T = typename S::T;
  constexpr int NR = NV * S::L;
  const T* r[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) r[i] = arow[i];
  const auto acol = [&r, koff](int64_t p) {
    const int64_t o = koff[p];
    return [&r, o](int i) { return r[i] + o; };
  };
  ukernel_simd_body<S, MR, NV, U>(kc, alpha, acol, [b](int64_t p) { return b + p * NR; }, beta,
                                  c, ldc);
}

// The kernel with A's rows consecutive in memory (UkernelRowsA): A[i][p] = a[i + koff[p]]. One
// address per k step; the MR values are then at fixed displacements from it, so each is a
// broadcast operand of its FMA (no row pointers to load, unlike the A-in-place kernel).
template <class S, int MR, int NV, int U>
__attribute__((always_inline)) inline void ukernel_simd_rows_a(
    int64_t kc, typename S::T alpha, const typename S::T* a, const int64_t* koff,
    const typename S::T* b, typename S::T beta, typename S::T* c, int64_t ldc) {
  using T = typename S::T;
  constexpr int NR = NV * S::L;
  const auto acol = [a, koff](int64_t p) {
    const T* ap = a + koff[p];
    return [ap](int i) { return ap + i; };
  };
  ukernel_simd_body<S, MR, NV, U>(kc, alpha, acol, [b](int64_t p) { return b + p * NR; }, beta,
                                  c, ldc);
}

// The rows of a square block, S::L values a side: r[i] = s[i*ls .. i*ls + L).
template <class S>
__attribute__((always_inline)) inline void load_block(const typename S::T* s, int64_t ls,
                                                      typename S::V (&r)[S::L]) {
#pragma GCC unroll 16
  for (int i = 0; i < S::L; ++i) r[i] = S::load(s + i * ls);
}

// d[c*ld .. c*ld + L) = v[c] + add[c], clamped at 0 when relu is set (max(x, 0): NaN and -0 give
// +0): the stores of a transposed block (transpose_block of ukernel.hpp).
template <class S>
__attribute__((always_inline)) inline void store_block(const typename S::V (&v)[S::L],
                                                       const typename S::T* add, bool relu,
                                                       typename S::T* d, int64_t ld) {
#pragma GCC unroll 16
  for (int c = 0; c < S::L; ++c) {
    typename S::V x = S::add(v[c], S::set1(add[c]));
    if (relu) x = S::max(x, S::zero());
    S::store(d + c * ld, x);
  }
}

// transpose_block of ukernel.hpp on S: a square block of S::L values a side through registers.
// With P values in a 128-bit lane, the rows are first interleaved within lanes (float: values,
// then pairs; double: values), which leaves u[P*i + j] holding, in its lane q, column P*q + j of
// rows P*i .. P*i + P-1; then the grid of lanes is transposed: column P*q + j takes lane R from
// u[P*R + j]'s lane q. S brings unpacklo/unpackhi (and for float unpacklo2/unpackhi2, of pairs),
// and shuffle128 (4 lanes: shuffle_f32x4 / f64x2) or permute128 (2 lanes: permute2f128).
template <class S>
__attribute__((always_inline)) inline void transpose_block_simd(const typename S::T* s, int64_t ls,
                                                                const typename S::T* add,
                                                                bool relu, typename S::T* d,
                                                                int64_t ld) {
  using V = typename S::V;
  constexpr int L = S::L, P = int(16 / sizeof(typename S::T)), lanes = L / P;
  static_assert(lanes == 2 || lanes == 4, "256- or 512-bit vectors");
  V r[L], u[L];
  load_block<S>(s, ls, r);
#pragma GCC unroll 16
  for (int i = 0; i < L; i += 2) {
    u[i] = S::unpacklo(r[i], r[i + 1]);
    u[i + 1] = S::unpackhi(r[i], r[i + 1]);
  }
  if constexpr (P == 4) {
#pragma GCC unroll 16
    for (int i = 0; i < L; i += 4) {
      r[i] = S::unpacklo2(u[i], u[i + 2]);
      r[i + 1] = S::unpackhi2(u[i], u[i + 2]);
      r[i + 2] = S::unpacklo2(u[i + 1], u[i + 3]);
      r[i + 3] = S::unpackhi2(u[i + 1], u[i + 3]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) u[i] = r[i];
  }
#pragma GCC unroll 4
  for (int j = 0; j < P; ++j) {
    if constexpr (lanes == 4) {
      const V v0 = S::template shuffle128<0x44>(u[j], u[P + j]);
      const V v1 = S::template shuffle128<0xEE>(u[j], u[P + j]);
      const V v2 = S::template shuffle128<0x44>(u[2 * P + j], u[3 * P + j]);
      const V v3 = S::template shuffle128<0xEE>(u[2 * P + j], u[3 * P + j]);
      r[j] = S::template shuffle128<0x88>(v0, v2);
      r[P + j] = S::template shuffle128<0xDD>(v0, v2);
      r[2 * P + j] = S::template shuffle128<0x88>(v1, v3);
      r[3 * P + j] = S::template shuffle128<0xDD>(v1, v3);
    } else {
      r[j] = S::template permute128<0x20>(u[j], u[P + j]);
      r[P + j] = S::template permute128<0x31>(u[j], u[P + j]);
    }
  }
  store_block<S>(r, add, relu, d, ld);
}

// The register-only FMA probe of ukernel.hpp (fma_chains): kFmaChains independent chains
// acc = acc * out[0] + out[1], kept in registers, then their sum into out[0].
template <class S>
__attribute__((always_inline)) inline void fma_chains_simd(int64_t iters, typename S::T* out) {
  using T = typename S::T;
  const typename S::V a = S::set1(out[0]), b = S::set1(out[1]);
  typename S::V acc[kFmaChains];
#pragma GCC unroll 12
  for (int c = 0; c < kFmaChains; ++c) acc[c] = S::set1(T(c));
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kFmaChains; ++c) acc[c] = S::fmadd(acc[c], a, b);
  }
  typename S::V sum = acc[0];
  const typename S::V one = S::set1(T(1));
#pragma GCC unroll 12
  for (int c = 1; c < kFmaChains; ++c) sum = S::fmadd(acc[c], one, sum);
  alignas(64) T lanes[S::L];
  S::store(lanes, sum);
  out[0] = lanes[0];
}

}  // namespace
}  // namespace convcore::detail

// Defines the four micro-kernels of a tile declared by CONVCORE_DECLARE_TILE (gemm/ukernel.hpp),
// MR rows of NV vectors of S, the k loop unrolled U times, UA times in the A-in-place kernel
// (its MR row pointers compete for the general registers; unrolling more makes GCC keep fewer
// of them and also spill accumulators). Use inside namespace convcore::detail.
#define CONVCORE_DEFINE_TILE(T, TILE, ISA, S, MR, NV, U, UA)                                        \
  void ukernel_##TILE##__##ISA(int64_t kc, T alpha, const T* a, const T* b, T beta, T* c,          \
                               int64_t ldc) {                                                      \
    ukernel_simd<S, MR, NV, U>(kc, alpha, a, b, beta, c, ldc);                                     \
  }                                                                                                \
  void ukernel_##TILE##_direct_b__##ISA(int64_t kc, T alpha, const T* a, const T* b,               \
                                        const int64_t* boff, T beta, T* c, int64_t ldc) {          \
    ukernel_simd_direct_b<S, MR, NV, U>(kc, alpha, a, b, boff, beta, c, ldc);                      \
  }                                                                                                \
  void ukernel_##TILE##_direct_a__##ISA(int64_t kc, T alpha, const T* const* arow,                 \
                                        const int64_t* koff, const T* b, T beta, T* c,             \
                                        int64_t ldc) {                                             \
    ukernel_simd_direct_a<S, MR, NV, UA>(kc, alpha, arow, koff, b, beta, c, ldc);                  \
  }                                                                                                \
  void ukernel_##TILE##_rows_a__##ISA(int64_t kc, T alpha, const T* a, const int64_t* koff,        \
                                      const T* b, T beta, T* c, int64_t ldc) {                     \
    ukernel_simd_rows_a<S, MR, NV, U>(kc, alpha, a, koff, b, beta, c, ldc);                        \
  }
