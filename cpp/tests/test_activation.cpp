// The activation pass of every kernel row against double-precision libm: float sigmoid and tanh
// within 1 ulp on every row (all compute in double and round once), over a sweep of all float
// exponents, the neighbourhood of zero, and the special values; double to libm's own accuracy.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "check.hpp"
#include "convcore/activation.hpp"
#include "convcore/gemm.hpp"
#include "gemm/ukernel.hpp"

namespace {

std::vector<float> inputs() {
  std::vector<float> v;
  // Every 4099th bit pattern of the finite floats, both signs: all exponents, many mantissas.
  for (uint32_t b = 0; b < 0x7f800000u; b += 4099) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    v.push_back(f);
    v.push_back(-f);
  }
  // Densely where the functions bend: |x| < 20, and the switch near 2^-12 inside tanh.
  for (int i = -200000; i <= 200000; ++i) v.push_back(float(i) * 1e-4f);
  for (int i = -3000; i <= 3000; ++i) v.push_back(std::ldexp(1.0f + float(i) * 1e-3f, -12));
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, inf, -inf, 88.7f, -88.7f, 89.0f, -104.0f, 1e-45f, -1e-45f,
                  std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()})
    v.push_back(f);
  return v;
}

// |got - want| in units of the last place of the float nearest want.
double ulps(float got, double want) {
  const float w = float(want);
  const double ulp = std::fabs(double(std::nextafter(w, std::numeric_limits<float>::infinity())) - double(w));
  return std::fabs(double(got) - want) / (ulp > 0 ? ulp : std::numeric_limits<double>::min());
}

void run(convcore::Isa isa) {
  const auto& kern = convcore::detail::gemm_kernel<float>(isa);
  const double limit = 1.0;
  const std::vector<float> x = inputs();
  for (auto act : {convcore::Activation::sigmoid, convcore::Activation::tanh}) {
    std::vector<float> y(x);
    kern.activate(act, y.data(), int64_t(y.size()));
    double worst = 0;
    size_t worst_at = 0;
    bool special_ok = true;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      const double want = act == convcore::Activation::sigmoid ? 1.0 / (1.0 + std::exp(-xd)) : std::tanh(xd);
      if (std::isnan(want)) continue;
      const double e = ulps(y[i], want);
      if (!(e <= worst)) worst = e, worst_at = i;
      // Zero and the signs of zero and of tanh are kept exactly.
      if (x[i] == 0.0f && act == convcore::Activation::tanh)
        special_ok = special_ok && y[i] == 0.0f && std::signbit(y[i]) == std::signbit(x[i]);
    }
    CHECK_MSG(worst <= limit, convcore::isa_name(isa) << (act == convcore::Activation::sigmoid ? " sigmoid" : " tanh")
                                                      << ": " << worst << " ulp at x=" << x[worst_at]);
    CHECK_MSG(special_ok, convcore::isa_name(isa) << " tanh(+-0)");
    float nan = std::numeric_limits<float>::quiet_NaN();
    kern.activate(act, &nan, 1);
    CHECK_MSG(std::isnan(nan), convcore::isa_name(isa) << " NaN propagates");
  }
  // double: libm on every row.
  const auto& kd = convcore::detail::gemm_kernel<double>(isa);
  std::vector<double> d = {-30.0, -1.0, -1e-9, 0.0, 0.5, 3.0, 40.0};
  std::vector<double> s(d), t(d);
  kd.activate(convcore::Activation::sigmoid, s.data(), int64_t(s.size()));
  kd.activate(convcore::Activation::tanh, t.data(), int64_t(t.size()));
  bool ok = true;
  for (size_t i = 0; i < d.size(); ++i) {
    ok = ok && check::close(s[i], 1.0 / (1.0 + std::exp(-d[i])), 4e-16, 0.0);
    ok = ok && check::close(t[i], std::tanh(d[i]), 4e-16, 0.0);
  }
  CHECK_MSG(ok, convcore::isa_name(isa) << " double activations");
}

// activation_forward on the active path: relu a select (NaN and -0 give +0), sigmoid and tanh the
// kernel row's pass, identity a copy; runs across several blocks and threads, in and out of place.
template <class T>
void forward_pass() {
  const int64_t n = 3 * 4096 + 17;
  std::vector<T> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = T(std::sin(double(i) * 0.37) * 6.0);
  x[5] = std::numeric_limits<T>::quiet_NaN();
  x[6] = T(-0.0);
  const auto& kern = convcore::detail::gemm_kernel<T>(convcore::active_isa());
  for (auto act : {convcore::Activation::identity, convcore::Activation::relu,
                   convcore::Activation::sigmoid, convcore::Activation::tanh}) {
    std::vector<T> y(x.size()), want(x);
    convcore::activation_forward(act, n, x.data(), y.data());
    if (act == convcore::Activation::sigmoid || act == convcore::Activation::tanh)
      kern.activate(act, want.data(), n);
    else
      for (auto& v : want) v = act == convcore::Activation::relu ? (v > T(0) ? v : T(0)) : v;
    bool same = true;
    for (size_t i = 0; i < y.size(); ++i)  // NaN compares unequal: check it apart
      same = same && (std::isnan(want[i]) ? std::isnan(y[i]) : y[i] == want[i]);
    CHECK_MSG(same, "activation_forward " << int(act) << " " << sizeof(T) * 8 << "-bit");
    std::vector<T> inplace(x);
    convcore::activation_forward(act, n, inplace.data(), inplace.data());
    bool same_in = true;
    for (size_t i = 0; i < y.size(); ++i)
      same_in = same_in && (std::isnan(y[i]) ? std::isnan(inplace[i]) : inplace[i] == y[i]);
    CHECK_MSG(same_in, "activation_forward in place " << int(act));
  }
  std::vector<T> r(1);
  convcore::activation_forward(convcore::Activation::relu, 1, &x[5], r.data());
  CHECK_MSG(r[0] == T(0) && !std::signbit(r[0]), "relu(NaN) = +0");
}

}  // namespace

int main() {
  for (auto isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512})
    if (convcore::isa_supported(isa)) run(isa);
  forward_pass<float>();
  forward_pass<double>();
  return check::report("activation");
}
