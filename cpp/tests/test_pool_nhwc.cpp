// Channels-last max pooling and average pooling (both layouts) against direct loops written in
// the layout's own index form; results bitwise identical for 1, 2 and 3 threads.
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "convcore/parallel.hpp"
#include "convcore/pool.hpp"
#include "test_util.hpp"

using check::all_close;
using check::same_bits;
using convcore::Conv2dGeometry;
using convcore::Layout;

namespace {

Conv2dGeometry pool_geom(int64_t mb, int64_t c, int64_t ih, int64_t iw, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t pt = 0, int64_t pb = 0, int64_t pl = 0,
                         int64_t pr = 0, int64_t dh = 1, int64_t dw = 1,
                         Layout layout = Layout::nhwc) {
  auto g = testutil::geom(mb, c, ih, iw, c, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, c);
  g.layout = layout;
  return g;
}

// Offset of (n, c, h, w) in an (ih x iw) image of the geometry's layout.
int64_t at(const Conv2dGeometry& g, int64_t n, int64_t c, int64_t h, int64_t w, int64_t H,
           int64_t W) {
  return g.layout == Layout::nhwc ? ((n * H + h) * W + w) * g.ic + c : ((n * g.ic + c) * H + h) * W + w;
}

// Small integers: windows full of ties.
template <class T>
std::vector<T> small_ints(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, 3);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& e : v) e = T(dist(rng));
  return v;
}

// Direct max pooling: every tap checked, strictly greater replaces, first NaN wins.
template <class T>
void ref_max(const Conv2dGeometry& g, const std::vector<T>& x, std::vector<T>& y,
             std::vector<int64_t>& idx, std::vector<T>& dx, const std::vector<T>& dy) {
  const int64_t oh = g.oh(), ow = g.ow();
  y.assign(g.dst_size(), T(0));
  idx.assign(g.dst_size(), -2);
  dx.assign(g.src_size(), T(0));
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t c = 0; c < g.ic; ++c)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          T best = -std::numeric_limits<T>::infinity();
          int64_t won = -1;
          for (int64_t r = 0; r < g.kh; ++r)
            for (int64_t s = 0; s < g.kw; ++s) {
              const int64_t h = i * g.sh - g.pt + r * g.dh, w = j * g.sw - g.pl + s * g.dw;
              if (h < 0 || h >= g.ih || w < 0 || w >= g.iw) continue;
              const T v = x[at(g, n, c, h, w, g.ih, g.iw)];
              if (won < 0 || (!std::isnan(best) && (v > best || std::isnan(v)))) {
                best = v;
                won = h * g.iw + w;
              }
            }
          const int64_t o = at(g, n, c, i, j, oh, ow);
          y[o] = best;
          idx[o] = won;
          if (won >= 0) dx[at(g, n, c, won / g.iw, won % g.iw, g.ih, g.iw)] += dy[o];
        }
}

// Direct average pooling and its gradient (scatter in the order of the output cells).
template <class T>
void ref_avg(const Conv2dGeometry& g, bool include_pad, const std::vector<T>& x, std::vector<T>& y,
             std::vector<T>& dx, const std::vector<T>& dy) {
  const int64_t oh = g.oh(), ow = g.ow();
  y.assign(g.dst_size(), T(0));
  dx.assign(g.src_size(), T(0));
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t c = 0; c < g.ic; ++c)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double sum = 0;
          int64_t cells = 0;
          for (int64_t r = 0; r < g.kh; ++r)
            for (int64_t s = 0; s < g.kw; ++s) {
              const int64_t h = i * g.sh - g.pt + r, w = j * g.sw - g.pl + s;
              if (h < 0 || h >= g.ih || w < 0 || w >= g.iw) continue;
              sum += double(x[at(g, n, c, h, w, g.ih, g.iw)]);
              ++cells;
            }
          const double d = include_pad ? double(g.kh * g.kw) : double(cells);
          const int64_t o = at(g, n, c, i, j, oh, ow);
          y[o] = T(sum / d);
          for (int64_t r = 0; r < g.kh; ++r)
            for (int64_t s = 0; s < g.kw; ++s) {
              const int64_t h = i * g.sh - g.pt + r, w = j * g.sw - g.pl + s;
              if (h < 0 || h >= g.ih || w < 0 || w >= g.iw) continue;
              dx[at(g, n, c, h, w, g.ih, g.iw)] += T(double(dy[o]) / d);
            }
        }
}

