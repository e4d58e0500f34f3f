// batchnorm_forward / batchnorm_backward against direct loops in double, in both layouts; results
// bitwise identical for 1, 2 and 3 threads.
#include "convcore/batchnorm.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "test_util.hpp"

using convcore::Layout;

template <class T>
void run(double tol, Layout layout, int64_t n, int64_t c, int64_t hw) {
  const int64_t m = n * hw;
  const convcore::BatchNormShape s{n, c, hw, layout};
  // Offset of (batch b, channel k, pixel i) in the layout.
  auto at = [&](int64_t b, int64_t k, int64_t i) {
    return layout == Layout::nhwc ? (b * hw + i) * c + k : (b * c + k) * hw + i;
  };
  auto x = testutil::random_vector<T>(n * c * hw, 1), dy = testutil::random_vector<T>(n * c * hw, 2);
  for (auto& e : x) e = e * T(3) + T(5);  // mean far from 0
  auto gamma = testutil::random_vector<T>(c, 3), beta = testutil::random_vector<T>(c, 4);
  for (bool batch_stats : {true, false}) {
    std::vector<T> rm(c), rv(c), mean(c), invstd(c), y(x.size()), dx(x.size()), dg(c, T(1)), db(c, T(2));
    for (int64_t k = 0; k < c; ++k) rm[k] = T(0.5 + k), rv[k] = T(1.5 + k);
    const std::vector<T> rm0 = rm, rv0 = rv;
    convcore::batchnorm_forward<T>(s, x.data(), gamma.data(), beta.data(), batch_stats, 1e-5, 0.1, rm.data(),
                                   rv.data(), mean.data(), invstd.data(), y.data());
    convcore::batchnorm_backward<T>(s, x.data(), dy.data(), gamma.data(), mean.data(), invstd.data(),
                                    batch_stats, dx.data(), dg.data(), db.data(), true);
    bool ok = true;
    for (int64_t k = 0; k < c; ++k) {
      double mu = 0, var = 0;
      if (batch_stats) {
        for (int64_t b = 0; b < n; ++b)
          for (int64_t i = 0; i < hw; ++i) mu += double(x[at(b, k, i)]);
        mu /= m;
        for (int64_t b = 0; b < n; ++b)
          for (int64_t i = 0; i < hw; ++i) var += std::pow(double(x[at(b, k, i)]) - mu, 2);
        var /= m;
        ok = ok && check::close(double(rm[k]), 0.9 * double(rm0[k]) + 0.1 * mu, tol, tol);
        ok = ok && check::close(double(rv[k]), 0.9 * double(rv0[k]) + 0.1 * var * m / (m - 1), tol, tol);
      } else {
        mu = double(rm0[k]), var = double(rv0[k]);
        ok = ok && rm[k] == rm0[k] && rv[k] == rv0[k];
      }
      const double is = 1 / std::sqrt(var + 1e-5);
      double sdy = 0, sdyx = 0;
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t j = at(b, k, i);
          const double xh = (double(x[j]) - mu) * is;
          ok = ok && check::close(double(y[j]), xh * double(gamma[k]) + double(beta[k]), tol, tol);
          sdy += double(dy[j]);
          sdyx += double(dy[j]) * xh;
        }
      ok = ok && check::close(double(db[k]), 2 + sdy, tol, tol) && check::close(double(dg[k]), 1 + sdyx, tol, tol);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t j = at(b, k, i);
          const double xh = (double(x[j]) - mu) * is;
          const double want = batch_stats ? double(gamma[k]) * is * (double(dy[j]) - sdy / m - xh * sdyx / m)
                                           : double(gamma[k]) * is * double(dy[j]);
          ok = ok && check::close(double(dx[j]), want, tol, tol);
        }
    }
    CHECK_MSG(ok, "batch_stats=" << batch_stats << " layout=" << convcore::layout_name(layout) << " n" << n
                                  << "c" << c << "hw" << hw);
  }
  // Refusals: one value per channel with batch statistics, bad eps, eval without running stats.
  std::vector<T> one(c), y1(c), mean(c), invstd(c);
  CHECK_THROWS(convcore::batchnorm_forward<T>({1, c, 1, layout}, one.data(), nullptr, nullptr, true, 1e-5, 0.1, nullptr,
                                              nullptr, mean.data(), invstd.data(), y1.data()),
               std::invalid_argument);
  CHECK_THROWS(convcore::batchnorm_forward<T>(s, x.data(), nullptr, nullptr, true, 0.0, 0.1, nullptr, nullptr,
                                              mean.data(), invstd.data(), y1.data()),
               std::invalid_argument);
  CHECK_THROWS(convcore::batchnorm_forward<T>(s, x.data(), nullptr, nullptr, false, 1e-5, 0.1, nullptr, nullptr,
                                              mean.data(), invstd.data(), y1.data()),
               std::invalid_argument);
}

