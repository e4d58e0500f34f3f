#include "convcore/sgd.hpp"

#include <algorithm>
#include <cmath>

#include "convcore/error.hpp"
#include "convcore/parallel.hpp"

namespace convcore {

template <class T>
void sgd_update(int64_t n, T* param, const T* grad, T* velocity, const SgdOptions& opt) {
  CONVCORE_CHECK(n >= 0, "sgd_update: size must be >= 0, got ", n);
  CONVCORE_CHECK(std::isfinite(opt.lr) && opt.lr >= 0, "sgd_update: lr must be finite and >= 0, got ",
                 opt.lr);
  CONVCORE_CHECK(std::isfinite(opt.momentum) && opt.momentum >= 0,
                 "sgd_update: momentum must be finite and >= 0, got ", opt.momentum);
  CONVCORE_CHECK(std::isfinite(opt.weight_decay) && opt.weight_decay >= 0,
                 "sgd_update: weight_decay must be finite and >= 0, got ", opt.weight_decay);
  CONVCORE_CHECK(opt.momentum == 0 || velocity != nullptr,
                 "sgd_update: momentum=", opt.momentum, " needs a velocity buffer");
  CONVCORE_CHECK(!opt.nesterov || opt.momentum > 0, "sgd_update: nesterov needs momentum > 0, got ",
                 opt.momentum);
  const T lr = T(opt.lr), mu = T(opt.momentum), wd = T(opt.weight_decay);
  const bool nesterov = opt.nesterov;
  constexpr int64_t kBlock = 4096;
  detail::parallel_for((n + kBlock - 1) / kBlock, kBlock, [&](int64_t blk) {
    const int64_t end = std::min(n, (blk + 1) * kBlock);
    for (int64_t i = blk * kBlock; i < end; ++i) {
      T step = grad[i] + wd * param[i];
      if (velocity) {
        const T v = mu * velocity[i] + step;
        velocity[i] = v;
        step = nesterov ? step + mu * v : v;
      }
      param[i] -= lr * step;
    }
  });
}

template void sgd_update<float>(int64_t, float*, const float*, float*, const SgdOptions&);
template void sgd_update<double>(int64_t, double*, const double*, double*, const SgdOptions&);

}  // namespace convcore
