#include "convcore/linear.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "convcore/error.hpp"
#include "convcore/gemm.hpp"

namespace convcore {

void validate_linear(const LinearShape& s, const char* op) {
  CONVCORE_CHECK(s.n >= 0 && s.in >= 1 && s.out >= 1, op, ": need n >= 0, in >= 1, out >= 1, got n=",
                 s.n, ", in=", s.in, ", out=", s.out);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t widest = std::max(s.in, s.out);
  if ((s.n > 0 && widest > kMax / s.n) || s.in > kMax / s.out)
    throw std::overflow_error(detail::concat(op, ": n=", s.n, ", in=", s.in, ", out=", s.out,
                                             " give more elements than fit in 64 bits"));
}

template <class T>
void linear_forward(const LinearShape& s, const T* x, const T* w, const T* b, T* y) {
  validate_linear(s, "linear_forward");
  if (s.n == 0) return;
  // The bias goes into y first and the product is added to it: one pass over y.
  if (b)
    for (int64_t i = 0; i < s.n; ++i) std::copy(b, b + s.out, y + i * s.out);
  gemm<T>(false, true, s.n, s.out, s.in, T(1), x, s.in, w, s.in, b ? T(1) : T(0), y, s.out);
}

template <class T>
void linear_backward(const LinearShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                     T* db, bool accumulate) {
  validate_linear(s, "linear_backward");
  gemm<T>(true, false, s.out, s.in, s.n, T(1), dy, s.out, x, s.in, accumulate ? T(1) : T(0), dw,
          s.in);
  if (db) {
    if (!accumulate) std::fill(db, db + s.out, T(0));
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t j = 0; j < s.out; ++j) db[j] += dy[i * s.out + j];
  }
  if (dx && s.n > 0) gemm<T>(false, false, s.n, s.in, s.out, T(1), dy, s.out, w, s.in, T(0), dx, s.in);
}

template void linear_forward<float>(const LinearShape&, const float*, const float*, const float*,
                                    float*);
template void linear_forward<double>(const LinearShape&, const double*, const double*,
                                     const double*, double*);
template void linear_backward<float>(const LinearShape&, const float*, const float*, const float*,
                                     float*, float*, float*, bool);
template void linear_backward<double>(const LinearShape&, const double*, const double*,
                                      const double*, double*, double*, double*, bool);

}  // namespace convcore
