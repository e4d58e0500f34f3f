// One training step of a toy convolution layer through convcore's C++ API, checked against
// direct loops written here: forward, the three gradients (input, weight, bias) and an SGD step.
// Exits 1 when any result differs from the loops, or when the step does not lower the loss.
//
//   x[mb][ic][ih][iw]   w[oc][ic][kh][kw]   b[oc]   y, dy[mb][oc][oh][ow]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "convcore/geometry.hpp"
#include "convcore/plan.hpp"
#include "convcore/sgd.hpp"

namespace {

using Vec = std::vector<double>;

// Deterministic data in [-0.5, 0.5).
Vec random_vec(int64_t n, uint32_t seed) {
  Vec v(static_cast<size_t>(n));
  for (double& e : v) {
    seed = seed * 1664525u + 1013904223u;
    e = double(seed >> 8) / double(1u << 24) - 0.5;
  }
  return v;
}

// The input pixel under output (i, j) and tap (p, q), or -1 when it falls in the padding.
int64_t src_index(const convcore::Conv2dGeometry& g, int64_t n, int64_t c, int64_t i, int64_t j,
                  int64_t p, int64_t q) {
  const int64_t ih = i * g.sh - g.pt + p * g.dh, iw = j * g.sw - g.pl + q * g.dw;
  if (ih < 0 || ih >= g.ih || iw < 0 || iw >= g.iw) return -1;
  return ((n * g.ic + c) * g.ih + ih) * g.iw + iw;
}

// Direct loops over every (image, output channel, output pixel, input channel, tap). They
// compute y, and given dy, the gradients dx, dw and db; groups == 1.
void direct_forward(const convcore::Conv2dGeometry& g, const Vec& x, const Vec& w, const Vec& b, Vec& y) {
  const int64_t oh = g.oh(), ow = g.ow();
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t o = 0; o < g.oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = b[size_t(o)];
          for (int64_t c = 0; c < g.ic; ++c)
            for (int64_t p = 0; p < g.kh; ++p)
              for (int64_t q = 0; q < g.kw; ++q) {
                const int64_t k = src_index(g, n, c, i, j, p, q);
                if (k >= 0) s += x[size_t(k)] * w[size_t(((o * g.ic + c) * g.kh + p) * g.kw + q)];
              }
          y[size_t(((n * g.oc + o) * oh + i) * ow + j)] = s;
        }
}

void direct_backward(const convcore::Conv2dGeometry& g, const Vec& x, const Vec& w, const Vec& dy,
                     Vec& dx, Vec& dw, Vec& db) {
  const int64_t oh = g.oh(), ow = g.ow();
  dx.assign(dx.size(), 0.0);
  dw.assign(dw.size(), 0.0);
  db.assign(db.size(), 0.0);
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t o = 0; o < g.oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double d = dy[size_t(((n * g.oc + o) * oh + i) * ow + j)];
          db[size_t(o)] += d;
          for (int64_t c = 0; c < g.ic; ++c)
            for (int64_t p = 0; p < g.kh; ++p)
              for (int64_t q = 0; q < g.kw; ++q) {
                const int64_t k = src_index(g, n, c, i, j, p, q);
                if (k < 0) continue;
                const size_t wk = size_t(((o * g.ic + c) * g.kh + p) * g.kw + q);
                dx[size_t(k)] += w[wk] * d;
                dw[wk] += x[size_t(k)] * d;
              }
        }
}

// Half the squared distance to the target, and its gradient dy = y - target.
double loss(const Vec& y, const Vec& target, Vec* dy) {
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    e += 0.5 * (y[i] - target[i]) * (y[i] - target[i]);
    if (dy) (*dy)[i] = y[i] - target[i];
  }
  return e;
}

int failures = 0;

// Largest |a - b| relative to 1 + |b|; float64 rounding of these sizes stays far below 1e-12.
void check(const char* what, const Vec& got, const Vec& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::fmax(worst, std::fabs(got[i] - want[i]) / (1 + std::fabs(want[i])));
  const bool ok = got.size() == want.size() && worst <= 1e-12;  // NaN fails too
  std::printf("%-16s %5zu values  max rel. diff %.1e  %s\n", what, got.size(), worst, ok ? "ok" : "MISMATCH");
  if (!ok) ++failures;
}

}  // namespace

int main() {
  convcore::Conv2dGeometry g;
  g.mb = 2, g.ic = 3, g.ih = 7, g.iw = 7, g.oc = 4, g.kh = 3, g.kw = 3;
  g.sh = g.sw = 2;
  g.pt = g.pb = g.pl = g.pr = 1;
  const convcore::Conv2dPlan<double> plan(g);  // validates g, picks each op's path
  std::ostringstream name;
  name << g;
  std::printf("layer %s: y is %lldx%lldx%lldx%lld\n", name.str().c_str(), (long long)g.mb,
              (long long)g.oc, (long long)g.oh(), (long long)g.ow());

  const Vec x = random_vec(g.src_size(), 1), target = random_vec(g.dst_size(), 2);
  Vec w = random_vec(g.wei_size(), 3), b = random_vec(g.oc, 4);

  // Forward and the loss's gradient.
  Vec y(size_t(g.dst_size())), y_ref(y.size()), dy(y.size());
  plan.forward(x.data(), w.data(), b.data(), y.data());
  direct_forward(g, x, w, b, y_ref);
  check("forward", y, y_ref);
  const double loss_before = loss(y, target, &dy);

  // Backward: the input gradient (the previous layer's delta), the weight and bias gradients.
  Vec dx(x.size()), dw(w.size()), db(b.size()), dx_ref(x.size()), dw_ref(w.size()), db_ref(b.size());
  plan.backward_input(w.data(), dy.data(), dx.data());
  plan.backward_weight(x.data(), dy.data(), dw.data(), /*accumulate=*/false);
  plan.backward_bias(dy.data(), db.data(), /*accumulate=*/false);
  direct_backward(g, x, w, dy, dx_ref, dw_ref, db_ref);
  check("backward_input", dx, dx_ref);
  check("backward_weight", dw, dw_ref);
  check("backward_bias", db, db_ref);

  // One SGD step, param -= lr * grad, against the same update written out.
  convcore::SgdOptions sgd;
  sgd.lr = 0.05;
  Vec w_ref = w, b_ref = b;
  for (size_t i = 0; i < w.size(); ++i) w_ref[i] -= sgd.lr * dw_ref[i];
  for (size_t i = 0; i < b.size(); ++i) b_ref[i] -= sgd.lr * db_ref[i];
  convcore::sgd_update<double>(int64_t(w.size()), w.data(), dw.data(), nullptr, sgd);
  convcore::sgd_update<double>(int64_t(b.size()), b.data(), db.data(), nullptr, sgd);
  check("sgd weight", w, w_ref);
  check("sgd bias", b, b_ref);

  plan.forward(x.data(), w.data(), b.data(), y.data());
  const double loss_after = loss(y, target, nullptr);
  std::printf("loss %.6f -> %.6f after one step (lr %.2f)\n", loss_before, loss_after, sgd.lr);
  if (!(loss_after < loss_before)) {
    std::printf("the step did not lower the loss\n");
    ++failures;
  }
  std::printf(failures ? "FAILED: %d checks\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
