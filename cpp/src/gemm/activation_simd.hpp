#pragma once
// The activations as loops the vectoriser takes, for the ISA files (ukernel_avx2.cpp,
// ukernel_avx512.cpp): the kernel table's `activate` of their rows. float sigmoid and tanh are
// computed in double with a branch-free e^x and rounded once, within 0.51 ulp of the exact
// values; libm's scalar expf / tanhf, which the portable row keeps, cost 2-12 ns an element.
// double keeps libm (an out-of-line call, so no ISA-flagged copy of it exists).
//
// Internal linkage only, and no inline function from a standard header: each ISA file gets its
// own copy built with its own flags (see ukernel_simd.hpp).
#include <cmath>
#include <cstdint>

#include "convcore/activation.hpp"

namespace convcore::detail {
namespace {

// c ? a : b through bit masks: compilers keep it branch-free (a ?: on doubles becomes a branch,
// which stops the vectoriser).
__attribute__((always_inline)) inline double select_bits(bool c, double a, double b) {
  int64_t ab, bb;
  __builtin_memcpy(&ab, &a, sizeof a);
  __builtin_memcpy(&bb, &b, sizeof b);
  const int64_t m = -int64_t(c);
  const int64_t r = (ab & m) | (bb & ~m);
  double out;
  __builtin_memcpy(&out, &r, sizeof out);
  return out;
}

// e^x, x clamped to [-700, 700] (NaN passes through): x = n ln2 + r with |r| <= ln2/2, e^r by its
// Taylor series to r^12 (truncation below 2.5e-16 relative), 2^n built in the exponent bits.
__attribute__((always_inline)) inline double exp_clamped(double x) {
  x = select_bits(x < -700.0, -700.0, x);
  x = select_bits(x > 700.0, 700.0, x);
  constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 0.6931471803691238,
                   kLn2Lo = 1.9082149292705877e-10;
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52: t's low bits hold round(x log2 e)
  const double t = x * kLog2e + kShift;
  const double n = t - kShift;
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 479001600;  // 1/12!, then Horner down to 1/0!
  p = p * r + 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t tb;
  __builtin_memcpy(&tb, &t, sizeof t);
  // n + 1023 in the exponent field (|n| <= 1010 after the clamp; a NaN x gives NaN through p).
  // Unsigned, so that a NaN's bits wrap instead of overflowing or shifting a negative value.
  const uint64_t sb = (tb - uint64_t(0x4338000000000000) + 1023) << 52;
  double scale;
  __builtin_memcpy(&scale, &sb, sizeof scale);
  return p * scale;
}

__attribute__((always_inline)) inline float sigmoid_f32(float y) {
  return float(1.0 / (1.0 + exp_clamped(-double(y))));
}

__attribute__((always_inline)) inline float tanh_f32(float y) {
  const double a = __builtin_fabs(double(y));
  const double t = 1.0 - 2.0 / (exp_clamped(2.0 * a) + 1.0);
  // Below 2^-12, tanh(a) = a (1 - a^2/3 + ...) rounds to a; the formula would lose digits there.
  return float(__builtin_copysign(select_bits(a < 0x1p-12, a, t), double(y)));
}

// y[i] = act(y[i]) for i < n.
void activate_span_f32(Activation act, float* y, int64_t n) {
  switch (act) {
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_f32(y[i]);
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = tanh_f32(y[i]);
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
      return;
    case Activation::identity: return;
  }
}

void activate_span_f64(Activation act, double* y, int64_t n) {
  switch (act) {
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0 / (1.0 + ::exp(-y[i]));
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = ::tanh(y[i]);
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] > 0.0 ? y[i] : 0.0;
      return;
    case Activation::identity: return;
  }
}

}  // namespace
}  // namespace convcore::detail