template <class T>
void check_max(const Conv2dGeometry& g, bool ties) {
  auto x = ties ? small_ints<T>(g.src_size(), 31) : testutil::random_vector<T>(g.src_size(), 31);
  if (!ties && g.src_size() > 7) x[7] = T(NAN);  // NaN propagation in one window
  const auto dy = testutil::random_vector<T>(g.dst_size(), 32);
  std::vector<T> y_ref, dx_ref;
  std::vector<int64_t> idx_ref;
  ref_max(g, x, y_ref, idx_ref, dx_ref, dy);
  std::vector<T> y1, dx1;
  std::vector<int64_t> idx1;
  for (int threads : {1, 2, 3}) {
    convcore::set_num_threads(threads);
    std::vector<T> y(g.dst_size(), T(7)), dx(g.src_size(), T(NAN));
    std::vector<int64_t> idx(g.dst_size(), -7);
    convcore::max_pool2d_forward(g, x.data(), y.data(), idx.data());
    CHECK_MSG(same_bits(y, y_ref) && idx == idx_ref, "max forward " << g << " ties=" << ties
                                                                    << " threads=" << threads);
    convcore::max_pool2d_backward(g, idx.data(), dy.data(), dx.data());
    // Same order of additions as the reference: exact.
    CHECK_MSG(same_bits(dx, dx_ref), "max backward " << g << " threads=" << threads);
    if (threads == 1) y1 = y, idx1 = idx, dx1 = dx;
    CHECK_MSG(same_bits(y, y1) && idx == idx1 && same_bits(dx, dx1), "max threads " << g);
  }
  convcore::set_num_threads(1);
}

// Indices given by the caller may point anywhere in the plane (the backward checks only their
// range): the forward's indices with some moved out of their windows' rows, and indices drawn
// at random. The gradient is the direct scatter in output order, whatever the indices.
template <class T>
void check_max_any_indices(const Conv2dGeometry& g) {
  const int64_t in_plane = g.ih * g.iw, oh = g.oh(), ow = g.ow();
  const auto x = testutil::random_vector<T>(g.src_size(), 51);
  const auto dy = testutil::random_vector<T>(g.dst_size(), 52);
  std::vector<T> y(g.dst_size());
  std::vector<int64_t> fwd(g.dst_size());
  convcore::max_pool2d_forward(g, x.data(), y.data(), fwd.data());
  std::mt19937 rng(53);
  std::uniform_int_distribution<int64_t> cell(-1, in_plane - 1);
  for (int variant = 0; variant < 3; ++variant) {
    std::vector<int64_t> idx = fwd;
    for (size_t k = 0; k < idx.size(); ++k) {
      if (variant == 0 && k % 37 == 5) idx[k] = cell(rng);        // a few anywhere
      if (variant == 1 && k == idx.size() / 2) idx[k] = 0;         // one in the first row
      if (variant == 2) idx[k] = cell(rng);                        // all anywhere
    }
    std::vector<T> ref(g.src_size(), T(0));
    for (int64_t n = 0; n < g.mb; ++n)
      for (int64_t c = 0; c < g.ic; ++c)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t o = at(g, n, c, i, j, oh, ow), v = idx[o];
            if (v >= 0) ref[at(g, n, c, v / g.iw, v % g.iw, g.ih, g.iw)] += dy[o];
          }
    for (int threads : {1, 2, 3}) {
      convcore::set_num_threads(threads);
      std::vector<T> dx(g.src_size(), T(NAN));
      convcore::max_pool2d_backward(g, idx.data(), dy.data(), dx.data());
      CHECK_MSG(same_bits(dx, ref), "max backward, indices anywhere " << g << " variant=" << variant
                                                                      << " threads=" << threads);
    }
  }
  convcore::set_num_threads(1);
}

