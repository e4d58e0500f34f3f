#pragma once
// Adam and AdamW, in place, as torch.optim.Adam / AdamW (amsgrad off). With t the step count
// after this step (t >= 1) and d = grad (+ weight_decay * param for Adam's coupled decay):
//   AdamW only: param *= 1 - lr * weight_decay                      (decoupled decay)
//   m = m + (1 - beta1) * (d - m)                                   (first moment)
//   v = beta2 * v + (1 - beta2) * d * d                             (second moment)
//   param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#include <cstdint>

namespace convcore {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

// Throws std::invalid_argument (touching nothing) when step < 1, lr, eps or weight_decay is
// negative or not finite, a beta is outside [0, 1), or a pointer is null while n > 0.
template <class T>
void adam_update(int64_t n, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t step,
                 const AdamOptions& opt);

}  // namespace convcore
