// Depthwise convolution on NHWC activations (one input channel per group, channel multiplier
// m = oc / ic): direct loops whose innermost loop runs along the contiguous channels, so they
// vectorise for any stride. With wt[(r*kw + s)*oc + o] = w[o][0][r][s] (reordered once per call)
// and input channel c = o / m:
//
//   forward          y[n][i][j][o]  = b[o] + sum_{r,s} x[n][i*sh + r*dh - pt][j*sw + s*dw - pl][c] * wt[r][s][o]
//   backward_input   dx[n][y][x][c] += dy[n][i][j][o] * wt[r][s][o], scattered per image
//   backward_weight  dw[o][r][s]    += dy[n][i][j][o] * x[n][...][c], per fixed chunk of images
//
// Every sum runs in an order fixed by the geometry: the same bits for any thread count.
#include <algorithm>
#include <vector>

#include "depthwise/direct_loops.hpp"
#include "memory/scratch.hpp"
#include "ops/conv2d_nhwc.hpp"

namespace convcore::detail {
namespace {

template <class T>
void reorder_taps(const Conv2dGeometry& g, const T* w, T* wt) {
  const int64_t khw = g.kh * g.kw;
  for (int64_t o = 0; o < g.oc; ++o)
    for (int64_t t = 0; t < khw; ++t) wt[t * g.oc + o] = w[o * khw + t];
}

// acc[o] += a[o / m] * b[o] over oc channels; m == 1 is the vectorised common case.
template <class T>
inline void mul_add(int64_t oc, int64_t m, const T* a, const T* b, T* acc) {
  if (m == 1) {
    for (int64_t o = 0; o < oc; ++o) acc[o] += a[o] * b[o];
  } else {
    for (int64_t o = 0; o < oc; ++o) acc[o] += a[o / m] * b[o];
  }
}

// f(t, iy, ix) for each tap t = r*kw + s of output pixel (i, j) that lands inside the image, at
// input row iy and column ix, in tap order.
template <class F>
void for_each_inside_tap(const Conv2dGeometry& g, int64_t i, int64_t j, F&& f) {
  for (int64_t r = 0; r < g.kh; ++r) {
    const int64_t iy = i * g.sh + r * g.dh - g.pt;
    if (static_cast<uint64_t>(iy) >= static_cast<uint64_t>(g.ih)) continue;
    for (int64_t s = 0; s < g.kw; ++s) {
      const int64_t ix = j * g.sw + s * g.dw - g.pl;
      if (static_cast<uint64_t>(ix) < static_cast<uint64_t>(g.iw)) f(r * g.kw + s, iy, ix);
    }
  }
}

// Multiplier 1: sum[(r*kw + s)*oc + o] += the products of output row i of one image (xn, dyrow),
// through the row's nhwc_tap_sums: the pixels whose taps all lie inside the image as one run
// (a register-blocked sum), the border pixels one at a time with their valid taps, in column order.
template <class T>
void weight_row_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* xn,
                     const T* dyrow, int64_t i, T* sum) {
  const int64_t ow = g.ow(), oc = g.oc, khw = g.kh * g.kw;
  std::vector<int64_t> off(static_cast<size_t>(khw));
  std::vector<T*> sums(static_cast<size_t>(khw));
  const auto col = [&](int64_t j, int64_t s) { return j * g.sw + s * g.dw - g.pl; };
  const auto inside = [&](int64_t ix) { return static_cast<uint64_t>(ix) < static_cast<uint64_t>(g.iw); };
  int64_t jl = 0;
  while (jl < ow && !(inside(col(jl, 0)) && inside(col(jl, g.kw - 1)))) ++jl;
  int64_t jr = jl;
  while (jr < ow && inside(col(jr, 0)) && inside(col(jr, g.kw - 1))) ++jr;
  // Taps of pixels [j, j + pixels): every valid row r, the columns s valid at j (all in a run).
  const auto run = [&](int64_t j, int64_t pixels) {
    int64_t n = 0;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t iy = i * g.sh + r * g.dh - g.pt;
      if (static_cast<uint64_t>(iy) >= static_cast<uint64_t>(g.ih)) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        if (!inside(col(j, s))) continue;
        off[size_t(n)] = (iy * g.iw + col(j, s)) * g.ic;
        sums[size_t(n++)] = sum + (r * g.kw + s) * oc;
      }
    }
    kern.loops->nhwc_tap_sums(n, pixels, oc, dyrow + j * oc, oc, xn, g.sw * g.ic, off.data(),
                                  sums.data());
  };
  for (int64_t j = 0; j < jl; ++j) run(j, 1);
  if (jr > jl) run(jl, jr - jl);
  for (int64_t j = std::max(jr, jl); j < ow; ++j) run(j, 1);
}

}  // namespace