// Forward (train, then eval) and backward on 1, 2 and 3 threads and on every instruction set the
// CPU has (NHWC: the portable and the AVX2 copies of the loops): the same bits.
template <class T>
void check_threads(Layout layout, int64_t c = 37) {
  const int64_t n = 4, hw = 40 * 40;  // enough work for every thread, several row blocks
  const convcore::BatchNormShape s{n, c, hw, layout};
  const auto x = testutil::random_vector<T>(n * c * hw, 5), dy = testutil::random_vector<T>(n * c * hw, 6);
  const auto gamma = testutil::random_vector<T>(c, 7), beta = testutil::random_vector<T>(c, 8);
  // Every output of a training step and an eval forward, one after the other.
  auto outputs = [&] {
    std::vector<T> rm(c, T(0.25)), rv(c, T(2)), mean(c), invstd(c), y(x.size()), y2(x.size()), dx(x.size()),
        dg(c), db(c);
    convcore::batchnorm_forward<T>(s, x.data(), gamma.data(), beta.data(), true, 1e-5, 0.1, rm.data(), rv.data(),
                                   mean.data(), invstd.data(), y.data());
    convcore::batchnorm_backward<T>(s, x.data(), dy.data(), gamma.data(), mean.data(), invstd.data(), true,
                                    dx.data(), dg.data(), db.data(), false);
    std::vector<T> all = y;
    for (auto* v : {&rm, &rv, &mean, &invstd, &dx, &dg, &db}) all.insert(all.end(), v->begin(), v->end());
    convcore::batchnorm_forward<T>(s, x.data(), gamma.data(), beta.data(), false, 1e-5, 0.1, rm.data(), rv.data(),
                                   mean.data(), invstd.data(), y2.data());
    all.insert(all.end(), y2.begin(), y2.end());
    return all;
  };
  std::vector<T> first;
  const convcore::Isa active = convcore::active_isa();
  for (convcore::Isa isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512}) {
    if (!convcore::isa_supported(isa)) continue;
    convcore::set_isa(isa);
    for (int threads : {1, 2, 3}) {
      convcore::set_num_threads(threads);
      const std::vector<T> all = outputs();
      if (first.empty()) first = all;
      CHECK_MSG(check::same_bits(all, first), "threads=" << threads << " isa=" << convcore::isa_name(isa)
                                                          << " layout=" << convcore::layout_name(layout));
    }
  }
  convcore::set_isa(active);
  convcore::set_num_threads(1);
}

int main() {
  for (Layout layout : {Layout::nchw, Layout::nhwc}) {
    run<float>(2e-5, layout, 3, 5, 7 * 6);
    run<double>(1e-12, layout, 3, 5, 7 * 6);
    run<float>(2e-5, layout, 3, 19, 13 * 11);  // NHWC: more than one block of rows
    run<double>(1e-12, layout, 2, 1, 300);
    // NHWC rows of one and two 32-byte vectors: the coefficients held in registers
    for (int64_t c : {8, 16}) run<float>(2e-5, layout, 2, c, 300);
    for (int64_t c : {4, 8}) run<double>(1e-12, layout, 2, c, 300);
    check_threads<float>(layout);
    check_threads<double>(layout);
    check_threads<float>(layout, 16);
    check_threads<double>(layout, 8);
  }
  return check::report("batchnorm");
}
