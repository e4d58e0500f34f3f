#include "convcore/pool.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "convcore/error.hpp"
#include "convcore/parallel.hpp"
#include "pool_nhwc.hpp"
#include "pool_select.hpp"

namespace convcore {

void validate_pool(const Conv2dGeometry& g, const char* op) {
  CONVCORE_CHECK(g.oc == g.ic, op, ": a pooling window keeps the channels: oc=", g.oc,
                 " must equal ic=", g.ic);
  CONVCORE_CHECK(g.groups == g.ic, op, ": a pooling window works per channel: groups=", g.groups,
                 " must equal ic=", g.ic);
  g.validate(op);
  // PyTorch's rule: every padding at most half the dilated window, so that padding never makes up
  // a whole window on its own in the undilated case.
  const int64_t half_h = (g.dh * (g.kh - 1) + 1) / 2, half_w = (g.dw * (g.kw - 1) + 1) / 2;
  CONVCORE_CHECK(g.pt <= half_h && g.pb <= half_h && g.pl <= half_w && g.pr <= half_w, op,
                 ": padding (top, bottom, left, right) = (", g.pt, ", ", g.pb, ", ", g.pl, ", ",
                 g.pr, ") must be at most half the dilated window, ", half_h, "x", half_w);
}

namespace {

using detail::MaskInt;
using detail::take_max_masked;

// The rule of a window's maximum, one cell at a time: a cell replaces the current maximum when it
// is strictly greater (ties keep the first), or when it is the first NaN (a NaN is never replaced).
// Branch-free, with bit masks: on random data a branch on the comparison is mispredicted half the
// time, and compilers turn a plain `take ? v : best` back into one.
template <class T>
inline void take_max(T v, int64_t k, T& best, int64_t& best_idx) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const bool take = (v > best) | ((v != v) & (best == best));
  const Bits mask = Bits(0) - Bits(take);
  Bits vb, bb;
  std::memcpy(&vb, &v, sizeof(T));
  std::memcpy(&bb, &best, sizeof(T));
  bb = (vb & mask) | (bb & ~mask);
  std::memcpy(&best, &bb, sizeof(T));
  const int64_t imask = -int64_t(take);
  best_idx = (k & imask) | (best_idx & ~imask);
}

// Output cell (i, j) of one plane with every tap bounds-checked: the border, where taps fall
// into the padding.
template <class T>
void max_pool2d_cell(const Conv2dGeometry& g, const T* x, int64_t i, int64_t j, T& y,
                     int64_t& idx) {
  T best = -INFINITY;
  int64_t best_idx = -1;
  for (int64_t r = 0; r < g.kh; ++r) {
    const int64_t h = i * g.sh - g.pt + r * g.dh;
    if (static_cast<uint64_t>(h) >= static_cast<uint64_t>(g.ih)) continue;
    for (int64_t s = 0; s < g.kw; ++s) {
      const int64_t w = j * g.sw - g.pl + s * g.dw;
      if (static_cast<uint64_t>(w) >= static_cast<uint64_t>(g.iw)) continue;
      if (best_idx < 0) {
        best = x[h * g.iw + w];
        best_idx = h * g.iw + w;
      } else {
        take_max(x[h * g.iw + w], h * g.iw + w, best, best_idx);
      }
    }
  }
  y = best;
  idx = best_idx;
}

// The two taps (r, 0) and (r, 1) of 2-wide windows at stride 2 (the common 2x2 pooling): both
// loads in one loop, so that the even and odd columns are read as one interleaved group and the
// loop vectorises. t0 is the number of tap (r, 0); with first, tap (0, 0) starts the maximum.
template <class T>
void max_pool2d_tap_pair(const T* __restrict xt, int64_t nc, MaskInt<T> t0, bool first,
                         T* __restrict best, MaskInt<T>* __restrict won) {
  if (first) {
    for (int64_t j = 0; j < nc; ++j) {
      T m = xt[2 * j];
      MaskInt<T> w = 0;
      take_max_masked(xt[2 * j + 1], MaskInt<T>(1), m, w);
      best[j] = m;
      won[j] = w;
    }
    return;
  }
  for (int64_t j = 0; j < nc; ++j) {
    T m = best[j];
    MaskInt<T> w = won[j];
    take_max_masked(xt[2 * j], t0, m, w);
    take_max_masked(xt[2 * j + 1], MaskInt<T>(t0 + 1), m, w);
    best[j] = m;
    won[j] = w;
  }
}

// One tap over a chunk of cells: take_max of xt[j * sw] into best[j], recording tap t in won[j].
// Written with integer masks and restrict pointers so that the loop vectorises (strided loads
// included); SW > 0 fixes the stride at compile time.
template <int SW, class T>
void max_pool2d_tap(const T* __restrict xt, int64_t sw_runtime, int64_t nc, MaskInt<T> t,
                    T* __restrict best, MaskInt<T>* __restrict won) {
  const int64_t sw = SW > 0 ? SW : sw_runtime;
  for (int64_t j = 0; j < nc; ++j) {
    T m = best[j];
    MaskInt<T> w = won[j];
    take_max_masked(xt[j * sw], t, m, w);
    best[j] = m;
    won[j] = w;
  }
}

// Output cells [j0, j1) of row i, whose windows lie wholly inside the plane: no bounds checks.
// The loops run tap by tap over a chunk of cells (max_pool2d_tap), keeping the running maximum
// and the number of the winning tap per cell; then the tap numbers become flat indices.
template <int SW, class T>
void max_pool2d_inner(const Conv2dGeometry& g, const int64_t* tap_offset, const T* x, int64_t i,
                      int64_t j0, int64_t j1, T* y, int64_t* idx) {
  constexpr int64_t kChunk = 256;
  const int64_t sw = SW > 0 ? SW : g.sw, taps = g.kh * g.kw;
  const int64_t h0 = i * g.sh - g.pt;
  alignas(64) T best[kChunk];
  alignas(64) MaskInt<T> won[kChunk];
  for (int64_t c0 = j0; c0 < j1; c0 += kChunk) {
    const int64_t nc = std::min(kChunk, j1 - c0);
    const int64_t base = h0 * g.iw + c0 * sw - g.pl;  // tap (0, 0) of cell c0
    const T* first = x + base;
    if (SW == 2 && g.kw == 2 && g.dw == 1) {
      for (int64_t r = 0; r < g.kh; ++r)
        max_pool2d_tap_pair(first + tap_offset[2 * r], nc, MaskInt<T>(2 * r), r == 0, best, won);
    } else {
      for (int64_t j = 0; j < nc; ++j) {
        best[j] = first[j * sw];
        won[j] = 0;
      }
      for (int64_t t = 1; t < taps; ++t)
        max_pool2d_tap<SW>(first + tap_offset[t], sw, nc, MaskInt<T>(t), best, won);
    }
    for (int64_t j = 0; j < nc; ++j) {
      y[c0 + j] = best[j];
      idx[c0 + j] = base + j * sw + tap_offset[won[j]];
    }
  }
}

// One plane: y[oh][ow], idx[oh][ow] <- x[ih][iw]. Assumes a validated geometry.
template <int SW, class T>
void max_pool2d_plane(const Conv2dGeometry& g, const int64_t* tap_offset, const T* x, T* y,
                      int64_t* idx) {
  const int64_t oh = g.oh(), ow = g.ow();
  // Columns [j_lo, j_hi) have every tap inside the plane horizontally.
  const int64_t reach_w = (g.kw - 1) * g.dw;
  const int64_t j_lo = std::min(ow, (g.pl + g.sw - 1) / g.sw);
  const int64_t j_hi =
      g.iw - 1 - reach_w + g.pl < 0 ? 0 : std::min(ow, (g.iw - 1 - reach_w + g.pl) / g.sw + 1);
  for (int64_t i = 0; i < oh; ++i) {
    T* yr = y + i * ow;
    int64_t* ir = idx + i * ow;
    const int64_t h0 = i * g.sh - g.pt;
    const bool rows_inside = h0 >= 0 && h0 + (g.kh - 1) * g.dh < g.ih;
    const int64_t a = rows_inside ? j_lo : ow, b = rows_inside ? std::max(j_lo, j_hi) : ow;
    for (int64_t j = 0; j < a; ++j) max_pool2d_cell(g, x, i, j, yr[j], ir[j]);
    max_pool2d_inner<SW>(g, tap_offset, x, i, a, b, yr, ir);
    for (int64_t j = b; j < ow; ++j) max_pool2d_cell(g, x, i, j, yr[j], ir[j]);
  }
}

template <int SW, class T>
void max_pool2d_planes(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx) {
  const int64_t planes = g.mb * g.ic, in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  // Tap t = (r, s), scanned row by row, is at r * dh * iw + s * dw from its window's corner.
  std::vector<int64_t> tap_offset(static_cast<size_t>(g.kh * g.kw));
  for (int64_t t = 0; t < g.kh * g.kw; ++t)
    tap_offset[static_cast<size_t>(t)] = (t / g.kw) * g.dh * g.iw + (t % g.kw) * g.dw;
  detail::parallel_for(planes, out_plane * g.kh * g.kw + in_plane, [&](int64_t p) {
    max_pool2d_plane<SW>(g, tap_offset.data(), x + p * in_plane, y + p * out_plane,
                         idx + p * out_plane);
  });
}

}  // namespace

