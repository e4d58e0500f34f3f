#include "convcore/sgd.hpp"

#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "test_util.hpp"

template <class T>
void run(double tol) {
  const int64_t n = 10007;
  for (double mu : {0.0, 0.9})
    for (double wd : {0.0, 1e-2}) {
      auto p = testutil::random_vector<T>(n, 1), g0 = testutil::random_vector<T>(n, 2);
      std::vector<T> v(n, T(0));
      std::vector<double> pr(p.begin(), p.end()), vr(n, 0.0);
      convcore::SgdOptions opt{0.1, mu, wd};
      for (int step = 0; step < 3; ++step) {
        convcore::sgd_update<T>(n, p.data(), g0.data(), mu != 0 ? v.data() : nullptr, opt);
        for (int64_t i = 0; i < n; ++i) {  // v = mu v + g + wd p ; p -= lr v
          vr[i] = mu * vr[i] + double(g0[i]) + wd * pr[i];
          pr[i] -= 0.1 * vr[i];
        }
      }
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) ok = ok && check::close(double(p[i]), pr[i], tol, tol);
      CHECK_MSG(ok, "mu=" << mu << " wd=" << wd);
    }
  // Nesterov (PyTorch's, dampening 0): v = mu v + d; p -= lr (d + mu v), d = g + wd p.
  {
    auto p = testutil::random_vector<T>(n, 3), g0 = testutil::random_vector<T>(n, 4);
    std::vector<T> v(n, T(0));
    std::vector<double> pr(p.begin(), p.end()), vr(n, 0.0);
    for (int step = 0; step < 3; ++step) {
      convcore::sgd_update<T>(n, p.data(), g0.data(), v.data(), {0.1, 0.9, 1e-2, true});
      for (int64_t i = 0; i < n; ++i) {
        const double d = double(g0[i]) + 1e-2 * pr[i];
        vr[i] = 0.9 * vr[i] + d;
        pr[i] -= 0.1 * (d + 0.9 * vr[i]);
      }
    }
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) ok = ok && check::close(double(p[i]), pr[i], tol, tol);
    CHECK_MSG(ok, "nesterov");
  }
  // Refused options leave the parameters untouched.
  std::vector<T> p(4, T(1)), g(4, T(1));
  CHECK_THROWS(convcore::sgd_update<T>(4, p.data(), g.data(), nullptr, {0.1, 0.9, 0.0}),
               std::invalid_argument);
  CHECK_THROWS(convcore::sgd_update<T>(4, p.data(), g.data(), nullptr, {-0.1, 0.0, 0.0}),
               std::invalid_argument);
  std::vector<T> v(4, T(0));
  CHECK_THROWS(convcore::sgd_update<T>(4, p.data(), g.data(), v.data(), {0.1, 0.0, 0.0, true}),
               std::invalid_argument);
  CHECK(p[0] == T(1) && p[3] == T(1));
}

int main() {
  run<float>(1e-5);
  run<double>(1e-13);
  return check::report("sgd");
}
