#include "convcore/batchnorm.hpp"

#include <cmath>

#include "convcore/error.hpp"
#include "convcore/parallel.hpp"

namespace convcore {

namespace {

void validate(const BatchNormShape& s, const char* op) {
  CONVCORE_CHECK(s.n >= 1 && s.c >= 1 && s.hw >= 1, op, ": N, C and H*W must be >= 1, got (", s.n,
                 ", ", s.c, ", ", s.hw, ")");
  CONVCORE_CHECK(s.hw <= INT64_MAX / s.n && s.n * s.hw <= INT64_MAX / s.c, op, ": size overflows");
}

// Sums in double over 8 independent lanes: the lanes vectorise (a single running sum would be
// one long chain of dependent additions), and the order is fixed, so results never depend on
// the thread count.
constexpr int kLanes = 8;

template <class T, class F>
double lane_sum(int64_t n, F&& term) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  for (; i < n; ++i) acc[0] += term(i);
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

}  // namespace

template <class T>
void batchnorm_forward(const BatchNormShape& s, const T* x, const T* gamma, const T* beta,
                       bool batch_stats, double eps, double momentum, T* running_mean,
                       T* running_var, T* save_mean, T* save_invstd, T* y) {
  validate(s, "batchnorm_forward");
  CONVCORE_CHECK(std::isfinite(eps) && eps > 0, "batchnorm_forward: eps must be finite and > 0, got ", eps);
  CONVCORE_CHECK(momentum >= 0 && momentum <= 1, "batchnorm_forward: momentum must be in [0, 1], got ",
                 momentum);
  const int64_t m = s.n * s.hw;
  CONVCORE_CHECK(!batch_stats || m > 1, "batchnorm_forward: batch statistics need more than 1 value per "
                 "channel, got N*H*W = ", m);
  CONVCORE_CHECK(batch_stats || (running_mean && running_var),
                 "batchnorm_forward: running_mean and running_var are required without batch statistics");
  CONVCORE_CHECK((running_mean == nullptr) == (running_var == nullptr),
                 "batchnorm_forward: running_mean and running_var go together");
  CONVCORE_CHECK(x && y && save_mean && save_invstd, "batchnorm_forward: x, y and the saved statistics are required");
  const int64_t stride = s.c * s.hw;
  detail::parallel_for(s.c, 3 * m, [&](int64_t c) {
    double mean, var;
    if (batch_stats) {
      double sum = 0;
      for (int64_t b = 0; b < s.n; ++b) {
        const T* xp = x + b * stride + c * s.hw;
        sum += lane_sum<T>(s.hw, [&](int64_t i) { return double(xp[i]); });
      }
      mean = sum / double(m);
      double sq = 0;  // second pass: no cancellation
      for (int64_t b = 0; b < s.n; ++b) {
        const T* xp = x + b * stride + c * s.hw;
        sq += lane_sum<T>(s.hw, [&](int64_t i) {
          const double d = double(xp[i]) - mean;
          return d * d;
        });
      }
      var = sq / double(m);
      if (running_mean) {
        running_mean[c] = T((1 - momentum) * double(running_mean[c]) + momentum * mean);
        running_var[c] = T((1 - momentum) * double(running_var[c]) + momentum * sq / double(m - 1));
      }
    } else {
      mean = double(running_mean[c]);
      var = double(running_var[c]);
    }
    const double invstd = 1.0 / std::sqrt(var + eps);
    save_mean[c] = T(mean);
    save_invstd[c] = T(invstd);
    // y = (x - mean) * scale + beta (centred first: no cancellation when |mean| >> std)
    const T scale = T((gamma ? double(gamma[c]) : 1.0) * invstd), tm = T(mean);
    const T shift = beta ? beta[c] : T(0);
    for (int64_t b = 0; b < s.n; ++b) {
      const T* xp = x + b * stride + c * s.hw;
      T* yp = y + b * stride + c * s.hw;
      for (int64_t i = 0; i < s.hw; ++i) yp[i] = (xp[i] - tm) * scale + shift;
    }
  });
}

template <class T>
void batchnorm_backward(const BatchNormShape& s, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, bool batch_stats, T* dx,
                        T* dgamma, T* dbeta, bool accumulate) {
  validate(s, "batchnorm_backward");
  CONVCORE_CHECK(x && dy && save_mean && save_invstd, "batchnorm_backward: x, grad_output and the saved "
                 "statistics are required");
  const int64_t m = s.n * s.hw, stride = s.c * s.hw;
  detail::parallel_for(s.c, 3 * m, [&](int64_t c) {
    const double mean = double(save_mean[c]), invstd = double(save_invstd[c]);
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t b = 0; b < s.n; ++b) {
      const T* xp = x + b * stride + c * s.hw;
      const T* gp = dy + b * stride + c * s.hw;
      sum_dy += lane_sum<T>(s.hw, [&](int64_t i) { return double(gp[i]); });
      sum_dy_xhat += lane_sum<T>(s.hw, [&](int64_t i) { return double(gp[i]) * (double(xp[i]) - mean); });
    }
    sum_dy_xhat *= invstd;
    if (dbeta) dbeta[c] = T((accumulate ? double(dbeta[c]) : 0.0) + sum_dy);
    if (dgamma) dgamma[c] = T((accumulate ? double(dgamma[c]) : 0.0) + sum_dy_xhat);
    if (!dx) return;
    const double k = (gamma ? double(gamma[c]) : 1.0) * invstd;
    const T ta = T(k);
    if (!batch_stats) {
      for (int64_t b = 0; b < s.n; ++b) {
        const T* gp = dy + b * stride + c * s.hw;
        T* op = dx + b * stride + c * s.hw;
        for (int64_t i = 0; i < s.hw; ++i) op[i] = ta * gp[i];
      }
      return;
    }
    // dx = k*dy - k*sum_dy/M - k*xhat*sum_dy_xhat/M = a*dy + b*(x - mean) + d
    const T tb = T(-k * invstd * sum_dy_xhat / double(m)), td = T(-k * sum_dy / double(m));
    const T tm = T(mean);
    for (int64_t b = 0; b < s.n; ++b) {
      const T* xp = x + b * stride + c * s.hw;
      const T* gp = dy + b * stride + c * s.hw;
      T* op = dx + b * stride + c * s.hw;
      for (int64_t i = 0; i < s.hw; ++i) op[i] = ta * gp[i] + tb * (xp[i] - tm) + td;
    }
  });
}

#define CONVCORE_INSTANTIATE(T)                                                                   \
  template void batchnorm_forward<T>(const BatchNormShape&, const T*, const T*, const T*, bool,  \
                                     double, double, T*, T*, T*, T*, T*);                        \
  template void batchnorm_backward<T>(const BatchNormShape&, const T*, const T*, const T*,        \
                                      const T*, const T*, bool, T*, T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore
