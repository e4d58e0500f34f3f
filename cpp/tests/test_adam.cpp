// adam_update against direct loops in double (PyTorch's Adam/AdamW formulas, written out).
#include "convcore/adam.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "test_util.hpp"

template <class T>
void run(double tol) {
  const int64_t n = 10007;
  for (bool decoupled : {false, true})
    for (double wd : {0.0, 1e-2}) {
      auto p = testutil::random_vector<T>(n, 1);
      std::vector<T> m(n, T(0)), v(n, T(0));
      std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
      const convcore::AdamOptions opt{0.01, 0.9, 0.99, 1e-6, wd, decoupled};
      for (int step = 1; step <= 4; ++step) {
        const auto g = testutil::random_vector<T>(n, 10 + step);
        convcore::adam_update<T>(n, p.data(), g.data(), m.data(), v.data(), step, opt);
        for (int64_t i = 0; i < n; ++i) {
          double d = double(g[i]);
          if (decoupled)
            pr[i] *= 1 - 0.01 * wd;
          else
            d += wd * pr[i];
          mr[i] = 0.9 * mr[i] + 0.1 * d;
          vr[i] = 0.99 * vr[i] + 0.01 * d * d;
          const double mhat = mr[i] / (1 - std::pow(0.9, step)), vhat = vr[i] / (1 - std::pow(0.99, step));
          pr[i] -= 0.01 * mhat / (std::sqrt(vhat) + 1e-6);  // eps outside the square root
        }
      }
      bool ok = true;
      for (int64_t i = 0; i < n; ++i)
        ok = ok && check::close(double(p[i]), pr[i], tol, tol) && check::close(double(m[i]), mr[i], tol, tol) &&
             check::close(double(v[i]), vr[i], tol, tol);
      CHECK_MSG(ok, "decoupled=" << decoupled << " wd=" << wd);
    }
  // Refused options leave everything untouched.
  std::vector<T> p(4, T(1)), g(4, T(1)), m(4, T(0)), v(4, T(0));
  CHECK_THROWS(convcore::adam_update<T>(4, p.data(), g.data(), m.data(), v.data(), 0, {}), std::invalid_argument);
  convcore::AdamOptions bad;
  bad.beta2 = 1.0;
  CHECK_THROWS(convcore::adam_update<T>(4, p.data(), g.data(), m.data(), v.data(), 1, bad), std::invalid_argument);
  bad = {};
  bad.lr = -1;
  CHECK_THROWS(convcore::adam_update<T>(4, p.data(), g.data(), m.data(), v.data(), 1, bad), std::invalid_argument);
  CHECK(p[0] == T(1) && p[3] == T(1) && m[0] == T(0) && v[0] == T(0));
}

int main() {
  run<float>(1e-5);
  run<double>(1e-12);
  return check::report("adam");
}
