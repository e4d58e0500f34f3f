#pragma once
// The element loops of the channels-last batch norm over one wide row (batchnorm.cpp), compiled
// once per instruction set: the portable copy in batchnorm.cpp (16-byte vectors on x86-64) and an
// AVX2 copy in batchnorm_avx2.cpp (-mavx2, no FMA, no contraction), chosen at run time when the
// active ISA is avx2 or avx512. Each element is computed by the same operations in the same
// order in both (the vectors only hold independent elements), so both copies give the same bits.
//
// As in depthwise/direct_loops.hpp, everything here has internal linkage and calls no inline
// function of a standard header, so that no copy built with ISA flags can be merged into the
// portable path.
#include <cstdint>

namespace convcore::detail {

// The loop table of one instruction set; every loop runs over elements j < n.
template <class T>
struct BatchNormLoops {
  // acc[j] += x[j]
  void (*sum)(const T* x, int64_t n, double* acc);
  // acc[j] += (x[j] - mu[j])^2
  void (*sum_sq)(const T* x, const double* mu, int64_t n, double* acc);
  // acc[j] += dy[j];  acc1[j] += dy[j] * (x[j] - mu[j])
  void (*sum_grad)(const T* x, const T* dy, const double* mu, int64_t n, double* acc, double* acc1);
  // y[j] = (x[j] - m[j]) * s[j] + h[j]
  void (*normalize)(const T* x, const T* m, const T* s, const T* h, int64_t n, T* y);
  // dx[j] = a[j]*dy[j] + b[j]*(x[j] - m[j]) + d[j]
  void (*input_grad)(const T* x, const T* dy, const T* a, const T* b, const T* d, const T* m,
                     int64_t n, T* dx);
  // dx[j] = a[j]*dy[j]
  void (*input_grad_eval)(const T* dy, const T* a, int64_t n, T* dx);
};

namespace {

// VB (the vector width in bytes the copy is built for) only keeps the copies' names apart.
template <class T, int VB>
struct BatchNormLoopsOf {
  static void sum(const T* __restrict x, int64_t n, double* __restrict acc) {
    for (int64_t j = 0; j < n; ++j) acc[j] += double(x[j]);
  }
  static void sum_sq(const T* __restrict x, const double* __restrict mu, int64_t n,
                     double* __restrict acc) {
    for (int64_t j = 0; j < n; ++j) {
      const double d = double(x[j]) - mu[j];
      acc[j] += d * d;
    }
  }
  static void sum_grad(const T* __restrict x, const T* __restrict dy, const double* __restrict mu,
                       int64_t n, double* __restrict acc, double* __restrict acc1) {
    for (int64_t j = 0; j < n; ++j) {
      acc[j] += double(dy[j]);
      acc1[j] += double(dy[j]) * (double(x[j]) - mu[j]);
    }
  }
  static void normalize(const T* __restrict x, const T* __restrict m, const T* __restrict s,
                        const T* __restrict h, int64_t n, T* __restrict y) {
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - m[j]) * s[j] + h[j];
  }
  static void input_grad(const T* __restrict x, const T* __restrict dy, const T* __restrict a,
                         const T* __restrict b, const T* __restrict d, const T* __restrict m,
                         int64_t n, T* __restrict dx) {
    for (int64_t j = 0; j < n; ++j) dx[j] = a[j] * dy[j] + b[j] * (x[j] - m[j]) + d[j];
  }
  static void input_grad_eval(const T* __restrict dy, const T* __restrict a, int64_t n,
                              T* __restrict dx) {
    for (int64_t j = 0; j < n; ++j) dx[j] = a[j] * dy[j];
  }
};

template <class T, int VB>
constexpr BatchNormLoops<T> batchnorm_loops_for() {
  using L = BatchNormLoopsOf<T, VB>;
  return {&L::sum, &L::sum_sq, &L::sum_grad, &L::normalize, &L::input_grad, &L::input_grad_eval};
}

}  // namespace

#ifdef CONVCORE_X86_SIMD
extern const BatchNormLoops<float> kBatchNormAvx2F32;
extern const BatchNormLoops<double> kBatchNormAvx2F64;
#endif

}  // namespace convcore::detail