template <class T>
void max_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx) {
  validate_pool(g, "max_pool2d_forward");
  if (g.layout == Layout::nhwc) return detail::max_pool2d_forward_nhwc(g, x, y, idx);
  if (g.sw == 1)
    max_pool2d_planes<1>(g, x, y, idx);
  else if (g.sw == 2)
    max_pool2d_planes<2>(g, x, y, idx);
  else
    max_pool2d_planes<0>(g, x, y, idx);
}

template <class T>
void max_pool2d_backward(const Conv2dGeometry& g, const int64_t* idx, const T* dy, T* dx) {
  validate_pool(g, "max_pool2d_backward");
  const int64_t planes = g.mb * g.ic, in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  // Every index is checked before anything is written: the scatter below must stay in bounds.
  // The check runs on the threads too; only a failure scans again, serially, to name the first.
  std::atomic<bool> bad{false};
  detail::parallel_for(planes, out_plane, [&](int64_t p) {
    const int64_t* ip = idx + p * out_plane;
    bool ok = true;
    for (int64_t k = 0; k < out_plane; ++k) ok &= ip[k] >= -1 && ip[k] < in_plane;
    if (!ok) bad.store(true, std::memory_order_relaxed);
  });
  if (bad.load()) {
    const int64_t n_out = planes * out_plane;
    for (int64_t k = 0; k < n_out; ++k)
      CONVCORE_CHECK(idx[k] >= -1 && idx[k] < in_plane, "max_pool2d_backward: index ", idx[k],
                     " at position ", k, " is outside the input plane of ", in_plane,
                     " cells (expected -1 or 0..", in_plane - 1, ")");
  }
  if (g.layout == Layout::nhwc) return detail::max_pool2d_backward_nhwc(g, idx, dy, dx);
  detail::parallel_for(planes, in_plane + out_plane, [&](int64_t p) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    const int64_t* ip = idx + p * out_plane;
    std::fill(dxp, dxp + in_plane, T(0));
    for (int64_t k = 0; k < out_plane; ++k)
      if (ip[k] >= 0) dxp[ip[k]] += dyp[k];
  });
}

