// The fully connected layer against direct loops: forward with and without bias, the three
// gradients with and without accumulation, an empty batch, and the size checks.
#include "convcore/linear.hpp"

#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "test_util.hpp"

template <class T>
void run(double tol) {
  for (const convcore::LinearShape s : {convcore::LinearShape{1, 1, 1}, {32, 128, 10}, {7, 300, 33},
                                        {64, 4096, 10}, {5, 3, 70}}) {
    const auto x = testutil::random_vector<T>(s.n * s.in, 1);
    const auto w = testutil::random_vector<T>(s.out * s.in, 2);
    const auto b = testutil::random_vector<T>(s.out, 3);
    const auto dy = testutil::random_vector<T>(s.n * s.out, 4);
    // Direct loops in double.
    std::vector<double> y_ref(s.n * s.out), dx_ref(s.n * s.in, 0.0), dw_ref(s.out * s.in, 0.0),
        db_ref(s.out, 0.0);
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t o = 0; o < s.out; ++o) {
        double acc = b[o];
        for (int64_t k = 0; k < s.in; ++k) acc += double(x[i * s.in + k]) * double(w[o * s.in + k]);
        y_ref[i * s.out + o] = acc;
        db_ref[o] += dy[i * s.out + o];
        for (int64_t k = 0; k < s.in; ++k) {
          dw_ref[o * s.in + k] += double(dy[i * s.out + o]) * double(x[i * s.in + k]);
          dx_ref[i * s.in + k] += double(dy[i * s.out + o]) * double(w[o * s.in + k]);
        }
      }
    const auto near = [&](const std::vector<T>& got, const std::vector<double>& want, double scale) {
      bool ok = got.size() == want.size();
      for (size_t i = 0; ok && i < got.size(); ++i)
        ok = check::close(double(got[i]), want[i], tol, tol * scale);
      return ok;
    };
    std::vector<T> y(s.n * s.out, T(NAN));
    convcore::linear_forward<T>(s, x.data(), w.data(), b.data(), y.data());
    CHECK_MSG(near(y, y_ref, double(s.in)), "forward n=" << s.n << " in=" << s.in << " out=" << s.out);
    // Without bias: the product alone.
    convcore::linear_forward<T>(s, x.data(), w.data(), nullptr, y.data());
    std::vector<double> y_nob(y_ref);
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t o = 0; o < s.out; ++o) y_nob[i * s.out + o] -= double(b[o]);
    CHECK_MSG(near(y, y_nob, double(s.in)), "forward without bias, in=" << s.in);

    std::vector<T> dx(s.n * s.in, T(NAN)), dw(s.out * s.in, T(NAN)), db(s.out, T(NAN));
    convcore::linear_backward<T>(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                                 false);
    CHECK_MSG(near(dx, dx_ref, double(s.out)), "dx in=" << s.in);
    CHECK_MSG(near(dw, dw_ref, double(s.n)), "dw in=" << s.in);
    CHECK_MSG(near(db, db_ref, double(s.n)), "db in=" << s.in);
    // Accumulating a second time doubles the weight and bias gradients; no dx asked for.
    convcore::linear_backward<T>(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), db.data(),
                                 true);
    for (auto& v : dw_ref) v *= 2;
    for (auto& v : db_ref) v *= 2;
    CHECK_MSG(near(dw, dw_ref, double(s.n)), "accumulated dw in=" << s.in);
    CHECK_MSG(near(db, db_ref, double(s.n)), "accumulated db in=" << s.in);
  }
  // An empty batch: no output rows, zero gradients (or unchanged ones when accumulating).
  const convcore::LinearShape empty{0, 4, 3};
  const auto w = testutil::random_vector<T>(12, 5);
  std::vector<T> dw(12, T(NAN)), db(3, T(NAN));
  convcore::linear_backward<T>(empty, nullptr, w.data(), nullptr, nullptr, dw.data(), db.data(), false);
  bool zero = true;
  for (T v : dw) zero = zero && v == T(0);
  for (T v : db) zero = zero && v == T(0);
  CHECK_MSG(zero, "empty batch gives zero gradients");
  CHECK_THROWS(convcore::validate_linear({-1, 4, 3}), std::invalid_argument);
  CHECK_THROWS(convcore::validate_linear({2, 0, 3}), std::invalid_argument);
  CHECK_THROWS(convcore::validate_linear({int64_t(1) << 40, int64_t(1) << 40, 3}), std::overflow_error);
}

int main() {
  run<float>(1e-5);
  run<double>(1e-12);
  return check::report("linear");
}
