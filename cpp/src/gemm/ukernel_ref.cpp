// Portable micro-kernel: plain loops over a local MR x NR accumulator with compile-time bounds,
// written so that the compiler keeps the accumulator in vector registers. It is the generic
// path and the model the ISA kernels follow.
#include <cstdint>

#include "gemm/ukernel.hpp"

namespace convcore::detail {

namespace {

// The kernel body with A[i][p] at aelem(i, p) and row p of B at brow(p).
template <class T, int MR, int NR, class AElem, class BRow>
void ukernel_ref_body(int64_t kc, T alpha, AElem aelem, BRow brow, T beta, T* c, int64_t ldc) {
  T acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const T* b = brow(p);
    // Unrolling i leaves NR-wide rows that vectorise at -O2 as well as -O3.
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T ai = aelem(i, p);
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  if (beta == T(0)) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) c[i * ldc + j] = alpha * acc[i][j];
  } else {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) c[i * ldc + j] = alpha * acc[i][j] + beta * c[i * ldc + j];
  }
}

}  // namespace

template <class T, int MR, int NR>
void ukernel_ref(int64_t kc, T alpha, const T* a, const T* b, T beta, T* c, int64_t ldc) {
  ukernel_ref_body<T, MR, NR>(
      kc, alpha, [a](int i, int64_t p) { return a[p * MR + i]; },
      [b](int64_t p) { return b + p * NR; }, beta, c, ldc);
}

template <class T, int MR, int NR>
void ukernel_ref_direct_b(int64_t kc, T alpha, const T* a, const T* b, const int64_t* boff,
                          T beta, T* c, int64_t ldc) {
  ukernel_ref_body<T, MR, NR>(
      kc, alpha, [a](int i, int64_t p) { return a[p * MR + i]; },
      [b, boff](int64_t p) { return b + boff[p]; }, beta, c, ldc);
}

template <class T, int MR, int NR>
void ukernel_ref_direct_a(int64_t kc, T alpha, const T* const* arow, const int64_t* koff,
                          const T* b, T beta, T* c, int64_t ldc) {
  ukernel_ref_body<T, MR, NR>(
      kc, alpha, [arow, koff](int i, int64_t p) { return arow[i][koff[p]]; },
      [b](int64_t p) { return b + p * NR; }, beta, c, ldc);
}

template <class T, int MR, int NR>
void ukernel_ref_rows_a(int64_t kc, T alpha, const T* a, const int64_t* koff, const T* b, T beta,
                        T* c, int64_t ldc) {
  ukernel_ref_body<T, MR, NR>(
      kc, alpha, [a, koff](int i, int64_t p) { return a[i + koff[p]]; },
      [b](int64_t p) { return b + p * NR; }, beta, c, ldc);
}

namespace {
template <class T>
void activate_span_ref_t(Activation act, T* y, int64_t n) {
  switch (act) {
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = activate(Activation::sigmoid, y[i]);
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = activate(Activation::tanh, y[i]);
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = activate(Activation::relu, y[i]);
      return;
    case Activation::identity: return;
  }
}
}  // namespace

void activate_span_ref(Activation act, float* y, int64_t n) { activate_span_ref_t(act, y, n); }
void activate_span_ref(Activation act, double* y, int64_t n) { activate_span_ref_t(act, y, n); }

// The shapes of the generic path.
using GenericF32 = GemmBlocking<float, Isa::generic>;
using GenericF64 = GemmBlocking<double, Isa::generic>;
template void ukernel_ref<float, GenericF32::MR, GenericF32::NR>(int64_t, float, const float*,
                                                                 const float*, float, float*,
                                                                 int64_t);
template void ukernel_ref<double, GenericF64::MR, GenericF64::NR>(int64_t, double, const double*,
                                                                  const double*, double, double*,
                                                                  int64_t);
template void ukernel_ref_direct_b<float, GenericF32::MR, GenericF32::NR>(
    int64_t, float, const float*, const float*, const int64_t*, float, float*, int64_t);
template void ukernel_ref_direct_b<double, GenericF64::MR, GenericF64::NR>(
    int64_t, double, const double*, const double*, const int64_t*, double, double*, int64_t);
template void ukernel_ref_direct_a<float, GenericF32::MR, GenericF32::NR>(
    int64_t, float, const float* const*, const int64_t*, const float*, float, float*, int64_t);
template void ukernel_ref_direct_a<double, GenericF64::MR, GenericF64::NR>(
    int64_t, double, const double* const*, const int64_t*, const double*, double, double*,
    int64_t);
template void ukernel_ref_rows_a<float, GenericF32::MR, GenericF32::NR>(
    int64_t, float, const float*, const int64_t*, const float*, float, float*, int64_t);
template void ukernel_ref_rows_a<double, GenericF64::MR, GenericF64::NR>(
    int64_t, double, const double*, const int64_t*, const double*, double, double*, int64_t);

}  // namespace convcore::detail
