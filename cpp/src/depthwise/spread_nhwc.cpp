// Path nhwc_spread: NHWC, one input channel per group, stride 1 (spread_nhwc.hpp).
//
// Output channel o reads input channel o / m (m = oc / ic output channels per input channel).
// Spread every pixel of a band of the input to the oc output channels, in a zero-padded copy
//   xs[yy][xx][o] = x[yy + y0][xx + x0][o / m]   (zero outside the image),
// and along a row the convolution is one contiguous run of pixels times channels:
//   y[i][j0 + p][o] = b[o] + sum_t xs[i + r*dh][j0 + p + s*dw][o] * w[o][t],   t = r*kw + s,
// that is, with f = p*oc + o and wr[t][f] = w[o][t] (the weights repeated for the R pixels of a
// run), the depthwise loops' nhwc_taps over len = R*oc values: full vectors whatever the
// channel count (six channels: four pixels in three vectors of eight). The weight gradient is
// the same run through nhwc_tap_sums, sums[t][f] over rows and images, then
// dw[o][t] = sum_p sums[t][p*oc + o]. The input gradient is the forward's run over dy, padded by
// the dilated kernel's extent less the padding, with the filters rotated by 180 degrees; input
// channel c of a dx pixel adds its m output channels' values, z[p*oc + c*m + g] (z is dx itself
// for m == 1). Every sum runs in an order fixed by the geometry.
#include "depthwise/spread_nhwc.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "convcore/activation.hpp"
#include "convcore/parallel.hpp"
#include "depthwise/direct_loops.hpp"
#include "memory/scratch.hpp"
#include "ops/weight_chunks.hpp"

