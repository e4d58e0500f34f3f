// Channels-last pooling (pool_nhwc.hpp). For each output pixel the window's cells inside the
// plane are listed once (window_cells); then every cell contributes a run of channels at a time:
//
//   y[n][i][j][c0..c1) = max / sum over cells k of x[n][k][c0..c1)      (k = h*iw + w)
//
// The forward passes split the work over output rows (mb*oh), the backward passes over (image,
// block of channels: kScatterBlock for max, kChannelBlock for average): each output element,
// and each input-gradient element, is computed by one thread in a fixed order, so results are
// bitwise identical for any thread count.
// The backward passes add in the order of the output cells, as the NCHW scatter does.
#include "pool_nhwc.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "convcore/parallel.hpp"
#include "pool_select.hpp"

namespace convcore::detail {

namespace {

// Channels per run in the forward passes (the tap numbers of one run stay in L1) and per item
// of the backward passes.
constexpr int64_t kChunk = 512;
constexpr int64_t kChannelBlock = 64;
// Channels per item of the max-pooling backward pass: a whole image up to this many, so that
// its gradient is zeroed in one run (a fill per pixel costs more than the scatter with few
// channels); more channels are cut into blocks that still give the threads work.
constexpr int64_t kScatterBlock = 256;

// The flat positions h*iw + w of the cells of window (i, j) that lie inside the plane, in scan
// order (row by row); returns how many. cells has room for kh*kw.
int64_t window_cells(const Conv2dGeometry& g, int64_t i, int64_t j, int64_t* cells) {
  int64_t n = 0;
  for (int64_t r = 0; r < g.kh; ++r) {
    const int64_t h = i * g.sh - g.pt + r * g.dh;
    if (static_cast<uint64_t>(h) >= static_cast<uint64_t>(g.ih)) continue;
    for (int64_t s = 0; s < g.kw; ++s) {
      const int64_t w = j * g.sw - g.pl + s * g.dw;
      if (static_cast<uint64_t>(w) < static_cast<uint64_t>(g.iw)) cells[n++] = h * g.iw + w;
    }
  }
  return n;
}

// One tap over a run of channels: take_max_masked of xt[k] into best[k], recording tap t.
template <class T>
void take_max_run(const T* __restrict xt, int64_t nc, MaskInt<T> t, T* __restrict best,
                  MaskInt<T>* __restrict won) {
  for (int64_t k = 0; k < nc; ++k) {
    T m = best[k];
    MaskInt<T> w = won[k];
    take_max_masked(xt[k], t, m, w);
    best[k] = m;
    won[k] = w;
  }
}

// Taps 0 and 1 over a run of channels: best[k], won[k] = the maximum of x0[k] then x1[k] and
// the tap it came from (take_max_masked from x0[k], tap 0).
template <class T>
void take_max_pair(const T* __restrict x0, const T* __restrict x1, int64_t nc, T* __restrict best,
                   MaskInt<T>* __restrict won) {
  for (int64_t k = 0; k < nc; ++k) {
    T m = x0[k];
    MaskInt<T> w = 0;
    take_max_masked(x1[k], MaskInt<T>(1), m, w);
    best[k] = m;
    won[k] = w;
  }
}

template <class T>
void add_run(const T* __restrict a, int64_t nc, T* __restrict acc) {
  for (int64_t k = 0; k < nc; ++k) acc[k] += a[k];
}

// Channels [c0, c0 + C) of one output pixel, C a compile-time count (pixel stride c): the running
// maximum and the winning tap stay in registers across the taps, with no call per run.
template <int64_t C, class T>
void max_pixel_run(const T* xn, int64_t c, const int64_t* cells, int64_t nt, T* __restrict yp,
                   int64_t* __restrict ip) {
  T best[C];
  MaskInt<T> won[C];
  const T* first = xn + cells[0] * c;
  for (int64_t k = 0; k < C; ++k) best[k] = first[k], won[k] = 0;
  for (int64_t t = 1; t < nt; ++t) {
    const T* __restrict xt = xn + cells[t] * c;
    for (int64_t k = 0; k < C; ++k) take_max_masked(xt[k], MaskInt<T>(t), best[k], won[k]);
  }
  for (int64_t k = 0; k < C; ++k) yp[k] = best[k], ip[k] = cells[won[k]];
}

template <class T>
T divisor(const Conv2dGeometry& g, bool count_include_pad, int64_t cells) {
  return T(count_include_pad ? g.kh * g.kw : cells);
}

}  // namespace

// f(item, cells) for items [0, n) split over the threads as parallel_for does, each thread with
// one buffer of `taps` window cells kept across its items (no allocation per item).
template <class F>
void for_items_with_cells(int64_t n, int64_t work_per_item, int64_t taps, F&& f) {
  parallel(threads_for_work(n, work_per_item), [&](int64_t tid, int64_t nthr) {
    int64_t begin, end;
    balance(n, nthr, tid, begin, end);
    std::vector<int64_t> cells(static_cast<size_t>(taps));
    for (int64_t i = begin; i < end; ++i) f(i, cells.data());
  });
}

template <class T>
void max_pool2d_forward_nhwc(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx) {
  const int64_t c = g.ic, oh = g.oh(), ow = g.ow(), taps = g.kh * g.kw;
  const int64_t in_image = g.ih * g.iw * c;
  // Tap t = (r, s), scanned row by row, is at r * dh * iw + s * dw from its window's corner.
  std::vector<int64_t> tap_offset(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) tap_offset[t] = (t / g.kw) * g.dh * g.iw + (t % g.kw) * g.dw;
  for_items_with_cells(g.mb * oh, work_mul(ow * taps, c), taps, [&](int64_t row, int64_t* cells) {
    const int64_t n = row / oh, i = row % oh;
    alignas(64) MaskInt<T> won[kChunk];
    const T* xn = x + n * in_image;
    const int64_t h0 = i * g.sh - g.pt;
    const bool rows_inside = h0 >= 0 && h0 + (g.kh - 1) * g.dh < g.ih;
    for (int64_t j = 0; j < ow; ++j) {
      T* yp = y + (row * ow + j) * c;
      int64_t* ip = idx + (row * ow + j) * c;
      const int64_t w0 = j * g.sw - g.pl;
      int64_t nt = taps;
      if (rows_inside && w0 >= 0 && w0 + (g.kw - 1) * g.dw < g.iw) {  // inside: no checks
        for (int64_t t = 0; t < taps; ++t) cells[t] = h0 * g.iw + w0 + tap_offset[t];
      } else {
        nt = window_cells(g, i, j, cells);
      }
      if (nt == 0) {  // padding only (possible with dilation)
        std::fill(yp, yp + c, -T(INFINITY));
        std::fill(ip, ip + c, int64_t{-1});
        continue;
      }
      if (c == 16) {  // (with 32 or more the registers spill: 3x slower, measured)
        max_pixel_run<16>(xn, c, cells, nt, yp, ip);
        continue;
      }
      for (int64_t c0 = 0; c0 < c; c0 += kChunk) {
        const int64_t nc = std::min(kChunk, c - c0);
        const T* first = xn + cells[0] * c + c0;
        if (nt == 1) {
          std::copy(first, first + nc, yp + c0);
          std::fill(won, won + nc, MaskInt<T>(0));
        } else {  // taps 0 and 1 in one pass: no copy, no fill
          take_max_pair(first, xn + cells[1] * c + c0, nc, yp + c0, won);
        }
        for (int64_t t = 2; t < nt; ++t)
          take_max_run(xn + cells[t] * c + c0, nc, MaskInt<T>(t), yp + c0, won);
        for (int64_t k = 0; k < nc; ++k) ip[c0 + k] = cells[won[k]];
      }
    }
  });
}

// dx[ip[q]][q] += dy[q] over `pixels` output pixels of nc channels (pixel stride c), skipping the
// -1 of padding-only windows. C > 0: c == nc == C, known at compile time.
template <int64_t C, class T>
void scatter_pixels(const int64_t* __restrict ip, const T* __restrict dyp, int64_t pixels,
                    int64_t c_runtime, int64_t nc_runtime, T* __restrict dx) {
  const int64_t c = C > 0 ? C : c_runtime, nc = C > 0 ? C : nc_runtime;
  for (int64_t p = 0; p < pixels; ++p, ip += c, dyp += c)
    for (int64_t q = 0; q < nc; ++q)
      if (ip[q] >= 0) dx[ip[q] * c + q] += dyp[q];
}

template <class T>
void max_pool2d_backward_nhwc(const Conv2dGeometry& g, const int64_t* idx, const T* dy, T* dx) {
  const int64_t c = g.ic, in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  const int64_t blocks = (c + kScatterBlock - 1) / kScatterBlock;
  parallel_for(g.mb * blocks, (in_plane + out_plane) * std::min(c, kScatterBlock), [&](int64_t item) {
    const int64_t n = item / blocks, c0 = (item % blocks) * kScatterBlock;
    const int64_t nc = std::min(kScatterBlock, c - c0);
    T* dxn = dx + n * in_plane * c + c0;
    if (nc == c)  // every channel: one contiguous image
      std::fill(dxn, dxn + in_plane * c, T(0));
    else
      for (int64_t k = 0; k < in_plane; ++k) std::fill(dxn + k * c, dxn + k * c + nc, T(0));
    const int64_t* in = idx + n * out_plane * c + c0;
    const T* dyn = dy + n * out_plane * c + c0;
    switch (nc == c ? c : 0) {  // the common channel counts with the pixel stride known
      case 16: return scatter_pixels<16>(in, dyn, out_plane, c, nc, dxn);
      case 32: return scatter_pixels<32>(in, dyn, out_plane, c, nc, dxn);
      case 64: return scatter_pixels<64>(in, dyn, out_plane, c, nc, dxn);
      case 128: return scatter_pixels<128>(in, dyn, out_plane, c, nc, dxn);
      case 256: return scatter_pixels<256>(in, dyn, out_plane, c, nc, dxn);
      default: return scatter_pixels<0>(in, dyn, out_plane, c, nc, dxn);
    }
  });
}

template <class T>
void avg_pool2d_forward_nhwc(const Conv2dGeometry& g, bool count_include_pad, const T* x, T* y) {
  const int64_t c = g.ic, oh = g.oh(), ow = g.ow(), taps = g.kh * g.kw;
  const int64_t in_image = g.ih * g.iw * c;
  for_items_with_cells(g.mb * oh, work_mul(ow * taps, c), taps, [&](int64_t row, int64_t* cells) {
    const int64_t n = row / oh, i = row % oh;
    const T* xn = x + n * in_image;
    for (int64_t j = 0; j < ow; ++j) {
      T* yp = y + (row * ow + j) * c;
      const int64_t nt = window_cells(g, i, j, cells);
      assert(nt > 0);  // padding is at most half the window and dilation 1
      const T d = divisor<T>(g, count_include_pad, nt);
      const T* first = xn + cells[0] * c;
      std::copy(first, first + c, yp);
      for (int64_t t = 1; t < nt; ++t) add_run(xn + cells[t] * c, c, yp);
      for (int64_t k = 0; k < c; ++k) yp[k] /= d;
    }
  });
}

template <class T>
void avg_pool2d_backward_nhwc(const Conv2dGeometry& g, bool count_include_pad, const T* dy,
                              T* dx) {
  const int64_t c = g.ic, oh = g.oh(), ow = g.ow(), taps = g.kh * g.kw;
  const int64_t in_plane = g.ih * g.iw, out_plane = oh * ow;
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  for_items_with_cells(g.mb * blocks, (in_plane + out_plane * taps) * std::min(c, kChannelBlock), taps,
                       [&](int64_t item, int64_t* cells) {
    const int64_t n = item / blocks, c0 = (item % blocks) * kChannelBlock;
    const int64_t nc = std::min(kChannelBlock, c - c0);
    alignas(64) T share[kChannelBlock];
    T* dxn = dx + n * in_plane * c + c0;
    for (int64_t k = 0; k < in_plane; ++k) std::fill(dxn + k * c, dxn + k * c + nc, T(0));
    for (int64_t p = 0; p < out_plane; ++p) {
      const int64_t nt = window_cells(g, p / ow, p % ow, cells);
      const T d = divisor<T>(g, count_include_pad, nt);
      const T* dyp = dy + (n * out_plane + p) * c + c0;
      for (int64_t q = 0; q < nc; ++q) share[q] = dyp[q] / d;
      for (int64_t t = 0; t < nt; ++t) add_run(share, nc, dxn + cells[t] * c);
    }
  });
}

#define CONVCORE_INSTANTIATE(T)                                                                  \
  template void max_pool2d_forward_nhwc<T>(const Conv2dGeometry&, const T*, T*, int64_t*);     \
  template void max_pool2d_backward_nhwc<T>(const Conv2dGeometry&, const int64_t*, const T*,   \
                                            T*);                                                \
  template void avg_pool2d_forward_nhwc<T>(const Conv2dGeometry&, bool, const T*, T*);          \
  template void avg_pool2d_backward_nhwc<T>(const Conv2dGeometry&, bool, const T*, T*);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::detail