template <class T>
void depthwise_forward_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* x,
                            const T* w, const T* bias, T* y, Activation act) {
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, m = g.ocg(), khw = g.kh * g.kw;
  Scratch taps(1, khw * oc * int64_t(sizeof(T)));
  T* wt = taps.get<T>(0);
  reorder_taps(g, w, wt);
  const std::vector<T> zeros(static_cast<size_t>(bias ? 0 : oc), T(0));
  const T* init = bias ? bias : zeros.data();  // nhwc_taps starts every pixel from init
  // Multiplier 1: the ISA's loop over the pixel's taps, channels kept in registers; the pixels
  // [jl, jr) whose taps all lie inside the row's columns as one run.
  const auto inside = [&](int64_t j) {
    const int64_t first = j * g.sw - g.pl, last = first + (g.kw - 1) * g.dw;
    return first >= 0 && last < g.iw;
  };
  int64_t jl = 0;
  while (m == 1 && jl < ow && !inside(jl)) ++jl;
  int64_t jr = jl;
  while (m == 1 && jr < ow && inside(jr)) ++jr;
  const int64_t nrows = g.mb * oh;
  parallel(threads_for_work(nrows, ow * oc * khw), [&](int64_t tid, int64_t nt) {
    int64_t row0, row1;  // the rows parallel_for would give this thread
    balance(nrows, nt, tid, row0, row1);
    std::vector<const T*> xs(size_t(m == 1 ? khw : 0)), ws(xs.size());
    std::vector<int64_t> off(xs.size());
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t n = row / oh, i = row % oh;
      const T* xn = x + n * g.ih * g.iw * g.ic;
      T* yrow = y + row * ow * oc;
      for (int64_t j = 0; m == 1 && j < ow; ++j) {
        if (j == jl && jr > jl) {
          int64_t taps = 0;
          for_each_inside_tap(g, i, j, [&](int64_t t, int64_t iy, int64_t ix) {
            off[size_t(taps)] = (iy * g.iw + ix) * g.ic;
            ws[size_t(taps++)] = wt + t * oc;
          });
          kern.loops->nhwc_taps_run(taps, jr - jl, oc, xn, g.sw * g.ic, off.data(), ws.data(),
                                        init, yrow + j * oc);
          j = jr - 1;
          continue;
        }
        int64_t taps = 0;
        for_each_inside_tap(g, i, j, [&](int64_t t, int64_t iy, int64_t ix) {
          xs[size_t(taps)] = xn + (iy * g.iw + ix) * g.ic;
          ws[size_t(taps++)] = wt + t * oc;
        });
        kern.loops->nhwc_taps(taps, oc, xs.data(), ws.data(), init, yrow + j * oc);
      }
      for (int64_t j = 0; m != 1 && j < ow; ++j) {
        T* acc = yrow + j * oc;
        if (bias)
          std::copy(bias, bias + oc, acc);
        else
          std::fill(acc, acc + oc, T(0));
        for_each_inside_tap(g, i, j, [&](int64_t t, int64_t iy, int64_t ix) {
          mul_add(oc, m, xn + (iy * g.iw + ix) * g.ic, wt + t * oc, acc);
        });
      }
      if (act == Activation::sigmoid || act == Activation::tanh) {
        kern.activate(act, yrow, ow * oc);
      } else if (act == Activation::relu) {
        for (int64_t t = 0; t < ow * oc; ++t) yrow[t] = activate(Activation::relu, yrow[t]);
      }
    }
  });
}