namespace convcore::detail {
namespace {

// Values of a run (a whole row where the row is shorter), and of a band's spread copy.
constexpr int64_t kRunElems = 256;
constexpr int64_t kBandElems = int64_t{1} << 16;

// The pixels of a run: about kRunElems values, at least one pixel, at most the row.
int64_t run_pixels(int64_t oc, int64_t width) {
  return std::clamp<int64_t>((kRunElems + oc - 1) / oc, 1, std::max<int64_t>(width, 1));
}

// Rows of the result per band: the band's copy, rows + halo rows of wp pixels of oc values,
// within kBandElems where one row allows it.
int64_t band_rows(int64_t out_rows, int64_t halo, int64_t wp, int64_t oc) {
  const int64_t rows = kBandElems / std::max<int64_t>(wp * oc, 1) - halo;
  return std::clamp<int64_t>(rows, 1, std::max<int64_t>(out_rows, 1));
}

// out[i*m + k] = v[i] for i < n, k < m: each value m times, as 16-byte stores of the value
// (the last of a pixel ending at its m-th value, overlapping the one before), scalar where m is
// below a store's width; m a compile-time constant up to 8, a loop beyond.
template <class T>
inline void repeat_value(T v, int64_t m, T* out) {
  constexpr int64_t C = 16 / int64_t(sizeof(T));
  if (m < C) {
    for (int64_t k = 0; k < m; ++k) out[k] = v;
    return;
  }
  T rep[C];
  for (int64_t k = 0; k < C; ++k) rep[k] = v;
  for (int64_t k = 0; k + C <= m; k += C) std::memcpy(out + k, rep, sizeof(rep));
  if (m % C != 0) std::memcpy(out + m - C, rep, sizeof(rep));
}
template <int M, class T>
void repeat_values_n(const T* v, int64_t n, T* out) {
  for (int64_t i = 0; i < n; ++i) repeat_value(v[i], M, out + i * M);
}
template <class T>
void repeat_values(int64_t m, const T* v, int64_t n, T* out) {
  switch (m) {
    case 2: return repeat_values_n<2>(v, n, out);
    case 3: return repeat_values_n<3>(v, n, out);
    case 4: return repeat_values_n<4>(v, n, out);
    case 5: return repeat_values_n<5>(v, n, out);
    case 6: return repeat_values_n<6>(v, n, out);
    case 7: return repeat_values_n<7>(v, n, out);
    case 8: return repeat_values_n<8>(v, n, out);
    default:
      for (int64_t i = 0; i < n; ++i) repeat_value(v[i], m, out + i * m);
  }
}

// xs[yy][xx][o] = src[yy + y0][xx + x0][o / m] for yy < hp, xx < wp, zero outside src's h x w
// pixels of c channels (oc = c*m values per pixel of xs).
template <class T>
void spread_band(const T* src, int64_t h, int64_t w, int64_t c, int64_t m, int64_t y0, int64_t x0,
                 int64_t hp, int64_t wp, T* xs) {
  const int64_t oc = c * m;
  const int64_t lo = std::clamp<int64_t>(-x0, 0, wp), hi = std::clamp<int64_t>(w - x0, lo, wp);
  for (int64_t yy = 0; yy < hp; ++yy) {
    T* row = xs + yy * wp * oc;
    const int64_t sy = yy + y0;
    if (sy < 0 || sy >= h) {
      std::fill(row, row + wp * oc, T(0));
      continue;
    }
    std::fill(row, row + lo * oc, T(0));
    std::fill(row + hi * oc, row + wp * oc, T(0));
    if (hi == lo) continue;
    const T* s = src + (sy * w + x0 + lo) * c;  // the row's first pixel inside the image
    if (m == 1) {
      std::copy(s, s + (hi - lo) * c, row + lo * oc);
      continue;
    }
    repeat_values(m, s, (hi - lo) * c, row + lo * oc);
  }
}

// wr[t][f] = w[f % oc][flip ? khw - 1 - t : t] for f < len (weights [oc][1][kh][kw]): a tap's
// weights repeated pixel after pixel.
template <class T>
void repeat_taps(const Conv2dGeometry& g, const T* w, int64_t len, bool flip, T* wr) {
  const int64_t khw = g.kh * g.kw, oc = g.oc;
  for (int64_t t = 0; t < khw; ++t)
    for (int64_t f = 0; f < len; ++f) wr[t * len + f] = w[f % oc * khw + (flip ? khw - 1 - t : t)];
}

// Flat offsets of the taps in a spread copy of row length wp: (r*dh*wp + s*dw)*oc.
std::vector<int64_t> tap_offsets(const Conv2dGeometry& g, int64_t wp) {
  std::vector<int64_t> off(static_cast<size_t>(g.kh * g.kw));
  for (int64_t r = 0; r < g.kh; ++r)
    for (int64_t s = 0; s < g.kw; ++s)
      off[static_cast<size_t>(r * g.kw + s)] = (r * g.dh * wp + s * g.dw) * g.oc;
  return off;
}

}  // namespace

SpreadSizes spread_sizes(const Conv2dGeometry& g, SpreadOp op, int64_t lanes) {
  const int64_t eh = g.dh * (g.kh - 1), ew = g.dw * (g.kw - 1);
  const int64_t width = op == SpreadOp::backward_input ? g.iw : g.ow();
  const int64_t out_rows = op == SpreadOp::backward_input ? g.ih : g.oh();
  SpreadSizes s;
  s.wp = width + ew;
  s.period = g.oc / std::gcd(g.oc, lanes) * lanes;
  s.run = run_pixels(g.oc, width);
  s.rows = band_rows(out_rows, eh, s.wp, g.oc);
  s.bands = (out_rows + s.rows - 1) / s.rows;
  s.band_elems = (s.rows + eh) * s.wp * g.oc;
  return s;
}

template <class T>
void spread_forward_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* x,
                         const T* w, const T* bias, T* y, Activation act) {
  const DirectLoops<T>& dk = *kern.loops;
  const SpreadSizes s = spread_sizes(g, SpreadOp::forward, dk.dot_lanes);
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, khw = g.kh * g.kw, period = s.period;
  const int64_t eh = g.dh * (g.kh - 1);
  Scratch shared(1, (khw + 1) * period * int64_t(sizeof(T)));
  T* wr = shared.get<T>(0);
  T* init = wr + khw * period;  // the bias repeated, or zeros
  repeat_taps(g, w, period, false, wr);
  for (int64_t f = 0; f < period; ++f) init[f] = bias ? bias[f % oc] : T(0);
  const std::vector<int64_t> off = tap_offsets(g, s.wp);
  const int64_t items = g.mb * s.bands;
  const int64_t nthr = std::min<int64_t>(
      threads_for_work(items, work_mul(s.rows * ow * oc, khw)), get_num_threads());
  const int64_t slack = dk.dot_lanes;  // flat_taps reads up to a vector past a run
  Scratch band(nthr, (s.band_elems + slack) * int64_t(sizeof(T)));
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* xs = band.get<T>(tid);
    std::fill(xs + s.band_elems, xs + s.band_elems + slack, T(0));
    for (int64_t it = begin; it < end; ++it) {
      const int64_t n = it / s.bands, i0 = it % s.bands * s.rows;
      const int64_t rows = std::min(s.rows, oh - i0);
      spread_band(x + n * g.ih * g.iw * g.ic, g.ih, g.iw, g.ic, g.ocg(), i0 - g.pt, -g.pl,
                  rows + eh, s.wp, xs);
      for (int64_t i = 0; i < rows; ++i) {
        T* row = y + ((n * oh + i0 + i) * ow) * oc;
        for (int64_t j0 = 0; j0 < ow; j0 += s.run)
          dk.flat_taps(khw, std::min(s.run, ow - j0) * oc, xs + (i * s.wp + j0) * oc, off.data(),
                       wr, period, init, row + j0 * oc);
        if (act == Activation::sigmoid || act == Activation::tanh) {
          kern.activate(act, row, ow * oc);
        } else if (act == Activation::relu) {
          for (int64_t t = 0; t < ow * oc; ++t) row[t] = activate(Activation::relu, row[t]);
        }
      }
    }
  });
}

