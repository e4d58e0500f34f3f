#pragma once
// The epilogues that write a product back while each finished block is in cache: the activation
// of the write (with_write_activation, shared with the forward's BiasActivation), and the one for a
// product computed transposed (the forward's Y^T, pixels x channels, into y with bias and
// activation; the weight gradient's dW^T into dw).
#include <algorithm>
#include <cstdint>

#include "convcore/activation.hpp"
#include "gemm/sse_transpose.hpp"
#include "gemm/ukernel.hpp"
#include "ops/exec.hpp"

namespace convcore::detail {

// The activation of an epilogue's write: apply(f, after) with f(v) the activation applied as each
// value is written (relu, identity), and after(run, n) the kernel row's activate pass over each
// run just written (sigmoid and tanh, whose vector code lives with the kernels).
template <class T, class Apply>
void with_write_activation(Activation act, const GemmKernel<T>* kern, Apply apply) {
  if (act == Activation::sigmoid || act == Activation::tanh) {
    apply([](T v) { return v; }, [kern, act](T* y, int64_t n) { kern->activate(act, y, n); });
    return;
  }
  with_activation(act, [&](auto a) {
    apply([a](T v) { return activate(a, v); }, [](T*, int64_t) {});
  });
}

// Where a write-back epilogue's values land: a product's positions hold output rows of ow
// pixels every `wide` positions (the wide - ow past each row are computed and dropped; wide == ow
// maps positions to pixels 1:1). fn(m, p, len) for each run of positions [m0, m1) within one
// output row: m its first position, p that position's pixel, len its kept positions (> 0).
template <class Fn>
void for_each_output_run(int64_t m0, int64_t m1, int64_t wide, int64_t ow, Fn fn) {
  if (wide == ow) {
    if (m1 > m0) fn(m0, m0, m1 - m0);
    return;
  }
  for (int64_t m = m0; m < m1;) {
    const int64_t i = m / wide, jj = m % wide;
    const int64_t len = std::min(m1 - m, wide - jj);  // to the end of this output row
    const int64_t valid = std::min(len, ow - jj);
    if (valid > 0) fn(m, i * ow + jj, valid);
    m += len;
  }
}

// The transposed product's epilogue: y[o][i*ow + j] = act(yt[i*wide + j][o] + bias[o]) for
// j < ow over a finished block of yt (rows [i0, i0+mc), channels [j0, j0+nc)). A row of yt is a
// pixel; rows hold output rows of ow pixels every `wide` rows (the rest discarded); wide == ow
// maps yt's rows to y's pixels 1:1.
template <class T>
struct TransposeBiasActivation {
  const T* yt;
  int64_t ocg;
  T* y;
  int64_t n;      // pixels: y is ocg x n
  int64_t wide, ow;
  const T* bias;  // ocg values, or null
  Activation act;
  const GemmKernel<T>* kern;  // its activate pass for sigmoid and tanh

  void operator()(int64_t i0, int64_t mc, int64_t j0, int64_t nc) const {
    with_write_activation(act, kern, [&](auto f, auto after) { apply(i0, mc, j0, nc, f, after); });
  }

 private:
  // dst = f(yt + bias) over the block, then after(run, length) on each contiguous run of dst:
  // the block's rows go by runs that land in one output row (the whole block where wide == ow).
  template <class F, class After>
  void apply(int64_t i0, int64_t mc, int64_t j0, int64_t nc, F f, After after) const {
    for_each_output_run(i0, i0 + mc, wide, ow, [&](int64_t m0, int64_t p0, int64_t len) {
      transpose_run(m0, p0, len, j0, nc, f);
      for (int64_t o = j0; o < j0 + nc; ++o) after(y + o * n + p0, len);
    });
  }

  // y[o][p0 + t] = f(yt[m0 + t][o] + bias[o]) for t < len, j0 <= o < j0 + nc. Square blocks of
  // pixels x channels go through registers, the bias added and relu applied there (sigmoid and
  // tanh then run along each written run, `after`): the path's own blocks (lanes on a side) where
  // it has them, then, where the baseline has SSE, 4 x 4 float (2 x 2 double) blocks over what is
  // left; the edges value by value.
  template <class F>
  void transpose_run(int64_t m0, int64_t p0, int64_t len, int64_t j0, int64_t nc, F f) const {
    const bool relu = act == Activation::relu;
    const T zeros[kMaxLanes] = {};
    // The values of the rectangle [o0, o1) x [t0, t1).
    const auto by_value = [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
      for (int64_t o = o0; o < o1; ++o) {
        const T b = bias ? bias[o] : T(0);
        for (int64_t t = t0; t < t1; ++t) y[o * n + p0 + t] = f(yt[(m0 + t) * ocg + o] + b);
      }
    };
    // The rectangle in blocks of side B through `block`, what is left of it through `rest`.
    const auto in_blocks = [&](int64_t B, auto block, auto rest, int64_t o0, int64_t o1,
                               int64_t t0, int64_t t1) {
      const int64_t ob = o0 + (o1 - o0) / B * B, tb = t0 + (t1 - t0) / B * B;
      for (int64_t o = o0; o < ob; o += B) {
        const T* add = bias ? bias + o : zeros;
        for (int64_t t = t0; t < tb; t += B)
          block(yt + (m0 + t) * ocg + o, ocg, add, relu, y + o * n + p0 + t, n);
      }
      if (ob > o0 && tb < t1) rest(o0, ob, tb, t1);
      if (ob < o1) rest(ob, o1, t0, t1);
    };
    const auto sse = [&](int64_t o0, int64_t o1, int64_t t0, int64_t t1) {
      if constexpr (kSseBlock<T> > 0) {
        const auto block = [](const T* s, int64_t ls, const T* add, bool r, T* d, int64_t ld) {
          transpose_block_sse(s, ls, add, r, d, ld);
        };
        in_blocks(kSseBlock<T>, block, by_value, o0, o1, t0, t1);
      } else {
        by_value(o0, o1, t0, t1);
      }
    };
    if (kern->transpose_block)
      in_blocks(kern->lanes, kern->transpose_block, sse, j0, j0 + nc, 0, len);
    else
      sse(j0, j0 + nc, 0, len);
  }
};

}  // namespace convcore::detail
