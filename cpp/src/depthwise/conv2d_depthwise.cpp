#include "depthwise/conv2d_depthwise.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "ops/exec.hpp"
#include "depthwise/direct_loops.hpp"
#include "igemm/padded_image.hpp"
#include "igemm/taps.hpp"
#include "memory/scratch.hpp"

namespace convcore::detail {
namespace {

// y[j] += a * x[j*s] for j < len. The unit-stride loop is the one that matters; it vectorises.
template <class T>
inline void axpy(int64_t len, T a, const T* __restrict x, int64_t s, T* __restrict y) {
  if (s == 1) {
    for (int64_t j = 0; j < len; ++j) y[j] += a * x[j];
  } else {
    for (int64_t j = 0; j < len; ++j) y[j] += a * x[j * s];
  }
}

// y[j*s] += a * x[j] for j < len: the transposed (scatter) form of axpy.
template <class T>
inline void axpy_scatter(int64_t len, T a, const T* __restrict x, int64_t s, T* __restrict y) {
  if (s == 1) {
    for (int64_t j = 0; j < len; ++j) y[j] += a * x[j];
  } else {
    for (int64_t j = 0; j < len; ++j) y[j * s] += a * x[j];
  }
}

// Partial sums of a dot product, kept in kLanes independent lanes so that the loop vectorises
// without reassociating (lane k sums the products j = k mod kLanes, in order of j).
constexpr int64_t kLanes = 8;

// lanes[k] += sum_{j < len, j = k mod kLanes} a[j] * b[j*s]
template <class T>
inline void dot_lanes(int64_t len, const T* __restrict a, const T* __restrict b, int64_t s,
                      T* __restrict lanes) {
  T l[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) l[k] = lanes[k];
  int64_t j = 0;
  if (s == 1) {
    for (; j + kLanes <= len; j += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) l[k] += a[j + k] * b[j + k];
  } else {
    for (; j + kLanes <= len; j += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) l[k] += a[j + k] * b[(j + k) * s];
  }
  for (int64_t k = 0; j < len; ++j, ++k) l[k] += a[j] * b[j * s];
  for (int64_t k = 0; k < kLanes; ++k) lanes[k] = l[k];
}

// One output plane: y[i][j] = f(b + sum_{r,q} w[r][q] * x[i*sh + r*dh - pt][j*sw + q*dw - pl]).
// x is the plane's input channel, w its kh x kw filter.
template <class T>
void forward_plane(const Conv2dGeometry& g, const T* x, const T* w, T b, T* y, Activation act) {
  const int64_t oh = g.oh(), ow = g.ow();
  for (int64_t i = 0; i < oh; ++i) {
    T* yr = y + i * ow;
    for (int64_t j = 0; j < ow; ++j) yr[j] = b;
    const Range rr = valid_range(i * g.sh - g.pt, g.dh, g.ih, g.kh);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
      const T* xr = x + (i * g.sh + r * g.dh - g.pt) * g.iw;
      for (int64_t q = 0; q < g.kw; ++q) {
        const int64_t c = q * g.dw - g.pl;
        const Range cr = valid_range(c, g.sw, g.iw, ow);
        if (cr.end == cr.begin) continue;  // (and no address is formed for an empty range)
        axpy(cr.end - cr.begin, w[r * g.kw + q], xr + cr.begin * g.sw + c, g.sw, yr + cr.begin);
      }
    }
    with_activation(act, [&](auto a) {
      for (int64_t j = 0; j < ow; ++j) yr[j] = activate(a, yr[j]);
    });
  }
}

// Adds one output plane's contribution to its input plane's gradient (scatter form):
// dx[i*sh + r*dh - pt][j*sw + q*dw - pl] += w[r][q] * dy[i][j].
template <class T>
void backward_input_plane(const Conv2dGeometry& g, const T* w, const T* dy, T* dx) {
  const int64_t oh = g.oh(), ow = g.ow();
  for (int64_t i = 0; i < oh; ++i) {
    const T* dyr = dy + i * ow;
    const Range rr = valid_range(i * g.sh - g.pt, g.dh, g.ih, g.kh);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
      T* dxr = dx + (i * g.sh + r * g.dh - g.pt) * g.iw;
      for (int64_t q = 0; q < g.kw; ++q) {
        const int64_t c = q * g.dw - g.pl;
        const Range cr = valid_range(c, g.sw, g.iw, ow);
        if (cr.end == cr.begin) continue;
        axpy_scatter(cr.end - cr.begin, w[r * g.kw + q], dyr + cr.begin,
                     g.sw, dxr + cr.begin * g.sw + c);
      }
    }
  }
}