template <class T>
void spread_backward_input_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                const T* dy, T* dx) {
  const DirectLoops<T>& dk = *kern.loops;
  const SpreadSizes s = spread_sizes(g, SpreadOp::backward_input, dk.dot_lanes);
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, ic = g.ic, m = g.ocg(), khw = g.kh * g.kw;
  const int64_t eh = g.dh * (g.kh - 1), ew = g.dw * (g.kw - 1), period = s.period;
  Scratch shared(1, (khw + 1) * period * int64_t(sizeof(T)));
  T* wr = shared.get<T>(0);
  T* zeros = wr + khw * period;
  repeat_taps(g, w, period, true, wr);
  std::fill(zeros, zeros + period, T(0));
  const std::vector<int64_t> off = tap_offsets(g, s.wp);
  const int64_t items = g.mb * s.bands;
  const int64_t nthr = std::min<int64_t>(
      threads_for_work(items, work_mul(s.rows * g.iw * oc, khw)), get_num_threads());
  // Per thread: the band of dy and its slack, then (m > 1) a row's values before each input
  // channel adds its m output channels.
  const int64_t slack = dk.dot_lanes, zrow = m > 1 ? g.iw * oc : 0;
  Scratch band(nthr, (s.band_elems + slack + zrow) * int64_t(sizeof(T)));
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* dys = band.get<T>(tid);
    T* z = dys + s.band_elems + slack;
    std::fill(dys + s.band_elems, z, T(0));
    for (int64_t it = begin; it < end; ++it) {
      const int64_t n = it / s.bands, y0 = it % s.bands * s.rows;
      const int64_t rows = std::min(s.rows, g.ih - y0);
      spread_band(dy + n * oh * ow * oc, oh, ow, oc, 1, y0 - (eh - g.pt), -(ew - g.pl), rows + eh,
                  s.wp, dys);
      for (int64_t i = 0; i < rows; ++i) {
        T* out = dx + (n * g.ih + y0 + i) * g.iw * ic;
        T* zr = m == 1 ? out : z;
        for (int64_t j0 = 0; j0 < g.iw; j0 += s.run)
          dk.flat_taps(khw, std::min(s.run, g.iw - j0) * oc, dys + (i * s.wp + j0) * oc,
                       off.data(), wr, period, zeros, zr + j0 * oc);
        if (m == 1) continue;
        // dx[p][c] = z[p][c*m] + ... + z[p][c*m + m - 1], in that order, pixels innermost.
        for (int64_t c = 0; c < ic; ++c) {
          for (int64_t p = 0; p < g.iw; ++p) out[p * ic + c] = z[p * oc + c * m];
          for (int64_t k = 1; k < m; ++k)
            for (int64_t p = 0; p < g.iw; ++p) out[p * ic + c] += z[p * oc + c * m + k];
        }
      }
    }
  });
}

