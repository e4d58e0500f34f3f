#include "convcore/im2col.hpp"

#include <algorithm>
#include <cstring>

#include "convcore/parallel.hpp"
#include "depthwise/direct_loops.hpp"
#include "igemm/col2im_rows.hpp"
#include "igemm/padded_image.hpp"

namespace convcore {
namespace {

// 0 <= a < b in one compare (Caffe's is_a_ge_zero_and_a_lt_b).
inline bool in_range(int64_t a, int64_t b) {
  return static_cast<uint64_t>(a) < static_cast<uint64_t>(b);
}

// ceil(a / b) for a >= 0, b > 0, without forming a + b - 1.
inline int64_t ceil_div_nonneg(int64_t a, int64_t b) { return a / b + (a % b != 0); }

// Visits every row of col, one (channel, r, s, output row i), with where its entries come from:
// f(k, first, j0, j1): col[k + j] holds im[first + (j - j0)*sw] for j0 <= j < j1, and the padding
// (zero) for the other j < ow (all of them when j0 == j1). One loop nest for im2col and col2im;
// the valid columns of a row are found once, so the loops over them have no tests.
template <class F>
void for_each_col_row(const Conv2dGeometry& g, F&& f) {
  const int64_t oh = g.oh(), ow = g.ow(), channels = g.icg();
  int64_t k = 0;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < g.kh; ++r)
      for (int64_t s = 0; s < g.kw; ++s) {
        // Output column j reads image column x0 + j*sw: in range for j0 <= j < j1, the first at
        // xs. Nothing here overflows, whatever the padding (x0 > INT64_MIN: pl <= INT64_MAX).
        const int64_t x0 = s * g.dw - g.pl;
        const int64_t j0 = x0 >= 0 ? 0 : std::min(ow, ceil_div_nonneg(-x0, g.sw));
        const int64_t xs = x0 >= 0 ? x0 : (g.sw - (-x0) % g.sw) % g.sw;
        const int64_t j1 =
            j0 == ow || xs >= g.iw ? j0 : j0 + std::min(ow - j0, ceil_div_nonneg(g.iw - xs, g.sw));
        for (int64_t i = 0; i < oh; ++i, k += ow) {
          const int64_t y = i * g.sh + r * g.dh - g.pt;
          if (!in_range(y, g.ih) || j0 == j1)
            f(k, int64_t{0}, int64_t{0}, int64_t{0});
          else
            f(k, (c * g.ih + y) * g.iw + xs, j0, j1);
        }
      }
}

}  // namespace

template <class T>
void im2col(const Conv2dGeometry& g, const T* im, T* col) {
  const int64_t ow = g.ow(), sw = g.sw;
  for_each_col_row(g, [&](int64_t k, int64_t first, int64_t j0, int64_t j1) {
    T* row = col + k;
    std::fill(row, row + j0, T(0));
    for (int64_t j = j0; j < j1; ++j) row[j] = im[first + (j - j0) * sw];
    std::fill(row + j1, row + ow, T(0));
  });
}

template <class T>
void col2im(const Conv2dGeometry& g, const T* col, T* im) {
  const int64_t sw = g.sw;
  for_each_col_row(g, [&](int64_t k, int64_t first, int64_t j0, int64_t j1) {
    const T* __restrict src = col + k + j0;
    T* __restrict dst = im + first;
    const int64_t n = j1 - j0;
    if (sw == 1) {
      for (int64_t j = 0; j < n; ++j) dst[j] += src[j];  // contiguous: vectorised
    } else {
      for (int64_t j = 0; j < n; ++j) dst[j * sw] += src[j];
    }
  });
}

template <class T>
void expand_stride(const Conv2dGeometry& g, int64_t channels, const T* delta, T* expanded) {
  const int64_t oh = g.oh(), ow = g.ow(), eh = g.eh(), ew = g.ew();
  std::fill(expanded, expanded + channels * eh * ew, T(0));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        expanded[(c * eh + i * g.sh) * ew + j * g.sw] = delta[(c * oh + i) * ow + j];
}

template <class T>
void pad(int64_t channels, int64_t h, int64_t w, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
         const T* src, T* dst) {
  const int64_t hp = h + pt + pb, wp = w + pl + pr;
  for (int64_t c = 0; c < channels; ++c)
    detail::place_plane(src + c * h * w, h, w, pt, pl, hp, wp, dst + c * hp * wp, true);
}

template <class T>
void flip_kernels(const Conv2dGeometry& g, const T* w, T* wf) {
  const int64_t icg = g.icg(), ocg = g.ocg(), khw = g.kh * g.kw;
  // One item per filter (gi, o) over the threads: a large layer's weights (res3x3c256: 590 K
  // values, read and written out of order) take a noticeable part of its input gradient.
  detail::parallel_for(g.groups * ocg, icg * khw, [&](int64_t item) {
    const int64_t gi = item / ocg, o = item % ocg;
    for (int64_t c = 0; c < icg; ++c) {
      const T* src = w + ((gi * ocg + o) * icg + c) * khw;
      T* dst = wf + ((gi * icg + c) * ocg + o) * khw;
      for (int64_t t = 0; t < khw; ++t) dst[t] = src[khw - 1 - t];  // rot180 of a row-major kh x kw
    }
  });
}

namespace detail {

template <class T>
void col2im_rows(const DirectLoops<T>& k, const Conv2dGeometry& g, const T* col, T* im) {
  const int64_t oh = g.oh(), ow = g.ow(), N = oh * ow;
  // Every channel's dx row y takes the same taps: one call per kernel row r adds them to all.
  const Col2imRun run{g.kw, g.iw, N, -g.pl, g.dw, ow, g.icg(), g.kh * g.kw * N, g.ih * g.iw};
  for (int64_t y = 0; y < g.ih; ++y) {
    T* out = im + y * g.iw;
    bool add = false;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t t = y + g.pt - r * g.dh;  // i * sh for the output row i that tap row r reads
      if (t < 0 || t % g.sh != 0 || t / g.sh >= oh) continue;
      // The kw runs of (c, r, *, i): run s holds x = j + s*dw - pl, one col row (N) apart.
      k.col2im_row(run, col + r * g.kw * N + t / g.sh * ow, add, out);
      add = true;
    }
    if (!add)  // no kernel row reaches dx row y (padding, or the stride down skips it)
      for (int64_t c = 0; c < g.icg(); ++c)
        std::fill(out + c * run.out_rows, out + c * run.out_rows + g.iw, T(0));
  }
}

}  // namespace detail

#define CONVCORE_INSTANTIATE(T)                                                              \
  template void detail::col2im_rows<T>(const detail::DirectLoops<T>&, const Conv2dGeometry&, \
                                       const T*, T*);                                        \
  template void im2col<T>(const Conv2dGeometry&, const T*, T*);                              \
  template void col2im<T>(const Conv2dGeometry&, const T*, T*);                              \
  template void expand_stride<T>(const Conv2dGeometry&, int64_t, const T*, T*);              \
  template void pad<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,        \
                       const T*, T*);                                                        \
  template void flip_kernels<T>(const Conv2dGeometry&, const T*, T*);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore
