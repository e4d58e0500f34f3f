#pragma once
// im2col fused into the GEMM's B packing (implicit GEMM): the forward product
//   Y[ocg x oh*ow] = W[ocg x icg*kh*kw] * col[icg*kh*kw x oh*ow]
// never materialises col. The packer writes the panels the driver asks for straight from the
// image, so the only extra memory is the driver's packing buffer (a KC x NC block per thread).
//
//   dst[(j/nr)*kc*nr + p*nr + j%nr] = col[p0 + p][j0 + j]
//   col[(c*kh + r)*kw + s][i*ow + j] = xp[c][i*sh + r*dh][j*sw + s*dw]   (xp: x zero-padded)
//
// Within a panel, the nr columns split into runs that stay on one output row; a run reads one
// input row at stride sw (contiguous for stride 1), with the part that falls in the padding
// written as zeros. Negative padding (a crop) is fine.
#include <algorithm>
#include <cassert>
#include <cstdint>

#include "convcore/geometry.hpp"
#include "igemm/taps.hpp"

namespace convcore::detail {

template <class T>
struct Im2colPackB {
  const Conv2dGeometry& g;
  const T* x;  // one group of one image: x[icg][ih][iw]

  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst) const {
    const int64_t ow = g.ow(), panels = (nc + nr - 1) / nr;
    const Tap first = Tap::of(g, p0);  // decoded once: divisions are slow next to short runs
    for (int64_t q = 0; q < panels; ++q) {
      T* panel = dst + q * kc * nr;
      const int64_t jb = j0 + q * nr, width = std::min(nr, j0 + nc - jb);
      // Columns past nc in the last panel are zero.
      if (width < nr)
        for (int64_t p = 0; p < kc; ++p)
          for (int64_t t = width; t < nr; ++t) panel[p * nr + t] = T(0);
      // Runs of columns on one output row: [jj, jj + len) of the panel is output (i, j ..).
      int64_t jj = 0, i = jb / ow, j = jb % ow;
      while (jj < width) {
        const int64_t len = std::min(width - jj, ow - j);
        pack_run(first, kc, nr, panel + jj, i, j, len);
        jj += len;
        j += len;
        if (j == ow) {
          j = 0;
          ++i;
        }
      }
    }
  }

 private:
  // Rows p0 .. p0+kc of col for the output pixels (i, j .. j+len-1) into dst[p*nr + t].
  // The panel being written (kc x nr) stays in L1 while its rows are filled.
  void pack_run(Tap tap, int64_t kc, int64_t nr, T* dst, int64_t i, int64_t j,
                int64_t len) const {
    const int64_t plane = g.ih * g.iw;
    int64_t c = tap.c, r = tap.r, s = tap.s;
    for (int64_t p = 0; p < kc; ++p) {
      T* d = dst + p * nr;
      const int64_t y = i * g.sh + r * g.dh - g.pt;
      if (static_cast<uint64_t>(y) >= static_cast<uint64_t>(g.ih)) {
        for (int64_t t = 0; t < len; ++t) d[t] = T(0);
      } else {
        const T* row = x + c * plane + y * g.iw;
        const int64_t x0 = j * g.sw + s * g.dw - g.pl;  // input column of the run's first pixel
        const auto [t_lo, t_hi] = valid_range(x0, g.sw, g.iw, len);
        for (int64_t t = 0; t < t_lo; ++t) d[t] = T(0);
        if (g.sw == 1)
          for (int64_t t = t_lo; t < t_hi; ++t) d[t] = row[x0 + t];
        else
          for (int64_t t = t_lo; t < t_hi; ++t) d[t] = row[x0 + t * g.sw];
        for (int64_t t = t_hi; t < len; ++t) d[t] = T(0);
      }
      if (++s == g.kw) {
        s = 0;
        if (++r == g.kh) {
          r = 0;
          ++c;
        }
      }
    }
  }
};

// The transposed operand of the weight gradient, dW[ocg x K] += dY[ocg x N] * col^T[N x K]:
//
//   dst[(j/nr)*kc*nr + p*nr + j%nr] = col[j0 + j][p0 + p]      (p: output pixel, j: tap)
//
// A panel holds nr taps for kc pixels. It is filled kPixelBlock pixels at a time, one tap at a
// time: the tap's pixels are read along input rows (contiguous for stride 1) and written nr apart
// into the panel, so that the part being written stays in L1 whatever the panel's size (a whole
// 64-wide panel of 256 pixels is 64 KiB; written tap by tap, it went to L2 and back for each).
template <class T>
struct Im2colTransPackB {
  const Conv2dGeometry& g;
  const T* x;  // one group of one image: x[icg][ih][iw]

  static constexpr int64_t kPixelBlock = 64;

  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst) const {
    const int64_t panels = (nc + nr - 1) / nr;
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t jb = j0 + q * nr, width = std::min(nr, j0 + nc - jb);
      for (int64_t pb = 0; pb < kc; pb += kPixelBlock)
        fill(p0 + pb, std::min(kPixelBlock, kc - pb), jb, width, nr, dst + q * kc * nr + pb * nr);
    }
  }

 private:
  // d[p * nr + jj] = col[jb + jj][p0 + p] for p < len, jj < nr (zero for jj >= width).
  void fill(int64_t p0, int64_t len_p, int64_t jb, int64_t width, int64_t nr, T* d0) const {
    const int64_t plane = g.ih * g.iw, ow = g.ow(), i0 = p0 / ow, j0 = p0 % ow;
    Tap tap = Tap::of(g, jb);  // tap jb + jj, stepped along with jj
    for (int64_t jj = 0; jj < nr; ++jj) {
      T* d = d0 + jj;  // d[p * nr] for p in [0, len_p)
      if (jj >= width) {  // past the last tap: zero
        for (int64_t p = 0; p < len_p; ++p) d[p * nr] = T(0);
        continue;
      }
      const int64_t r = tap.r, s = tap.s;
      const T* xc = x + tap.c * plane;
      if (++tap.s == g.kw) {
        tap.s = 0;
        if (++tap.r == g.kh) {
          tap.r = 0;
          ++tap.c;
        }
      }
      // Pixels p0 .. p0+len_p in runs along output rows.
      int64_t p = 0, i = i0, j = j0;
      while (p < len_p) {
        const int64_t len = std::min(len_p - p, ow - j);
        const int64_t y = i * g.sh + r * g.dh - g.pt;
        T* dr = d + p * nr;
        if (static_cast<uint64_t>(y) >= static_cast<uint64_t>(g.ih)) {
          for (int64_t t = 0; t < len; ++t) dr[t * nr] = T(0);
        } else {
          const T* row = xc + y * g.iw;
          const int64_t x0 = j * g.sw + s * g.dw - g.pl;
          const auto [t_lo, t_hi] = valid_range(x0, g.sw, g.iw, len);
          for (int64_t t = 0; t < t_lo; ++t) dr[t * nr] = T(0);
          for (int64_t t = t_lo; t < t_hi; ++t) dr[t * nr] = row[x0 + t * g.sw];
          for (int64_t t = t_hi; t < len; ++t) dr[t * nr] = T(0);
        }
        p += len;
        j += len;
        if (j == ow) {
          j = 0;
          ++i;
        }
      }
    }
  }
};

}  // namespace convcore::detail
