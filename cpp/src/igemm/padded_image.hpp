#pragma once
// The zero-padded copy of one group of one image that the in-place GEMM operands read:
//
//   xp[c][y][x] = x[c][y - pt][x - pl] inside the image, else 0,   c < icg, y < hp, x < wp,
//   hp = (oh-1)*sh + (kh-1)*dh + 1,   wp = (ow-1)*sw + (kw-1)*dw + 1,
//
// exactly the rows and columns the convolution reaches (negative padding, a crop, included),
// followed by kMaxNR zeros so that a kernel reading whole NR-wide rows past the last column stays
// inside. Then col, the im2col matrix, is a set of offsets into xp:
//
//   col[p][i*ow + j] = xp[tap_offset(p) + i*sh*wp + j*sw],
//   tap_offset((c*kh + r)*kw + s) = c*hp*wp + r*dh*wp + s*dw.
#include <algorithm>
#include <cstdint>

#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"

namespace convcore::detail {

struct PaddedImage {
  int64_t hp, wp;
  int64_t elems;  // of the copy, kMaxNR zeros and rounding to 64 bytes included

  // Sizes for g; the caller has checked that they fit (padded_image_bytes).
  template <class T>
  static PaddedImage of(const Conv2dGeometry& g) {
    const int64_t hp = (g.oh() - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    const int64_t wp = (g.ow() - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    const int64_t align = 64 / int64_t(sizeof(T));
    return {hp, wp, (g.icg() * hp * wp + kMaxNR + align - 1) / align * align};
  }

  int64_t tap_offset(const Conv2dGeometry& g, int64_t p) const {
    const int64_t khw = g.kh * g.kw;
    const int64_t c = p / khw, r = (p % khw) / g.kw, s = p % g.kw;
    return (c * hp + r * g.dh) * wp + s * g.dw;
  }

  // xp from x (one group of one image: x[icg][ih][iw]).
  template <class T>
  void fill(const Conv2dGeometry& g, const T* x, T* xp) const {
    const int64_t hw = g.ih * g.iw;
    // The columns of an xp row that fall inside the image: [t_lo, t_hi), xp column t = x[t - pl].
    const int64_t t_lo = std::clamp<int64_t>(g.pl, 0, wp);
    const int64_t t_hi = std::clamp<int64_t>(g.pl + g.iw, t_lo, wp);
    T* d = xp;
    for (int64_t c = 0; c < g.icg(); ++c)
      for (int64_t y = 0; y < hp; ++y, d += wp) {
        const int64_t iy = y - g.pt;
        if (static_cast<uint64_t>(iy) >= static_cast<uint64_t>(g.ih)) {
          std::fill(d, d + wp, T(0));
          continue;
        }
        const T* row = x + c * hw + iy * g.iw;
        std::fill(d, d + t_lo, T(0));
        if (t_lo < t_hi) std::copy(row + (t_lo - g.pl), row + (t_hi - g.pl), d + t_lo);
        std::fill(d + t_hi, d + wp, T(0));
      }
    std::fill(d, xp + elems, T(0));
  }
};

// The bytes of the copy for g, in floating point so that it cannot overflow; callers compare it
// with a bound before sizing anything with PaddedImage::of.
inline double padded_image_bytes(const Conv2dGeometry& g, int64_t elem_size) {
  const double hp = double(g.oh() - 1) * double(g.sh) + double(g.kh - 1) * double(g.dh) + 1;
  const double wp = double(g.ow() - 1) * double(g.sw) + double(g.kw - 1) * double(g.dw) + 1;
  return double(g.icg()) * hp * wp * double(elem_size);
}

}  // namespace convcore::detail