template <class T>
void depthwise_backward_input_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                   const T* dy, T* dx) {
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, m = g.ocg(), khw = g.kh * g.kw;
  const int64_t img = g.ih * g.iw * g.ic;
  Scratch taps(1, khw * oc * int64_t(sizeof(T)));
  T* wt = taps.get<T>(0);
  reorder_taps(g, w, wt);
  if (m == 1) {  // gathered per input pixel: dx[y][x][c] = sum over the taps reaching it
    // The output index a tap reaches from input coordinate p (-1 when none): (p + pad - tap*d) / s.
    const auto reach = [](int64_t p, int64_t pad, int64_t tap, int64_t d, int64_t s, int64_t o) {
      const int64_t t = p + pad - tap * d;
      return t >= 0 && t % s == 0 && t / s < o ? t / s : int64_t{-1};
    };
    const std::vector<T> zeros(static_cast<size_t>(oc), T(0));  // dx starts from zero
    std::vector<int64_t> cols(static_cast<size_t>(g.iw * g.kw));  // [ix][s]: the column reached
    for (int64_t ix = 0; ix < g.iw; ++ix)
      for (int64_t s = 0; s < g.kw; ++s)
        cols[static_cast<size_t>(ix * g.kw + s)] = reach(ix, g.pl, s, g.dw, g.sw, ow);
    // Stride 1 across: the input pixels every column tap reaches form a run whose dy pixels
    // advance one by one, summed as one run (the same taps in the same order).
    const auto all_cols = [&](int64_t ix) {
      for (int64_t s = 0; s < g.kw; ++s)
        if (cols[static_cast<size_t>(ix * g.kw + s)] < 0) return false;
      return true;
    };
    int64_t xl = 0, xr = 0;
    if (g.sw == 1) {
      while (xl < g.iw && !all_cols(xl)) ++xl;
      xr = xl;
      while (xr < g.iw && all_cols(xr)) ++xr;
    }
    const int64_t nrows = g.mb * g.ih;
    parallel(threads_for_work(nrows, g.iw * oc * khw), [&](int64_t tid, int64_t nt) {
      int64_t row0, row1;  // the rows parallel_for would give this thread
      balance(nrows, nt, tid, row0, row1);
      std::vector<const T*> dys(static_cast<size_t>(khw)), ws(dys.size());
      std::vector<int64_t> rows(static_cast<size_t>(g.kh));  // the output row each r reaches
      std::vector<int64_t> off(static_cast<size_t>(khw));
      for (int64_t row = row0; row < row1; ++row) {
        const int64_t n = row / g.ih, iy = row % g.ih;
        for (int64_t r = 0; r < g.kh; ++r)
          rows[static_cast<size_t>(r)] = reach(iy, g.pt, r, g.dh, g.sh, oh);
        // f(tap, i, j) for each tap reaching input pixel (iy, ix), from dy pixel (i, j), in order.
        const auto for_each_reaching_tap = [&](int64_t ix, auto&& f) {
          for (int64_t r = 0; r < g.kh; ++r) {
            const int64_t i = rows[static_cast<size_t>(r)];
            if (i < 0) continue;
            for (int64_t s = 0; s < g.kw; ++s) {
              const int64_t j = cols[static_cast<size_t>(ix * g.kw + s)];
              if (j >= 0) f(r * g.kw + s, i, j);
            }
          }
        };
        if (xr > xl) {
          const T* base = dy + (n * oh * ow + xl) * oc;  // dy pixel (row 0, column xl) of image n
          int64_t cnt = 0;
          for_each_reaching_tap(xl, [&](int64_t t, int64_t i, int64_t j) {
            off[static_cast<size_t>(cnt)] = (i * ow + j - xl) * oc;
            ws[static_cast<size_t>(cnt++)] = wt + t * oc;
          });
          kern.loops->nhwc_taps_run(cnt, xr - xl, oc, base, oc, off.data(), ws.data(),
                                        zeros.data(), dx + (row * g.iw + xl) * g.ic);
        }
        for (int64_t ix = 0; ix < g.iw; ++ix) {
          if (ix == xl && xr > xl) {
            ix = xr - 1;
            continue;
          }
          int64_t cnt = 0;
          for_each_reaching_tap(ix, [&](int64_t t, int64_t i, int64_t j) {
            dys[static_cast<size_t>(cnt)] = dy + ((n * oh + i) * ow + j) * oc;
            ws[static_cast<size_t>(cnt++)] = wt + t * oc;
          });
          kern.loops->nhwc_taps(cnt, oc, dys.data(), ws.data(), zeros.data(),
                                    dx + (row * g.iw + ix) * g.ic);
        }
      }
    });
    return;
  }
  parallel_for(g.mb, oh * ow * oc * khw, [&](int64_t n) {
    T* dxn = dx + n * img;
    std::fill(dxn, dxn + img, T(0));
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const T* d = dy + ((n * oh + i) * ow + j) * oc;
        for_each_inside_tap(g, i, j, [&](int64_t t, int64_t iy, int64_t ix) {
          T* out = dxn + (iy * g.iw + ix) * g.ic;
          const T* k = wt + t * oc;
          if (m == 1) {
            for (int64_t c = 0; c < oc; ++c) out[c] += d[c] * k[c];
          } else {
            for (int64_t o = 0; o < oc; ++o) out[o / m] += d[o] * k[o];
          }
        });
      }
  });
}

