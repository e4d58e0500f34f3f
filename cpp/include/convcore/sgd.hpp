#pragma once
// Stochastic gradient descent, in place (the tutorial's third step, with the usual extensions):
//   v = momentum * v + grad + weight_decay * param;   param -= lr * v
// With momentum == 0 no velocity is kept (velocity may be null): param -= lr * (grad + wd * param).
#include <cstdint>

namespace convcore {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
};

// Throws std::invalid_argument (touching nothing) when lr, momentum or weight_decay is negative or
// not finite, or when momentum != 0 and velocity is null.
template <class T>
void sgd_update(int64_t n, T* param, const T* grad, T* velocity, const SgdOptions& opt);

}  // namespace convcore
