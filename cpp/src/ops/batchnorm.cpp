#include "convcore/batchnorm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "convcore/error.hpp"
#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "ops/batchnorm_loops.hpp"

namespace convcore {

namespace {

void validate(const BatchNormShape& s, const char* op) {
  CONVCORE_CHECK(s.n >= 1 && s.c >= 1 && s.hw >= 1, op, ": N, C and H*W must be >= 1, got (", s.n,
                 ", ", s.c, ", ", s.hw, ")");
  CONVCORE_CHECK(s.hw <= INT64_MAX / s.n && s.n * s.hw <= INT64_MAX / s.c, op, ": size overflows");
}

// ---- NHWC: x is a [M x C] matrix, rows n*hw + i ----
//
// The rows are cut into blocks of kRowBlock (fixed, never derived from the thread count: every sum
// is added in the same order whatever the threads), run in parallel. Within a block the elements
// are taken as wide rows of w = R*C values (R whole rows, w about kWide): element j of a wide row
// is channel j % C. With few channels a plain row would leave the vector loops mostly prologue
// and epilogue; the per-channel arrays (mean, coefficients) are tiled to width w to match.
constexpr int64_t kRowBlock = 256;
constexpr int64_t kWide = 256;

int64_t wide_width(int64_t c) { return c * std::max<int64_t>(1, kWide / c); }

template <class U>
std::vector<U> tiled(const std::vector<U>& v, int64_t w) {
  std::vector<U> t(static_cast<size_t>(w));
  for (int64_t j = 0; j < w; ++j) t[static_cast<size_t>(j)] = v[static_cast<size_t>(j) % v.size()];
  return t;
}

// f(e0, n) for every wide row [e0, e0 + n) of the block's elements, the blocks in parallel.
template <class F>
void for_wide_rows(int64_t rows, int64_t c, int64_t w, int64_t nsum, F&& f) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  detail::parallel_for(blocks, detail::work_mul(kRowBlock, c * nsum), [&](int64_t b) {
    const int64_t e1 = std::min(rows, (b + 1) * kRowBlock) * c;
    for (int64_t e0 = b * kRowBlock * c; e0 < e1; e0 += w) f(b, e0, std::min(w, e1 - e0));
  });
}

// sums[s*c + k], s < nsum: channel k's sum number s. add(e0, n, acc) adds the terms of elements
// [e0, e0 + n) into acc[j] (sum 0) and acc[w + j] (sum 1). Per block, then the blocks in order,
// then the R rows of the wide row folded in order.
template <class F>
void channel_sums(int64_t rows, int64_t c, int64_t w, int64_t nsum, F&& add, double* sums) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock, width = nsum * w;
  std::vector<double> partial(static_cast<size_t>(blocks * width), 0.0);
  for_wide_rows(rows, c, w, nsum, [&](int64_t b, int64_t e0, int64_t n) {
    add(e0, n, partial.data() + b * width);
  });
  std::vector<double> total(static_cast<size_t>(width), 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < width; ++j) total[j] += partial[static_cast<size_t>(b * width + j)];
  for (int64_t q = 0; q < nsum; ++q)
    for (int64_t k = 0; k < c; ++k) {
      double v = 0;
      for (int64_t j = k; j < w; j += c) v += total[q * w + j];
      sums[q * c + k] = v;
    }
}

// The element loops over a wide row (batchnorm_loops.hpp): the portable copy built here.
const detail::BatchNormLoops<float> kLoopsGenericF32 = detail::batchnorm_loops_for<float, 16>();
const detail::BatchNormLoops<double> kLoopsGenericF64 = detail::batchnorm_loops_for<double, 16>();

// The wide rows' element loops of the active ISA: the AVX2 copy on the avx2 and avx512 paths.
template <class T>
const detail::BatchNormLoops<T>& nhwc_loops() {
#ifdef CONVCORE_X86_SIMD
  if (active_isa() != Isa::generic && isa_supported(Isa::avx2)) {
    if constexpr (sizeof(T) == 4) return detail::kBatchNormAvx2F32;
    else return detail::kBatchNormAvx2F64;
  }
#endif
  if constexpr (sizeof(T) == 4) return kLoopsGenericF32;
  else return kLoopsGenericF64;
}

// ---- NCHW: channel c is mb planes of hw contiguous values ----
//
// A channel's planes are run through the same element loops as the NHWC rows, in runs of at most
// kPlaneLanes values: each position of a run has its own running sum (acc[j]), folded in order at
// the end, so the order is fixed by the shape alone; the per-element coefficient arrays hold the
// channel's one value.
constexpr int64_t kPlaneLanes = 64;

// f(offset, n) for the runs of channel c, image by image.
template <class F>
void for_plane_runs(const BatchNormShape& s, int64_t c, F&& f) {
  for (int64_t b = 0; b < s.n; ++b) {
    const int64_t base = (b * s.c + c) * s.hw;
    for (int64_t i = 0; i < s.hw; i += kPlaneLanes) f(base + i, std::min(kPlaneLanes, s.hw - i));
  }
}

double fold(const double* acc) {
  double total = 0;
  for (int64_t j = 0; j < kPlaneLanes; ++j) total += acc[j];
  return total;
}

// ---- few channels: coefficients in registers ----
//
// The element-wise passes (normalisation, input gradient) of the wide rows read one tiled
// per-channel array per coefficient for every element. When a row is one or two 32-byte vectors
// (8 or 16 float channels, 4 or 8 double), the rows are instead taken one by one, in memory
// order, with the row's coefficients in local arrays the compiler keeps in registers: one load
// per input element. (Column tiles of 32 bytes running down a block of rows, tried for more
// channels, lost to the wide rows: strided rows read 0.6x as fast here.) Element by element the
// arithmetic is the wide rows', so the results are the same bits.
template <class T>
constexpr int64_t kVec = 32 / int64_t(sizeof(T));

// f(r0, r1) for every block of rows [r0, r1), the blocks in parallel.
template <class F>
void for_row_blocks(int64_t rows, int64_t work_per_row, F&& f) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  detail::parallel_for(blocks, detail::work_mul(kRowBlock, work_per_row), [&](int64_t b) {
    f(b * kRowBlock, std::min(rows, (b + 1) * kRowBlock));
  });
}

// y[r][k] = (x[r][k] - tm[k]) * scale[k] + shift[k] for every row, C channels.
template <int64_t C, class T>
void normalize_rows(const T* x, int64_t rows, const T* tm, const T* scale, const T* shift, T* y) {
  for_row_blocks(rows, C, [&](int64_t r0, int64_t r1) {
    T m[C], sc[C], sh[C];
    for (int64_t k = 0; k < C; ++k) m[k] = tm[k], sc[k] = scale[k], sh[k] = shift[k];
    for (int64_t r = r0; r < r1; ++r) {
      const T* __restrict xr = x + r * C;
      T* __restrict yr = y + r * C;
      for (int64_t k = 0; k < C; ++k) yr[k] = (xr[k] - m[k]) * sc[k] + sh[k];
    }
  });
}

// dx[r][k] = a[k]*dy[r][k] + b[k]*(x[r][k] - tm[k]) + d[k] with BATCH (batch statistics), else
// a[k]*dy[r][k], for every row, C channels.
template <int64_t C, bool BATCH, class T>
void input_grad_rows(const T* x, const T* dy, int64_t rows, const T* ta,
                     const T* tb, const T* td, const T* tm, T* dx) {
  for_row_blocks(rows, C, [&](int64_t r0, int64_t r1) {
    T a[C], b[C], d[C], m[C];
    for (int64_t k = 0; k < C; ++k) a[k] = ta[k], b[k] = tb[k], d[k] = td[k], m[k] = tm[k];
    for (int64_t r = r0; r < r1; ++r) {
      const T* __restrict xr = x + r * C;
      const T* __restrict gr = dy + r * C;
      T* __restrict out = dx + r * C;
      if (BATCH) {
        for (int64_t k = 0; k < C; ++k) out[k] = a[k] * gr[k] + b[k] * (xr[k] - m[k]) + d[k];
      } else {
        for (int64_t k = 0; k < C; ++k) out[k] = a[k] * gr[k];
      }
    }
  });
}

template <class T>
void batchnorm_forward_nhwc(const BatchNormShape& s, const T* x, const T* gamma, const T* beta,
                            bool batch_stats, double eps, double momentum, T* running_mean,
                            T* running_var, T* save_mean, T* save_invstd, T* y) {
  const int64_t c = s.c, m = s.n * s.hw, w = wide_width(c);
  const detail::BatchNormLoops<T>& L = nhwc_loops<T>();
  std::vector<double> mean(static_cast<size_t>(c)), var(static_cast<size_t>(c));
  if (batch_stats) {
    channel_sums(m, c, w, 1, [&](int64_t e0, int64_t n, double* acc) { L.sum(x + e0, n, acc); },
                 mean.data());
    for (auto& v : mean) v /= double(m);
    const std::vector<double> mu_w = tiled(mean, w);
    const double* mu = mu_w.data();
    channel_sums(m, c, w, 1, [&](int64_t e0, int64_t n, double* acc) {  // no cancellation
      L.sum_sq(x + e0, mu, n, acc);
    }, var.data());
    for (int64_t k = 0; k < c; ++k) {
      const double sq = var[k];
      var[k] = sq / double(m);
      if (running_mean) {
        running_mean[k] = T((1 - momentum) * double(running_mean[k]) + momentum * mean[k]);
        running_var[k] = T((1 - momentum) * double(running_var[k]) + momentum * sq / double(m - 1));
      }
    }
  } else {
    for (int64_t k = 0; k < c; ++k) mean[k] = double(running_mean[k]), var[k] = double(running_var[k]);
  }
  std::vector<T> tm(static_cast<size_t>(c)), scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t k = 0; k < c; ++k) {
    const double invstd = 1.0 / std::sqrt(var[k] + eps);
    save_mean[k] = T(mean[k]);
    save_invstd[k] = T(invstd);
    tm[k] = T(mean[k]);
    scale[k] = T((gamma ? double(gamma[k]) : 1.0) * invstd);
    shift[k] = beta ? beta[k] : T(0);
  }
  constexpr int64_t V = kVec<T>;
  if (c == V) return normalize_rows<V>(x, m, tm.data(), scale.data(), shift.data(), y);
  if (c == 2 * V) return normalize_rows<2 * V>(x, m, tm.data(), scale.data(), shift.data(), y);
  const std::vector<T> tm_w = tiled(tm, w), scale_w = tiled(scale, w), shift_w = tiled(shift, w);
  const T* tmp = tm_w.data();
  const T* sp = scale_w.data();
  const T* hp = shift_w.data();
  for_wide_rows(m, c, w, 1, [&](int64_t, int64_t e0, int64_t n) {
    L.normalize(x + e0, tmp, sp, hp, n, y + e0);
  });
}

template <class T>
void batchnorm_backward_nhwc(const BatchNormShape& s, const T* x, const T* dy, const T* gamma,
                             const T* save_mean, const T* save_invstd, bool batch_stats, T* dx,
                             T* dgamma, T* dbeta, bool accumulate) {
  const int64_t c = s.c, m = s.n * s.hw, w = wide_width(c);
  const detail::BatchNormLoops<T>& L = nhwc_loops<T>();
  std::vector<double> mean(static_cast<size_t>(c)), sums(static_cast<size_t>(2 * c));
  for (int64_t k = 0; k < c; ++k) mean[k] = double(save_mean[k]);
  const std::vector<double> mu_w = tiled(mean, w);
  const double* mu = mu_w.data();
  // sums[k] = sum(dy), sums[c + k] = sum(dy * (x - mean)) of channel k
  channel_sums(m, c, w, 2, [&](int64_t e0, int64_t n, double* acc) {
    L.sum_grad(x + e0, dy + e0, mu, n, acc, acc + w);
  }, sums.data());
  std::vector<T> ta(static_cast<size_t>(c)), tb(static_cast<size_t>(c)), td(static_cast<size_t>(c)),
      tm(static_cast<size_t>(c));
  for (int64_t k = 0; k < c; ++k) {
    const double invstd = double(save_invstd[k]), sum_dy = sums[k];
    const double sum_dy_xhat = sums[c + k] * invstd;
    if (dbeta) dbeta[k] = T((accumulate ? double(dbeta[k]) : 0.0) + sum_dy);
    if (dgamma) dgamma[k] = T((accumulate ? double(dgamma[k]) : 0.0) + sum_dy_xhat);
    const double a = (gamma ? double(gamma[k]) : 1.0) * invstd;
    ta[k] = T(a);
    tb[k] = T(-a * invstd * sum_dy_xhat / double(m));
    td[k] = T(-a * sum_dy / double(m));
    tm[k] = save_mean[k];
  }
  if (!dx) return;
  constexpr int64_t V = kVec<T>;
  const T* co[4] = {ta.data(), tb.data(), td.data(), tm.data()};
  if (c == V && batch_stats) return input_grad_rows<V, true>(x, dy, m, co[0], co[1], co[2], co[3], dx);
  if (c == V) return input_grad_rows<V, false>(x, dy, m, co[0], co[1], co[2], co[3], dx);
  if (c == 2 * V && batch_stats) return input_grad_rows<2 * V, true>(x, dy, m, co[0], co[1], co[2], co[3], dx);
  if (c == 2 * V) return input_grad_rows<2 * V, false>(x, dy, m, co[0], co[1], co[2], co[3], dx);
  const std::vector<T> ta_w = tiled(ta, w), tb_w = tiled(tb, w), td_w = tiled(td, w), tm_w = tiled(tm, w);
  const T* ap = ta_w.data();
  const T* bp = tb_w.data();
  const T* dp = td_w.data();
  const T* mp = tm_w.data();
  for_wide_rows(m, c, w, 1, [&](int64_t, int64_t e0, int64_t n) {
    if (batch_stats)
      L.input_grad(x + e0, dy + e0, ap, bp, dp, mp, n, dx + e0);
    else
      L.input_grad_eval(dy + e0, ap, n, dx + e0);
  });
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
  if (s.layout == Layout::nhwc)
    return batchnorm_forward_nhwc(s, x, gamma, beta, batch_stats, eps, momentum, running_mean,
                                  running_var, save_mean, save_invstd, y);
  const detail::BatchNormLoops<T>& L = nhwc_loops<T>();
  detail::parallel_for(s.c, 3 * m, [&](int64_t c) {
    double mean, var;
    if (batch_stats) {
      double acc[kPlaneLanes] = {};
      for_plane_runs(s, c, [&](int64_t off, int64_t n) { L.sum(x + off, n, acc); });
      mean = fold(acc) / double(m);
      double mu[kPlaneLanes];
      std::fill(mu, mu + kPlaneLanes, mean);
      std::fill(acc, acc + kPlaneLanes, 0.0);  // second pass: no cancellation
      for_plane_runs(s, c, [&](int64_t off, int64_t n) { L.sum_sq(x + off, mu, n, acc); });
      const double sq = fold(acc);
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
    T tm[kPlaneLanes], scale[kPlaneLanes], shift[kPlaneLanes];
    std::fill(tm, tm + kPlaneLanes, T(mean));
    std::fill(scale, scale + kPlaneLanes, T((gamma ? double(gamma[c]) : 1.0) * invstd));
    std::fill(shift, shift + kPlaneLanes, beta ? beta[c] : T(0));
    for_plane_runs(s, c, [&](int64_t off, int64_t n) {
      L.normalize(x + off, tm, scale, shift, n, y + off);
    });
  });
}

template <class T>
void batchnorm_backward(const BatchNormShape& s, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, bool batch_stats, T* dx,
                        T* dgamma, T* dbeta, bool accumulate) {
  validate(s, "batchnorm_backward");
  CONVCORE_CHECK(x && dy && save_mean && save_invstd, "batchnorm_backward: x, grad_output and the saved "
                 "statistics are required");
  if (s.layout == Layout::nhwc)
    return batchnorm_backward_nhwc(s, x, dy, gamma, save_mean, save_invstd, batch_stats, dx, dgamma,
                                   dbeta, accumulate);
  const int64_t m = s.n * s.hw;
  const detail::BatchNormLoops<T>& L = nhwc_loops<T>();
  detail::parallel_for(s.c, 3 * m, [&](int64_t c) {
    const double mean = double(save_mean[c]), invstd = double(save_invstd[c]);
    // Both sums in one pass over x and dy.
    double mu[kPlaneLanes], acc[kPlaneLanes] = {}, acc1[kPlaneLanes] = {};
    std::fill(mu, mu + kPlaneLanes, mean);
    for_plane_runs(s, c, [&](int64_t off, int64_t n) {
      L.sum_grad(x + off, dy + off, mu, n, acc, acc1);
    });
    const double sum_dy = fold(acc), sum_dy_xhat = fold(acc1) * invstd;
    if (dbeta) dbeta[c] = T((accumulate ? double(dbeta[c]) : 0.0) + sum_dy);
    if (dgamma) dgamma[c] = T((accumulate ? double(dgamma[c]) : 0.0) + sum_dy_xhat);
    if (!dx) return;
    const double k = (gamma ? double(gamma[c]) : 1.0) * invstd;
    T ta[kPlaneLanes];
    std::fill(ta, ta + kPlaneLanes, T(k));
    if (!batch_stats) {
      for_plane_runs(s, c, [&](int64_t off, int64_t n) { L.input_grad_eval(dy + off, ta, n, dx + off); });
      return;
    }
    // dx = k*dy - k*sum_dy/M - k*xhat*sum_dy_xhat/M = a*dy + b*(x - mean) + d
    T tb[kPlaneLanes], td[kPlaneLanes], tm[kPlaneLanes];
    std::fill(tb, tb + kPlaneLanes, T(-k * invstd * sum_dy_xhat / double(m)));
    std::fill(td, td + kPlaneLanes, T(-k * sum_dy / double(m)));
    std::fill(tm, tm + kPlaneLanes, T(mean));
    for_plane_runs(s, c, [&](int64_t off, int64_t n) {
      L.input_grad(x + off, dy + off, ta, tb, td, tm, n, dx + off);
    });
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
