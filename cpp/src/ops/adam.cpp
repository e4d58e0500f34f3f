#include "convcore/adam.hpp"

#include <algorithm>
#include <cmath>

#include "convcore/error.hpp"
#include "convcore/parallel.hpp"

namespace convcore {

template <class T>
void adam_update(int64_t n, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t step,
                 const AdamOptions& opt) {
  CONVCORE_CHECK(n >= 0, "adam_update: size must be >= 0, got ", n);
  CONVCORE_CHECK(step >= 1, "adam_update: step must be >= 1, got ", step);
  CONVCORE_CHECK(std::isfinite(opt.lr) && opt.lr >= 0, "adam_update: lr must be finite and >= 0, got ",
                 opt.lr);
  CONVCORE_CHECK(opt.beta1 >= 0 && opt.beta1 < 1, "adam_update: beta1 must be in [0, 1), got ", opt.beta1);
  CONVCORE_CHECK(opt.beta2 >= 0 && opt.beta2 < 1, "adam_update: beta2 must be in [0, 1), got ", opt.beta2);
  CONVCORE_CHECK(std::isfinite(opt.eps) && opt.eps >= 0, "adam_update: eps must be finite and >= 0, got ",
                 opt.eps);
  CONVCORE_CHECK(std::isfinite(opt.weight_decay) && opt.weight_decay >= 0,
                 "adam_update: weight_decay must be finite and >= 0, got ", opt.weight_decay);
  CONVCORE_CHECK(n == 0 || (param && grad && exp_avg && exp_avg_sq),
                 "adam_update: param, grad, exp_avg and exp_avg_sq are required");
  // The bias corrections in double, once per call (as PyTorch computes them on the host).
  const double bc1 = 1.0 - std::pow(opt.beta1, double(step));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(opt.beta2, double(step)));
  const T step_size = T(opt.lr / bc1), bc2s = T(bc2_sqrt), eps = T(opt.eps);
  const T one_b1 = T(1.0 - opt.beta1), b2 = T(opt.beta2), one_b2 = T(1.0 - opt.beta2);
  const bool decoupled = opt.decoupled_weight_decay;
  const T wd = T(opt.weight_decay), shrink = T(1.0 - opt.lr * opt.weight_decay);
  constexpr int64_t kBlock = 4096;
  detail::parallel_for((n + kBlock - 1) / kBlock, kBlock, [&](int64_t blk) {
    const int64_t end = std::min(n, (blk + 1) * kBlock);
    for (int64_t i = blk * kBlock; i < end; ++i) {
      T p = param[i], d = grad[i];
      if (decoupled)
        p *= shrink;
      else
        d += wd * p;
      const T m = exp_avg[i] + one_b1 * (d - exp_avg[i]);
      const T v = b2 * exp_avg_sq[i] + one_b2 * d * d;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      param[i] = p - step_size * (m / (std::sqrt(v) / bc2s + eps));
    }
  });
}

template void adam_update<float>(int64_t, float*, const float*, float*, float*, int64_t, const AdamOptions&);
template void adam_update<double>(int64_t, double*, const double*, double*, double*, int64_t,
                                  const AdamOptions&);

}  // namespace convcore