template <class T>
void spread_backward_weight_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g,
                                 int64_t chunks, const T* x, const T* dy, T* dw, bool accumulate) {
  const SpreadSizes s = spread_sizes(g, SpreadOp::backward_weight, kern.loops->dot_lanes);
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, khw = g.kh * g.kw;
  const int64_t eh = g.dh * (g.kh - 1), run = s.run, flat = run * oc;
  const std::vector<int64_t> off = tap_offsets(g, s.wp);
  // Per chunk: the sums [khw][run*oc], then the band's spread copy.
  Scratch part(chunks, (khw * flat + s.band_elems) * int64_t(sizeof(T)));
  for_each_image_chunk(g, chunks, [&](int64_t c, int64_t begin, int64_t end, int64_t) {
    T* sum = part.get<T>(c);
    T* xs = sum + khw * flat;
    std::fill(sum, sum + khw * flat, T(0));
    std::vector<T*> sums(static_cast<size_t>(khw));
    for (int64_t t = 0; t < khw; ++t) sums[size_t(t)] = sum + t * flat;
    for (int64_t n = begin; n < end; ++n)
      for (int64_t i0 = 0; i0 < oh; i0 += s.rows) {
        const int64_t rows = std::min(s.rows, oh - i0);
        spread_band(x + n * g.ih * g.iw * g.ic, g.ih, g.iw, g.ic, g.ocg(), i0 - g.pt, -g.pl,
                    rows + eh, s.wp, xs);
        const T* dyb = dy + (n * oh + i0) * ow * oc;
        for (int64_t j0 = 0; j0 < ow; j0 += run) {
          const int64_t pixels = std::min(run, ow - j0);
          kern.loops->nhwc_tap_sums(khw, rows, pixels * oc, dyb + j0 * oc, ow * oc,
                                        xs + j0 * oc, s.wp * oc, off.data(), sums.data());
        }
      }
  });
  // dw[o][t] = (accumulate ? dw : 0) + per chunk in order, its sum over the run's pixels.
  parallel_for(oc, chunks * khw * run, [&](int64_t o) {
    for (int64_t t = 0; t < khw; ++t) {
      T total = accumulate ? dw[o * khw + t] : T(0);
      for (int64_t c = 0; c < chunks; ++c) {
        const T* v = part.get<T>(c) + t * flat + o;
        T chunk = v[0];
        for (int64_t p = 1; p < run; ++p) chunk += v[p * oc];
        total += chunk;
      }
      dw[o * khw + t] = total;
    }
  });
}

#define CONVCORE_INSTANTIATE(T)                                                                   \
  template void spread_forward_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&, const T*,    \
                                       const T*, const T*, T*, Activation);                       \
  template void spread_backward_input_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&,       \
                                              const T*, const T*, T*);                            \
  template void spread_backward_weight_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&,      \
                                               int64_t, const T*, const T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::detail