template <class T>
void depthwise_backward_weight_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g,
                                    int64_t chunks, const T* x, const T* dy, T* dw,
                                    bool accumulate) {
  const int64_t oh = g.oh(), ow = g.ow(), oc = g.oc, m = g.ocg(), khw = g.kh * g.kw;
  const int64_t img = g.ih * g.iw * g.ic;
  Scratch partial(chunks, khw * oc * int64_t(sizeof(T)));  // [kh*kw][oc] per chunk
  parallel_for(chunks, g.mb / chunks * oh * ow * oc * khw, [&](int64_t c) {
    T* sum = partial.get<T>(c);
    std::fill(sum, sum + khw * oc, T(0));
    int64_t begin, end;
    balance(g.mb, chunks, c, begin, end);
    if (m == 1) {
      for (int64_t n = begin; n < end; ++n)
        for (int64_t i = 0; i < oh; ++i) weight_row_nhwc(kern, g, x + n * img, dy + (n * oh + i) * ow * oc, i, sum);
      return;
    }
    for (int64_t n = begin; n < end; ++n)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const T* d = dy + ((n * oh + i) * ow + j) * oc;
          for_each_inside_tap(g, i, j, [&](int64_t t, int64_t iy, int64_t ix) {
            mul_add(oc, m, x + n * img + (iy * g.iw + ix) * g.ic, d, sum + t * oc);
          });
        }
  });
  // dw[o][t] = (accumulate ? dw : 0) + the chunks' sums in order.
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t t = 0; t < khw; ++t) {
      T s = accumulate ? dw[o * khw + t] : T(0);
      for (int64_t c = 0; c < chunks; ++c) s += partial.get<T>(c)[t * oc + o];
      dw[o * khw + t] = s;
    }
}

#define CONVCORE_INSTANTIATE(T)                                                                   \
  template void depthwise_forward_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&, const T*, \
                                          const T*, const T*, T*, Activation);                    \
  template void depthwise_backward_input_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&,     \
                                                 const T*, const T*, T*);                          \
  template void depthwise_backward_weight_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&,   \
                                                  int64_t, const T*, const T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::detail
