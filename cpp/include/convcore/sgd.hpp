#pragma once
// Stochastic gradient descent, in place (the tutorial's third step, with the usual extensions):
//   v = momentum * v + grad + weight_decay * param;   param -= lr * v
// With momentum == 0 no velocity is kept (velocity may be null): param -= lr * (grad + wd * param).
// Nesterov momentum (PyTorch's, dampening 0): the step is d + momentum * v with d = grad + wd * param
// and v updated as above; it needs momentum > 0.
#include <cstdint>

namespace convcore {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// Throws std::invalid_argument (touching nothing) when lr, momentum or weight_decay is negative or
// not finite, or when momentum != 0 and velocity is null, or
// when nesterov is set with momentum == 0.
template <class T>
void sgd_update(int64_t n, T* param, const T* grad, T* velocity, const SgdOptions& opt);

}  // namespace convcore