template <class T>
void check_avg(const Conv2dGeometry& g, bool include_pad) {
  const auto x = testutil::random_vector<T>(g.src_size(), 41);
  const auto dy = testutil::random_vector<T>(g.dst_size(), 42);
  std::vector<T> y_ref, dx_ref;
  ref_avg(g, include_pad, x, y_ref, dx_ref, dy);
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  std::vector<T> y1, dx1;
  for (int threads : {1, 2, 3}) {
    convcore::set_num_threads(threads);
    std::vector<T> y(g.dst_size(), T(NAN)), dx(g.src_size(), T(NAN));
    convcore::avg_pool2d_forward(g, include_pad, x.data(), y.data());
    CHECK_MSG(all_close(y, y_ref, tol), "avg forward " << g << " include_pad=" << include_pad);
    convcore::avg_pool2d_backward(g, include_pad, dy.data(), dx.data());
    CHECK_MSG(all_close(dx, dx_ref, tol), "avg backward " << g << " include_pad=" << include_pad);
    if (threads == 1) y1 = y, dx1 = dx;
    CHECK_MSG(same_bits(y, y1) && same_bits(dx, dx1), "avg threads " << g << " threads=" << threads);
  }
  convcore::set_num_threads(1);
}

template <class T>
void check_all() {
  const Layout nhwc = Layout::nhwc, nchw = Layout::nchw;
  const Conv2dGeometry max_cases[] = {
      pool_geom(2, 3, 8, 8, 2, 2, 2, 2),
      pool_geom(2, 19, 7, 9, 2, 2, 2, 2),             // channels not a multiple of a vector
      pool_geom(2, 16, 7, 9, 2, 2, 2, 2),             // 16 channels: the pixel in registers
      pool_geom(1, 16, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1),  // ... with padding
      pool_geom(1, 2, 7, 7, 3, 3, 2, 2),              // overlapping windows
      pool_geom(2, 5, 6, 5, 3, 3, 1, 1),              // stride 1
      pool_geom(1, 70, 9, 8, 3, 2, 2, 1),             // more than one channel block
      pool_geom(2, 4, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1),  // padding: -inf
      pool_geom(1, 3, 6, 7, 4, 3, 3, 2, 2, 1, 0, 1),  // asymmetric padding
      pool_geom(1, 6, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1, 2, 2),  // dilation
      pool_geom(1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 0, 0, 3, 1),  // a window of padding only
      pool_geom(1, 600, 3, 3, 2, 2, 1, 1),            // more than one run of kChunk channels
      pool_geom(1, 2, 5, 4, 5, 4, 1, 1),              // window = whole plane
      pool_geom(3, 4, 1, 1, 1, 1, 1, 1),
      pool_geom(0, 2, 4, 4, 2, 2, 2, 2),              // empty batch
  };
  for (const auto& g : max_cases) {
    check_max<T>(g, false);
    check_max<T>(g, true);
    for (Layout layout : {nhwc, nchw}) {
      Conv2dGeometry any = g;
      any.layout = layout;
      check_max_any_indices<T>(any);
    }
  }
  for (Layout layout : {nhwc, nchw}) {
    const Conv2dGeometry avg_cases[] = {
        pool_geom(2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, layout),
        pool_geom(2, 19, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, layout),
        pool_geom(1, 70, 6, 5, 3, 2, 1, 1, 1, 0, 1, 1, 1, 1, layout),
        pool_geom(1, 2, 5, 4, 5, 4, 1, 1, 2, 2, 2, 2, 1, 1, layout),
        pool_geom(0, 2, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, layout),
    };
    for (const auto& g : avg_cases) {
      check_avg<T>(g, true);
      check_avg<T>(g, false);
    }
  }
}

void check_errors() {
  auto g = pool_geom(1, 2, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, 2);
  std::vector<float> x(g.src_size()), y(g.dst_size());
  CHECK_THROWS(convcore::avg_pool2d_forward(g, true, x.data(), y.data()), std::invalid_argument);
  g = pool_geom(1, 2, 6, 6, 2, 2, 2, 2);
  std::vector<int64_t> idx(g.dst_size(), 36);  // outside the 6x6 plane
  std::vector<float> dy(g.dst_size()), dx(g.src_size(), 7.f);
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
  check_errors();
  return check::report("pool_nhwc");
}
