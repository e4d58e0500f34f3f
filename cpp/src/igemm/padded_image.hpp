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
#include <vector>

#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"
#include "igemm/taps.hpp"

namespace convcore::detail {

// dst[hp][wp] <- src[h][w] placed with its corner at (top, left); a negative top or left crops.
// With zero_rest the elements that do not come from src are zeroed; without, they are left as
// they are (a caller that zeroes dst once keeps a zero border for every plane copied into it).
// The one padding copy of the library: im2col's pad, the padded image below, the depthwise planes.
template <class T>
void place_plane(const T* src, int64_t h, int64_t w, int64_t top, int64_t left, int64_t hp,
                 int64_t wp, T* dst, bool zero_rest) {
  // The columns of a dst row that come from src: [x0, x1), dst column t = src column t - left.
  const int64_t x0 = std::clamp<int64_t>(left, 0, wp);
  const int64_t x1 = std::clamp<int64_t>(left + w, x0, wp);
  for (int64_t y = 0; y < hp; ++y) {
    T* d = dst + y * wp;
    const int64_t sy = y - top;
    if (static_cast<uint64_t>(sy) >= static_cast<uint64_t>(h)) {
      if (zero_rest) std::fill(d, d + wp, T(0));
      continue;
    }
    if (zero_rest) std::fill(d, d + x0, T(0));
    if (x0 < x1) std::copy(src + sy * w + (x0 - left), src + sy * w + (x1 - left), d + x0);
    if (zero_rest) std::fill(d + x1, d + wp, T(0));
  }
}

struct PaddedImage {
  int64_t hp, wp;
  int64_t elems;  // of the copy, kMaxNR zeros and rounding to 64 bytes included

  // The elements of a copy holding `values`: kMaxNR zeros after them, rounded to 64 bytes.
  template <class T>
  static int64_t elems_for(int64_t values) {
    const int64_t align = 64 / int64_t(sizeof(T));
    return (values + kMaxNR + align - 1) / align * align;
  }

  // Sizes for g; the caller has checked that they fit (padded_image_bytes).
  template <class T>
  static PaddedImage of(const Conv2dGeometry& g) {
    const int64_t hp = (g.oh() - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    const int64_t wp = (g.ow() - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    return {hp, wp, elems_for<T>(g.icg() * hp * wp)};
  }

  int64_t tap_offset(const Conv2dGeometry& g, int64_t p) const {
    const Tap t = Tap::of(g, p);
    return (t.c * hp + t.r * g.dh) * wp + t.s * g.dw;
  }

  // The offset tables of col in xp: tap_offset(p) for the K rows, and pix(j) = i*sh*wp + j'*sw
  // for the N = oh*ow output pixels j = i*ow + j'.
  std::vector<int64_t> tap_offsets(const Conv2dGeometry& g) const {
    std::vector<int64_t> off(static_cast<size_t>(g.col_rows()));
    for (int64_t p = 0; p < g.col_rows(); ++p) off[static_cast<size_t>(p)] = tap_offset(g, p);
    return off;
  }
  std::vector<int64_t> pixel_offsets(const Conv2dGeometry& g) const {
    const int64_t ow = g.ow();
    std::vector<int64_t> off(static_cast<size_t>(g.col_cols()));
    for (int64_t j = 0; j < g.col_cols(); ++j)
      off[static_cast<size_t>(j)] = (j / ow) * g.sh * wp + (j % ow) * g.sw;
    return off;
  }

  // xp from x (one group of one image: x[icg][ih][iw]).
  template <class T>
  void fill(const Conv2dGeometry& g, const T* x, T* xp) const {
    fill_channels(g, x, xp, 0, g.icg());
  }

  // Channels [c0, c1) of the copy; the zeros past the planes where the range ends with the last.
  template <class T>
  void fill_channels(const Conv2dGeometry& g, const T* x, T* xp, int64_t c0, int64_t c1) const {
    const int64_t hw = g.ih * g.iw;
    for (int64_t c = c0; c < c1; ++c)
      place_plane(x + c * hw, g.ih, g.iw, g.pt, g.pl, hp, wp, xp + c * hp * wp, true);
    if (c0 < c1 && c1 == g.icg()) std::fill(xp + g.icg() * hp * wp, xp + elems, T(0));
  }
};

// The zeros a_wide's copy adds past pi.elems: its last tile reads up to MR - 1 rows past
// M = oh*wp, each up to the last tap's offset, (kw-1)*dw < wp past the copy's end.
template <class T>
int64_t a_wide_tail(const PaddedImage& pi) {
  const int64_t align = 64 / int64_t(sizeof(T));
  return (pi.wp + kMaxMR + align - 1) / align * align;
}

// The bytes of the copy for g, in floating point so that it cannot overflow; callers compare it
// with a bound before sizing anything with PaddedImage::of.
inline double padded_image_bytes(const Conv2dGeometry& g, int64_t elem_size) {
  const double hp = double(g.oh() - 1) * double(g.sh) + double(g.kh - 1) * double(g.dh) + 1;
  const double wp = double(g.ow() - 1) * double(g.sw) + double(g.kw - 1) * double(g.dw) + 1;
  return double(g.icg()) * hp * wp * double(elem_size);
}

}  // namespace convcore::detail