// One output channel's filter gradient, summed over the images:
//   dw[r][q] = sum_{n,i,j} dy[n][i][j] * x[n][i*sh + r*dh - pt][j*sw + q*dw - pl]
// Per tap, one dot product over the valid rows and columns of every image, in a fixed order.
template <class T>
void backward_weight_channel(const Conv2dGeometry& g, const T* x, int64_t x_image_stride,
                             const T* dy, int64_t dy_image_stride, T* dw, bool accumulate) {
  const int64_t oh = g.oh(), ow = g.ow();
  for (int64_t r = 0; r < g.kh; ++r) {
    const Range ir = valid_range(r * g.dh - g.pt, g.sh, g.ih, oh);
    for (int64_t q = 0; q < g.kw; ++q) {
      const int64_t c = q * g.dw - g.pl;
      const Range jr = valid_range(c, g.sw, g.iw, ow);
      T lanes[kLanes] = {};
      for (int64_t n = 0; n < g.mb && jr.end > jr.begin; ++n) {
        const T* xn = x + n * x_image_stride;
        const T* dyn = dy + n * dy_image_stride;
        for (int64_t i = ir.begin; i < ir.end; ++i)
          dot_lanes(jr.end - jr.begin, dyn + i * ow + jr.begin,
                    xn + (i * g.sh + r * g.dh - g.pt) * g.iw + jr.begin * g.sw + c, g.sw, lanes);
      }
      T total = T(0);
      for (int64_t k = 0; k < kLanes; ++k) total += lanes[k];
      T& out = dw[r * g.kw + q];
      out = accumulate ? out + total : total;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Stride 1: a plane is copied once into a zero-padded buffer xp[hp][wp], after which every tap
// reads a contiguous run of it, and output pixel (i, j) lives at flat index p = i*wp + j:
//   out[p] = sum_{r,q} w[r][q] * xp[p + r*dh*wp + q*dw],   p < len = (oh-1)*wp + ow
// (the positions with j >= ow are computed and dropped). The flat loop is long even for small
// planes, and it adds up to kMaxFused taps per pass so that the sum stays in a register.

// Taps of a stride-1 correlation over a padded plane of row length wp.
struct Taps {
  int64_t kh, kw, row_step, col_step;  // row_step = dh*wp, col_step = dw
  // Flat offset of filter tap t (row-major in kh x kw) in the padded plane.
  int64_t offset(int64_t t) const {
    const Tap tap = Tap::of(kh, kw, t);
    return tap.r * row_step + tap.s * col_step;
  }
};

// Flat distance between filter rows in a padded plane of row length wp: dh*wp, or 0 for a single
// row, where dh is unused and may be too large for the product (dh*(kh-1) < hp otherwise).
inline int64_t row_step(const Conv2dGeometry& g, int64_t wp) { return g.kh > 1 ? g.dh * wp : 0; }

// out[p] (+)= sum_{r,q} w[r][q] * xp[p + r*row_step + q*col_step] for p < len; with flip,
// w[kh-1-r][kw-1-q] instead (the rotated filter). Taps are added in row-major order.
template <class T>
void correlate_flat(const DirectLoops<T>& k, int64_t len, const T* xp, const T* w, bool flip,
                    const Taps& t, bool add, T* out) {
  const int64_t khw = t.kh * t.kw;
  int64_t off[kMaxFused];
  T a[kMaxFused];
  for (int64_t t0 = 0; t0 < khw; t0 += kMaxFused) {
    const int n = int(std::min<int64_t>(kMaxFused, khw - t0));
    for (int i = 0; i < n; ++i) {
      const int64_t tap = t0 + i;
      off[i] = t.offset(tap);
      a[i] = w[flip ? khw - 1 - tap : tap];
    }
    k.fused_pass(n, len, xp, off, a, add || t0 > 0, out);
  }
}


// A plane's rows are worked in bands of `rows` output rows, so that the padded copy a band needs
// stays near L2 size whatever the plane: a small plane is one band, a large one (a single-channel
// 8192 x 8192 image) many, which also gives the threads something to share. The band height
// depends on the geometry only (the weight gradient's sums follow it).
constexpr int64_t kBandElems = int64_t{1} << 16;
struct Bands {
  int64_t rows, count;  // output rows per band (the last may have fewer), bands per plane
};
inline Bands bands_of(int64_t out_rows, int64_t wp) {
  const int64_t rows = std::clamp<int64_t>(kBandElems / wp, 1, out_rows);
  return {rows, (out_rows + rows - 1) / rows};
}

// A band of a plane into a buffer of hp x wp, as place_plane(..., zero_rest) would, for a buffer
// that is reused band after band: the columns outside the image stay zero from the buffer's first
// zeroing (nothing writes there), so only the rows outside the image are zeroed, and only when
// the band's position differs from the previous band's (`placed_top`, updated).
template <class T>
void place_band(const T* src, int64_t h, int64_t w, int64_t top, int64_t left, int64_t hp,
                int64_t wp, T* dst, int64_t& placed_top) {
  if (top != placed_top)
    for (int64_t y = 0; y < hp; ++y)
      if (static_cast<uint64_t>(y - top) >= static_cast<uint64_t>(h))
        std::fill(dst + y * wp, dst + (y + 1) * wp, T(0));
  placed_top = top;
  place_plane(src, h, w, top, left, hp, wp, dst, false);
}

}  // namespace

const DirectLoops<float> kDirectLoopsGenericF32 = direct_loops_for<float, 16>();
const DirectLoops<double> kDirectLoopsGenericF64 = direct_loops_for<double, 16>();

// Largest padded plane (bytes, one per thread) the stride-1 forward and input-gradient loops
// copy into; a geometry whose padding or dilation is larger (say 5x4 inputs padded by 2^48 rows)
// takes the per-plane loops, which read the input in place and need no buffer.
constexpr int64_t kMaxPlaneScratch = int64_t{64} << 20;

// Whether `planes` buffers of hp x wp elements of T stay within `limit` bytes, computed without
// overflowing (hp and wp are positive, each below 2^63).
template <class T>
bool planes_fit(int64_t planes, int64_t hp, int64_t wp, int64_t limit) {
  const int64_t cap = limit / int64_t(sizeof(T)) / planes;
  return wp <= cap && hp <= cap / wp;
}

template <class T>
void depthwise_forward(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act) {
  const int64_t oh = g.oh(), ow = g.ow(), ohw = oh * ow, ihw = g.ih * g.iw, khw = g.kh * g.kw;
  const int64_t ocg = g.ocg(), planes = g.mb * g.oc;
  const int64_t wp = g.iw + g.pl + g.pr;
  // (The accumulator below is shorter than the padded band: two one-row bands bound both.)
  if (g.sh != 1 || g.sw != 1 || !planes_fit<T>(2, 1 + g.dh * (g.kh - 1), wp, kMaxPlaneScratch)) {
    parallel_for(planes, ohw * khw, [&](int64_t p) {
      const int64_t n = p / g.oc, o = p % g.oc;
      forward_plane(g, x + (n * g.ic + o / ocg) * ihw, w + o * khw, bias ? bias[o] : T(0),
                    y + p * ohw, act);
    });
    return;
  }
  // Stride 1: pad each band of an input plane once (it serves its ocg outputs), correlate flat,
  // then write the ow useful columns of every row with bias and activation. Work items are
  // (image, input channel, band, output of the group), the last fastest.
  const Bands bands = bands_of(oh, wp);
  const int64_t band_hp = bands.rows + g.dh * (g.kh - 1);
  const int64_t len = (bands.rows - 1) * wp + ow, pad_size = band_hp * wp;
  const Taps taps{g.kh, g.kw, row_step(g, wp), g.dw};
  const int64_t items = g.mb * g.ic * bands.count * ocg;
  const int64_t nthr =
      std::min<int64_t>(threads_for_work(items, bands.rows * ow * khw), get_num_threads());
  Scratch buf(nthr, (pad_size + len) * int64_t(sizeof(T)));
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* xp = buf.get<T>(tid);
    T* acc = xp + pad_size;
    std::fill(xp, xp + pad_size, T(0));
    int64_t padded = -1;  // (plane, band) now in xp
    int64_t placed_top = INT64_MIN;
    for (int64_t it = begin; it < end; ++it) {
      const int64_t og = it % ocg, band = it / ocg % bands.count, plane = it / ocg / bands.count;
      const int64_t i0 = band * bands.rows, rows = std::min(bands.rows, oh - i0);
      if (it / ocg != padded)
        place_band(x + plane * ihw, g.ih, g.iw, g.pt - i0, g.pl, band_hp, wp, xp, placed_top);
      padded = it / ocg;
      const int64_t o = plane % g.ic * ocg + og, p = plane / g.ic * g.oc + o;
      correlate_flat(kern, (rows - 1) * wp + ow, xp, w + o * khw, false, taps, false, acc);
      const T b = bias ? bias[o] : T(0);
      for (int64_t i = 0; i < rows; ++i) {
        const T* ar = acc + i * wp;
        T* yr = y + p * ohw + (i0 + i) * ow;
        with_activation(act, [&](auto a) {
          for (int64_t j = 0; j < ow; ++j) yr[j] = activate(a, ar[j] + b);
        });
      }
    }
  });
}

template <class T>
void depthwise_backward_input(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* w, const T* dy, T* dx) {
  const int64_t oh = g.oh(), ow = g.ow(), ohw = oh * ow, ihw = g.ih * g.iw, khw = g.kh * g.kw;
  const int64_t ocg = g.ocg(), planes = g.mb * g.ic;
  const int64_t eh = g.dh * (g.kh - 1), ew = g.dw * (g.kw - 1);
  const int64_t wp = g.iw + ew;
  if (g.sh != 1 || g.sw != 1 || !planes_fit<T>(2, 1 + eh, wp, kMaxPlaneScratch)) {
    // Scatter each dy row into the rows of dx it reaches (strided columns).
    parallel_for(planes, ihw + ocg * ohw * khw, [&](int64_t p) {
      const int64_t n = p / g.ic, c = p % g.ic;
      T* dxp = dx + p * ihw;
      std::fill(dxp, dxp + ihw, T(0));
      for (int64_t og = 0; og < ocg; ++og) {
        const int64_t o = c * ocg + og;
        backward_input_plane(g, w + o * khw, dy + (n * g.oc + o) * ohw, dxp);
      }
    });
    return;
  }
  // Stride 1: dx is the correlation of dy, padded by dh*(kh-1) - pt etc. (negative: cropped),
  // with the rotated filter; the ocg output channels of a group add up in order. Work items are
  // (image, channel, band of dx rows).
  const Bands bands = bands_of(g.ih, wp);
  const int64_t band_hp = bands.rows + eh;
  const int64_t len = (bands.rows - 1) * wp + g.iw, pad_size = band_hp * wp;
  const Taps taps{g.kh, g.kw, row_step(g, wp), g.dw};
  const int64_t items = planes * bands.count;
  const int64_t nthr = std::min<int64_t>(
      threads_for_work(items, ocg * bands.rows * g.iw * khw), get_num_threads());
  Scratch buf(nthr, (pad_size + len) * int64_t(sizeof(T)));
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* dyp = buf.get<T>(tid);
    T* acc = dyp + pad_size;
    std::fill(dyp, dyp + pad_size, T(0));
    int64_t placed_top = INT64_MIN;
    for (int64_t it = begin; it < end; ++it) {
      const int64_t p = it / bands.count, band = it % bands.count;
      const int64_t n = p / g.ic, c = p % g.ic;
      const int64_t y0 = band * bands.rows, rows = std::min(bands.rows, g.ih - y0);
      for (int64_t og = 0; og < ocg; ++og) {
        const int64_t o = c * ocg + og;
        place_band(dy + (n * g.oc + o) * ohw, oh, ow, eh - g.pt - y0, ew - g.pl, band_hp, wp, dyp,
                   placed_top);
        correlate_flat(kern, (rows - 1) * wp + g.iw, dyp, w + o * khw, true, taps, og > 0, acc);
      }
      for (int64_t i = 0; i < rows; ++i)
        std::copy(acc + i * wp, acc + i * wp + g.iw, dx + p * ihw + (y0 + i) * g.iw);
    }
  });
}

// Largest per-thread buffer (bytes) the stride-1 weight gradient uses; above it, the generic loop.
constexpr int64_t kMaxWeightScratch = int64_t{32} << 20;
// The weight gradient of fewer channels than this splits each channel's sum into fixed chunks so
// that there are about this many items to share among threads (the GEMM paths' chunk limit).
constexpr int64_t kChannelChunks = 8;

template <class T>
void depthwise_backward_weight(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* x, const T* dy, T* dw,
                               bool accumulate) {
  const int64_t oh = g.oh(), ow = g.ow(), ohw = oh * ow, ihw = g.ih * g.iw, khw = g.kh * g.kw;
  const int64_t ocg = g.ocg();
  const int64_t wp = g.iw + g.pl + g.pr;
  if (g.sh != 1 || g.sw != 1 || g.mb == 0 ||
      !planes_fit<T>(1, 1 + g.dh * (g.kh - 1), wp, kMaxWeightScratch)) {
    parallel_for(g.oc, work_mul(g.mb, ohw * khw), [&](int64_t o) {
      backward_weight_channel(g, x + (o / ocg) * ihw, g.ic * ihw, dy + o * ohw, g.oc * ohw,
                              dw + o * khw, accumulate);
    });
    return;
  }
  // Stride 1: per channel, each band of each input plane is padded into xp[band_hp][wp]; output
  // row i of dy then meets tap (r, q) at the contiguous run xp[(i + r*dh)*wp + q*dw + j], j < ow.
  // Up to kMaxFused taps are summed in one sweep over the (image, band) units, each into its own
  // dot_lanes partial sums (in order of n, i, j); the lanes are added at the end. A channel's
  // units are split into `chunks` fixed runs (several only where there are fewer channels than
  // kChannelChunks, e.g. one large single-channel image), whose sums are added in order. The
  // order depends on g and the kernel path only.
  const Bands bands = bands_of(oh, wp);
  const int64_t band_hp = bands.rows + g.dh * (g.kh - 1), pad_size = band_hp * wp;
  const int64_t units = g.mb * bands.count;
  const int64_t chunks = std::min(units, (kChannelChunks + g.oc - 1) / g.oc);
  const int64_t items = g.oc * chunks;
  const int L = kern.dot_lanes;
  const Taps taps{g.kh, g.kw, row_step(g, wp), g.dw};
  const int64_t nthr = std::min<int64_t>(
      threads_for_work(items, work_mul(units / chunks, bands.rows * ow * khw)), get_num_threads());
  // Per thread: xp, the band, then tap_dots' slack; dyp, a copy of a band of dy whose last row
  // ends less than a vector before dy's end (tap_dots would read past the array there: the last
  // band of the last planes), its rows padded to whole vectors (dys values).
  const int64_t dys = (ow + L - 1) / L * L, dyp_size = bands.rows * dys;
  const int64_t dy_size = g.mb * g.oc * ohw;
  Scratch buf(nthr, (pad_size + kMaxDotLanes<T> + dyp_size) * int64_t(sizeof(T)));
  Scratch sums(1, items * khw * int64_t(sizeof(T)));  // per (channel, chunk) and tap
  T* const sum = sums.get<T>(0);
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* xp = buf.get<T>(tid);
    T* dyp = xp + pad_size + kMaxDotLanes<T>;
    std::fill(xp, dyp + dyp_size, T(0));
    int64_t placed_top = INT64_MIN;
    int64_t off[kMaxFused];
    T lanes[kMaxFused][kMaxDotLanes<T>];
    for (int64_t it = begin; it < end; ++it) {
      const int64_t o = it / chunks;
      int64_t u_begin, u_end;
      balance(units, chunks, it % chunks, u_begin, u_end);
      for (int64_t t0 = 0; t0 < khw; t0 += kMaxFused) {
        const int n = int(std::min<int64_t>(kMaxFused, khw - t0));
        for (int k = 0; k < n; ++k) {
          const int64_t tap = t0 + k;
          off[k] = taps.offset(tap);
          for (int l = 0; l < L; ++l) lanes[k][l] = T(0);
        }
        for (int64_t u = u_begin; u < u_end; ++u) {
          const int64_t img = u / bands.count, i0 = u % bands.count * bands.rows;
          const int64_t rows = std::min(bands.rows, oh - i0);
          // With several tap chunks the band is copied again per chunk (kernels above 3x3).
          place_band(x + (img * g.ic + o / ocg) * ihw, g.ih, g.iw, g.pt - i0, g.pl, band_hp, wp, xp,
                     placed_top);
          const int64_t at = (img * g.oc + o) * ohw + i0 * ow;  // the band's first dy value
          const T* dyb = dy + at;
          if (at + rows * ow + L <= dy_size) {
            kern.tap_dots(n, rows, ow, dyb, ow, xp, wp, off, lanes);
          } else {
            for (int64_t i = 0; i < rows; ++i)
              std::copy(dyb + i * ow, dyb + (i + 1) * ow, dyp + i * dys);
            kern.tap_dots(n, rows, ow, dyp, dys, xp, wp, off, lanes);
          }
        }
        for (int k = 0; k < n; ++k) {
          T total = T(0);
          for (int l = 0; l < L; ++l) total += lanes[k][l];
          sum[it * khw + t0 + k] = total;
        }
      }
    }
  });
  parallel_for(g.oc, chunks * khw, [&](int64_t o) {
    for (int64_t t = 0; t < khw; ++t) {
      T total = sum[o * chunks * khw + t];
      for (int64_t c = 1; c < chunks; ++c) total += sum[(o * chunks + c) * khw + t];
      T& out = dw[o * khw + t];
      out = accumulate ? out + total : total;
    }
  });
}

#define CONVCORE_INSTANTIATE(T)                                                                   \
  template void depthwise_forward<T>(const DirectLoops<T>&, const Conv2dGeometry&, const T*,      \
                                     const T*, const T*, T*, Activation);                         \
  template void depthwise_backward_input<T>(const DirectLoops<T>&, const Conv2dGeometry&,         \
                                            const T*, const T*, T*);                              \
  template void depthwise_backward_weight<T>(const DirectLoops<T>&, const Conv2dGeometry&,        \
                                             const T*, const T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::detail
