#include "convcore/pool.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "check.hpp"
#include "convcore/parallel.hpp"
#include "test_util.hpp"

using check::all_close;
using check::same_bits;

using convcore::Conv2dGeometry;

namespace {

// A pooling window over c channels: mb ic ih iw kh kw sh sw pt pb pl pr dh dw.
Conv2dGeometry pool_geom(int64_t mb, int64_t c, int64_t ih, int64_t iw, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t pt = 0, int64_t pb = 0, int64_t pl = 0,
                         int64_t pr = 0, int64_t dh = 1, int64_t dw = 1) {
  return testutil::geom(mb, c, ih, iw, c, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, c);
}

// Values from {0, 1, 2, 3}: windows are full of ties.
template <class T>
std::vector<T> small_ints(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, 3);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& e : v) e = T(dist(rng));
  return v;
}

// Reference forward: copy each plane into a -inf padded plane xp, then scan every window.
template <class T>
void ref_forward(const Conv2dGeometry& g, const std::vector<T>& x, std::vector<T>& y,
                 std::vector<int64_t>& idx) {
  const int64_t hp = g.ih + g.pt + g.pb, wp = g.iw + g.pl + g.pr;
  const int64_t oh = (hp - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  const int64_t ow = (wp - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  y.assign(g.mb * g.ic * oh * ow, T(0));
  idx.assign(y.size(), -2);
  std::vector<T> xp(hp * wp);
  for (int64_t p = 0; p < g.mb * g.ic; ++p) {
    std::fill(xp.begin(), xp.end(), -std::numeric_limits<T>::infinity());
    for (int64_t h = 0; h < g.ih; ++h)
      for (int64_t w = 0; w < g.iw; ++w)
        xp[(h + g.pt) * wp + w + g.pl] = x[p * g.ih * g.iw + h * g.iw + w];
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        T best = 0;
        int64_t at = -1;
        for (int64_t r = 0; r < g.kh; ++r)
          for (int64_t s = 0; s < g.kw; ++s) {
            const int64_t hh = i * g.sh + r * g.dh, ww = j * g.sw + s * g.dw;
            const bool pad = hh < g.pt || hh >= g.pt + g.ih || ww < g.pl || ww >= g.pl + g.iw;
            if (pad) continue;
            const T v = xp[hh * wp + ww];
            if (at < 0 || v > best) {
              best = v;
              at = (hh - g.pt) * g.iw + (ww - g.pl);
            }
          }
        y[(p * oh + i) * ow + j] = at < 0 ? -std::numeric_limits<T>::infinity() : best;
        idx[(p * oh + i) * ow + j] = at;
      }
  }
}

// Reference backward in gather form: each input cell sums dy over the windows it won.
template <class T>
std::vector<T> ref_backward(const Conv2dGeometry& g, const std::vector<int64_t>& idx,
                            const std::vector<T>& dy) {
  const int64_t in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  std::vector<T> dx(g.src_size());
  for (int64_t p = 0; p < g.mb * g.ic; ++p)
    for (int64_t k = 0; k < in_plane; ++k) {
      T sum = 0;
      for (int64_t o = 0; o < out_plane; ++o)
        if (idx[p * out_plane + o] == k) sum += dy[p * out_plane + o];
      dx[p * in_plane + k] = sum;
    }
  return dx;
}

template <class T>
void check_pool(const Conv2dGeometry& g, bool ties) {
  const auto x = ties ? small_ints<T>(g.src_size(), 21) : testutil::random_vector<T>(g.src_size(), 21);
  const auto dy = testutil::random_vector<T>(g.dst_size(), 22);
  std::vector<T> y_ref;
  std::vector<int64_t> idx_ref;
  ref_forward(g, x, y_ref, idx_ref);
  CHECK_MSG(int64_t(y_ref.size()) == g.dst_size(), "output size " << g);
  const auto dx_ref = ref_backward(g, idx_ref, dy);
  // The scatter adds in a different order than the gather: equal to rounding.
  const double tol = sizeof(T) == 4 ? 1e-6 : 1e-14;

  std::vector<T> first_y, first_dx;
  std::vector<int64_t> first_idx;
  for (int threads : {1, 2, 3}) {
    convcore::set_num_threads(threads);
    std::vector<T> y(g.dst_size(), T(NAN));
    std::vector<int64_t> idx(g.dst_size(), -7);
    convcore::max_pool2d_forward(g, x.data(), y.data(), idx.data());
    CHECK_MSG(same_bits(y, y_ref), "forward " << g << " ties=" << ties << " threads=" << threads);
    CHECK_MSG(idx == idx_ref, "indices " << g << " ties=" << ties << " threads=" << threads);
    std::vector<T> dx(g.src_size(), T(NAN));
    convcore::max_pool2d_backward(g, idx.data(), dy.data(), dx.data());
    CHECK_MSG(all_close(dx, dx_ref, tol), "backward " << g << " threads=" << threads);
    if (threads == 1) {
      first_y = y;
      first_idx = idx;
      first_dx = dx;
    }
    CHECK_MSG(same_bits(y, first_y) && idx == first_idx && same_bits(dx, first_dx),
              "bitwise across threads " << g << " threads=" << threads);
  }
  convcore::set_num_threads(1);
}

template <class T>
void check_all() {
  const Conv2dGeometry cases[] = {
      pool_geom(2, 3, 8, 8, 2, 2, 2, 2),              // the classic 2x2/2
      pool_geom(2, 3, 7, 9, 2, 2, 2, 2),              // odd sizes: last row/column dropped
      pool_geom(1, 2, 7, 7, 3, 3, 2, 2),              // overlapping windows
      pool_geom(2, 2, 6, 5, 3, 3, 1, 1),              // stride 1: every cell in up to 9 windows
      pool_geom(1, 2, 9, 8, 3, 2, 2, 1),              // kh != kw, sh != sw
      pool_geom(2, 2, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1),  // padding, PyTorch -inf semantics
      pool_geom(1, 3, 6, 7, 4, 3, 3, 2, 2, 1, 0, 1),  // asymmetric padding
      pool_geom(1, 2, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1, 2, 2),  // dilation
      pool_geom(1, 1, 5, 4, 5, 4, 1, 1),              // window = whole plane
      pool_geom(3, 4, 1, 1, 1, 1, 1, 1),              // 1x1
      pool_geom(0, 2, 4, 4, 2, 2, 2, 2),              // empty batch
  };
  for (const auto& g : cases) {
    check_pool<T>(g, false);
    check_pool<T>(g, true);
  }
}

// Ties: the first maximum in scan order (row by row) wins, and all of the gradient goes to it.
void check_tie_rule() {
  const auto g = pool_geom(1, 1, 2, 2, 2, 2, 1, 1);
  const float x[4] = {1.f, 5.f, 5.f, 5.f};
  float y = 0;
  int64_t idx = -7;
  convcore::max_pool2d_forward(g, x, &y, &idx);
  CHECK(y == 5.f && idx == 1);
  float dx[4];
  const float dy = 2.f;
  convcore::max_pool2d_backward(g, &idx, &dy, dx);
  CHECK(dx[0] == 0.f && dx[1] == 2.f && dx[2] == 0.f && dx[3] == 0.f);
}

// Overlapping windows that share their maximum add their gradients in it.
void check_overlap_sum() {
  const auto g = pool_geom(1, 1, 3, 3, 2, 2, 1, 1);
  const double x[9] = {0, 0, 0, 0, 9, 0, 0, 0, 0};
  double y[4];
  int64_t idx[4];
  convcore::max_pool2d_forward(g, x, y, idx);
  for (int k = 0; k < 4; ++k) CHECK(y[k] == 9 && idx[k] == 4);
  const double dy[4] = {1, 2, 3, 4};
  double dx[9];
  convcore::max_pool2d_backward(g, idx, dy, dx);
  CHECK(dx[4] == 10);
  for (int k = 0; k < 9; ++k)
    if (k != 4) CHECK(dx[k] == 0);
}

// -inf inputs are real cells; a window of padding only (possible with dilation) is -inf, -1.
void check_infinities_and_nan() {
  const float inf = std::numeric_limits<float>::infinity();
  {
    const auto g = pool_geom(1, 1, 2, 2, 2, 2, 2, 2);
    const float x[4] = {-inf, -inf, -inf, -inf};
    float y = 0;
    int64_t idx = -7;
    convcore::max_pool2d_forward(g, x, &y, &idx);
    CHECK(y == -inf && idx == 0);
  }
  {
    // taps at rows -1 and 2 of a 2-row input: both padding.
    const auto g = pool_geom(1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 0, 0, 3, 1);
    const float x[2] = {1.f, 2.f};
    float y = 0;
    int64_t idx = -7;
    convcore::max_pool2d_forward(g, x, &y, &idx);
    CHECK(g.oh() == 1 && g.ow() == 1);
    CHECK(y == -inf && idx == -1);
    float dx[2] = {NAN, NAN};
    const float dy = 1.f;
    convcore::max_pool2d_backward(g, &idx, &dy, dx);
    CHECK(dx[0] == 0.f && dx[1] == 0.f);
  }
  {
    // NaN propagates; the first NaN wins.
    const auto g = pool_geom(1, 1, 2, 2, 2, 2, 2, 2);
    const float x[4] = {1.f, NAN, 3.f, NAN};
    float y = 0;
    int64_t idx = -7;
    convcore::max_pool2d_forward(g, x, &y, &idx);
    CHECK(std::isnan(y) && idx == 1);
  }
}

void check_errors() {
  std::vector<float> x(2 * 3 * 6 * 6), y(2 * 3 * 3 * 3), dx(x.size(), 7.f), dy(y.size());
  std::vector<int64_t> idx(y.size(), 0);
  auto g = pool_geom(2, 3, 6, 6, 2, 2, 2, 2);
  convcore::max_pool2d_forward(g, x.data(), y.data(), idx.data());

  auto bad = g;
  bad.oc = 6;
  CHECK_THROWS(convcore::max_pool2d_forward(bad, x.data(), y.data(), idx.data()),
               std::invalid_argument);
  bad = g;
  bad.groups = 1;
  CHECK_THROWS(convcore::max_pool2d_forward(bad, x.data(), y.data(), idx.data()),
               std::invalid_argument);
  bad = g;
  bad.pt = bad.pb = 2;  // more than half of a 2x2 window
  CHECK_THROWS(convcore::max_pool2d_forward(bad, x.data(), y.data(), idx.data()),
               std::invalid_argument);
  bad = g;
  bad.kh = 7;  // larger than the input
  CHECK_THROWS(convcore::max_pool2d_forward(bad, x.data(), y.data(), idx.data()),
               std::invalid_argument);
  bad = g;
  bad.sh = 0;
  CHECK_THROWS(convcore::max_pool2d_backward(bad, idx.data(), dy.data(), dx.data()),
               std::invalid_argument);

  // An index outside the plane is refused before anything is written.
  idx[5] = 36;
  CHECK_THROWS(convcore::max_pool2d_backward(g, idx.data(), dy.data(), dx.data()),
               std::invalid_argument);
  idx[5] = -2;
  CHECK_THROWS(convcore::max_pool2d_backward(g, idx.data(), dy.data(), dx.data()),
               std::invalid_argument);
  bool untouched = true;
  for (float v : dx) untouched = untouched && v == 7.f;
  CHECK(untouched);
}

}  // namespace

int main() {
  check_all<float>();
  check_all<double>();
  check_tie_rule();
  check_overlap_sum();
  check_infinities_and_nan();
  check_errors();
  return check::report("pool");
}