namespace {

void validate_avg_pool(const Conv2dGeometry& g, const char* op) {
  validate_pool(g, op);
  CONVCORE_CHECK(g.dh == 1 && g.dw == 1, op, ": average pooling has no dilation, got ", g.dh, "x",
                 g.dw);
}

// NCHW is the channels-last layout of mb*ic images of one channel each.
Conv2dGeometry as_channels_last(const Conv2dGeometry& g) {
  if (g.layout == Layout::nhwc) return g;
  Conv2dGeometry one = g;
  one.mb = g.mb * g.ic;
  one.ic = one.oc = one.groups = 1;
  one.layout = Layout::nhwc;
  return one;
}

}  // namespace

template <class T>
void avg_pool2d_forward(const Conv2dGeometry& g, bool count_include_pad, const T* x, T* y) {
  validate_avg_pool(g, "avg_pool2d_forward");
  detail::avg_pool2d_forward_nhwc(as_channels_last(g), count_include_pad, x, y);
}

template <class T>
void avg_pool2d_backward(const Conv2dGeometry& g, bool count_include_pad, const T* dy, T* dx) {
  validate_avg_pool(g, "avg_pool2d_backward");
  detail::avg_pool2d_backward_nhwc(as_channels_last(g), count_include_pad, dy, dx);
}

template void avg_pool2d_forward<float>(const Conv2dGeometry&, bool, const float*, float*);
template void avg_pool2d_forward<double>(const Conv2dGeometry&, bool, const double*, double*);
template void avg_pool2d_backward<float>(const Conv2dGeometry&, bool, const float*, float*);
template void avg_pool2d_backward<double>(const Conv2dGeometry&, bool, const double*, double*);
template void max_pool2d_forward<float>(const Conv2dGeometry&, const float*, float*, int64_t*);
template void max_pool2d_forward<double>(const Conv2dGeometry&, const double*, double*, int64_t*);
template void max_pool2d_backward<float>(const Conv2dGeometry&, const int64_t*, const float*,
                                         float*);
template void max_pool2d_backward<double>(const Conv2dGeometry&, const int64_t*, const double*,
                                          double*);

}  // namespace convcore
