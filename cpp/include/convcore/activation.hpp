#pragma once
// Activations fused into the forward pass, and their derivatives written in terms of the
// activation's output a = f(y), which is what a layer keeps:
//   identity: f' = 1   relu: f' = [a > 0]   sigmoid: f' = a(1-a)   tanh: f' = 1 - a^2
#include <cmath>
#include <cstdint>

namespace convcore {

enum class Activation { identity, relu, sigmoid, tanh };

// sigmoid and tanh are evaluated in double and rounded once to T: within 1 ulp for float (float
// arithmetic, 1/(1 + expf(-y)), loses the subnormal results and reaches 2 ulp). The GEMM paths
// run them through their kernel row's vectorised pass (gemm/activation_simd.hpp), to the same
// accuracy.
template <class T>
inline T activate(Activation act, T y) {
  switch (act) {
    case Activation::relu: return y > T(0) ? y : T(0);  // NaN stays NaN's problem: max drops it
    case Activation::sigmoid: return T(1.0 / (1.0 + std::exp(-double(y))));
    case Activation::tanh: return T(std::tanh(double(y)));
    case Activation::identity: break;
  }
  return y;
}

template <class T>
inline T activation_derivative(Activation act, T a) {
  switch (act) {
    case Activation::relu: return a > T(0) ? T(1) : T(0);
    case Activation::sigmoid: return a * (T(1) - a);
    case Activation::tanh: return T(1) - a * a;
    case Activation::identity: break;
  }
  return T(1);
}

// y[i] = f(x[i]) for i < n (x == y allowed), on convcore's threads; relu gives 0 for NaN (a
// comparison with 0), sigmoid and tanh go through the active kernel row's vectorised pass.
template <class T>
void activation_forward(Activation act, int64_t n, const T* x, T* y);

// delta[i] = grad[i] * f'(output[i]) for i < n  (the tutorial's delta = dE/da * f'(net)).
template <class T>
void activation_backward(Activation act, int64_t n, const T* grad, const T* output, T* delta);

}  // namespace convcore
