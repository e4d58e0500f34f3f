#pragma once
// Shared helpers of the C++ tests: deterministic random data and geometry construction.
#include <cstdint>
#include <random>
#include <vector>

#include "convcore/geometry.hpp"

namespace testutil {

template <class T>
std::vector<T> random_vector(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& e : v) e = T(dist(rng));
  return v;
}

// mb ic ih iw oc kh kw sh sw pt pb pl pr dh dw groups
inline convcore::Conv2dGeometry geom(int64_t mb, int64_t ic, int64_t ih, int64_t iw, int64_t oc,
                                     int64_t kh, int64_t kw, int64_t sh = 1, int64_t sw = 1,
                                     int64_t pt = 0, int64_t pb = 0, int64_t pl = 0,
                                     int64_t pr = 0, int64_t dh = 1, int64_t dw = 1,
                                     int64_t groups = 1) {
  convcore::Conv2dGeometry g;
  g.mb = mb; g.ic = ic; g.ih = ih; g.iw = iw; g.oc = oc; g.kh = kh; g.kw = kw;
  g.sh = sh; g.sw = sw; g.pt = pt; g.pb = pb; g.pl = pl; g.pr = pr; g.dh = dh; g.dw = dw;
  g.groups = groups;
  return g;
}

// An activation tensor [mb][c][h][w] (NCHW) in `layout`, and back: the tests keep their data and
// references in NCHW and convert at the boundary of the op under test.
template <class T>
std::vector<T> from_nchw(const std::vector<T>& v, int64_t mb, int64_t c, int64_t h, int64_t w,
                         convcore::Layout layout) {
  if (layout == convcore::Layout::nchw) return v;
  std::vector<T> out(v.size());
  for (int64_t n = 0; n < mb; ++n)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p)
        out[static_cast<size_t>((n * h * w + p) * c + k)] = v[static_cast<size_t>((n * c + k) * h * w + p)];
  return out;
}
template <class T>
std::vector<T> to_nchw(const std::vector<T>& v, int64_t mb, int64_t c, int64_t h, int64_t w,
                       convcore::Layout layout) {
  if (layout == convcore::Layout::nchw) return v;
  std::vector<T> out(v.size());
  for (int64_t n = 0; n < mb; ++n)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p)
        out[static_cast<size_t>((n * c + k) * h * w + p)] = v[static_cast<size_t>((n * h * w + p) * c + k)];
  return out;
}

}  // namespace testutil
