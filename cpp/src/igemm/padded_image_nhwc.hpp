#pragma once
// The zero-padded copy the NHWC paths read their in-place GEMM operand from: a band of output
// rows of one image, all channels, in HWC order. For the band of output rows [i0, i0 + cnt):
//
//   xp[y][x][c] = x[i0*sh + y - pt][x - pl][c] inside the image, else 0,
//   y < hb = (cnt-1)*sh + (kh-1)*dh + 1,   x < wp = (ow-1)*sw + (kw-1)*dw + 1,   c < ic,
//
// (negative padding, the flipped pass's crop, included), then zeros to the end of the block.
// Every group reads the same copy from its own base xp + gi*icg, and col^T, the transposed
// im2col matrix of the band with its K index ordered (r, s, c), is a set of offsets into it:
//
//   col^T[i*ow + j][(r*kw + s)*icg + c] = xp[pix(i, j) + tap(r, s, c)],
//   pix(i, j) = (i*sh*wp + j*sw)*ic,   tap(r, s, c) = (r*dh*wp + s*dw)*ic + c.
//
// Bands bound the copy (kBandBytes) whatever the image size; their height depends on the
// geometry only, so sums formed band by band have the same bits for any number of threads.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"

namespace convcore::detail {

// Output rows per band: as many as keep bytes_per_row * rows + halo_bytes within budget, at
// least 1, at most oh.
inline int64_t band_rows(int64_t oh, double bytes_per_row, double halo_bytes, double budget) {
  const double fit = std::floor((budget - halo_bytes) / std::max(bytes_per_row, 1.0));
  return std::clamp<int64_t>(fit < 1 ? 1 : int64_t(std::min(fit, double(oh))), 1,
                             std::max<int64_t>(oh, 1));
}

struct PaddedBandNhwc {
  static constexpr double kBandBytes = double(1 << 20);
  int64_t rows = 1;   // output rows per band; the last band may have fewer
  int64_t bands = 1;  // ceil(oh / rows)
  int64_t hb = 1, wp = 1;
  int64_t elems = 0;  // of the copy of a full band, with a zero tail, rounded to 64 bytes

  template <class T>
  static PaddedBandNhwc of(const Conv2dGeometry& g) {
    PaddedBandNhwc b;
    const int64_t oh = g.oh();
    b.wp = (g.ow() - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    const double row_bytes = double(b.wp) * double(g.ic) * double(sizeof(T));
    b.rows = band_rows(oh, row_bytes * double(g.sh), row_bytes * double((g.kh - 1) * g.dh + 1),
                       kBandBytes);
    b.bands = oh > 0 ? (oh + b.rows - 1) / b.rows : 0;
    b.hb = (b.rows - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    const int64_t align = 64 / int64_t(sizeof(T));
    b.elems = (b.hb * b.wp * g.ic + kMaxNR + align - 1) / align * align;
    return b;
  }

  // tap(r, s, c) for the K = kh*kw*icg columns of col^T, in (r, s, c) order.
  std::vector<int64_t> tap_offsets(const Conv2dGeometry& g) const {
    std::vector<int64_t> off;
    off.reserve(static_cast<size_t>(g.col_rows()));
    for (int64_t r = 0; r < g.kh; ++r)
      for (int64_t s = 0; s < g.kw; ++s)
        for (int64_t c = 0; c < g.icg(); ++c)
          off.push_back((r * g.dh * wp + s * g.dw) * g.ic + c);
    return off;
  }
  // pix(i, j) for the rows*ow pixels of a full band, i relative to the band.
  std::vector<int64_t> pixel_offsets(const Conv2dGeometry& g) const {
    const int64_t ow = g.ow();
    std::vector<int64_t> off(static_cast<size_t>(rows * ow));
    for (int64_t q = 0; q < rows * ow; ++q)
      off[static_cast<size_t>(q)] = ((q / ow) * g.sh * wp + (q % ow) * g.sw) * g.ic;
    return off;
  }

  // The output rows [i0, i0 + cnt) of band `band`.
  void band_range(const Conv2dGeometry& g, int64_t band, int64_t& i0, int64_t& cnt) const {
    i0 = band * rows;
    cnt = std::min(rows, g.oh() - i0);
  }

  // xp for the band of output rows starting at i0 (cnt rows) of one image x[ih][iw][ic].
  template <class T>
  void fill(const Conv2dGeometry& g, const T* x, int64_t i0, int64_t cnt, T* xp) const {
    fill_rows(g, x, i0, cnt, xp, 0, copy_rows(g, cnt));
  }

  // The rows of the band's copy.
  static int64_t copy_rows(const Conv2dGeometry& g, int64_t cnt) {
    return (cnt - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  }

  // Rows [y0, y1) of the band's copy, and the zeros past them where the range ends with the last.
  template <class T>
  void fill_rows(const Conv2dGeometry& g, const T* x, int64_t i0, int64_t cnt, T* xp, int64_t y0,
                 int64_t y1) const {
    const int64_t ic = g.ic, h = copy_rows(g, cnt);
    const int64_t x0 = std::clamp<int64_t>(g.pl, 0, wp);
    const int64_t x1 = std::clamp<int64_t>(g.pl + g.iw, x0, wp);
    for (int64_t y = y0; y < y1; ++y) {
      T* d = xp + y * wp * ic;
      const int64_t sy = i0 * g.sh + y - g.pt;
      if (static_cast<uint64_t>(sy) >= static_cast<uint64_t>(g.ih)) {
        std::fill(d, d + wp * ic, T(0));
        continue;
      }
      std::fill(d, d + x0 * ic, T(0));
      const T* s = x + (sy * g.iw + (x0 - g.pl)) * ic;
      std::copy(s, s + (x1 - x0) * ic, d + x0 * ic);
      std::fill(d + x1 * ic, d + wp * ic, T(0));
    }
    if (y0 < y1 && y1 == h) std::fill(xp + h * wp * ic, xp + elems, T(0));
  }
};

// The band height and the bytes of one band's copy for g, in floating point so that they cannot
// overflow (the cost models read them before anything is sized).
inline void padded_band_nhwc_size(const Conv2dGeometry& g, int64_t elem_size, double& rows,
                                  double& bytes) {
  const double wp = double(g.ow() - 1) * double(g.sw) + double(g.kw - 1) * double(g.dw) + 1;
  const double row = wp * double(g.ic) * double(elem_size);
  const double halo = double(g.kh - 1) * double(g.dh) + 1;
  const double fit = std::floor((PaddedBandNhwc::kBandBytes - row * halo) /
                                std::max(row * double(g.sh), 1.0));
  rows = std::clamp(fit, 1.0, double(std::max<int64_t>(g.oh(), 1)));
  bytes = ((rows - 1) * double(g.sh) + halo) * row;
}

}  // namespace convcore::detail
