#pragma once
// The epilogues that write a product back while each finished block is in cache: the activation
// of the write (with_write_activation), and WriteBack, y = act(c + bias) from the product c,
// computed as Y = W col (channels by positions: the forward's b_in_place and packed paths) or
// transposed (positions by channels: the forward's Y^T, the weight gradient's dW^T into dw).
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

// A write-back epilogue (a GEMM driver epilogue): y = act(c + bias) over a finished block of c,
// rows [i0, i0+mc) and columns [j0, j0+nc), the bias per channel (a row of y). c's positions hold
// output rows of ow pixels every `wide` positions (the wide - ow past each row are discarded;
// wide == ow maps positions to pixels 1:1).
//   Transposed == false: c is channels x positions, y[o][p] from c[o*ldc + j];
//   Transposed == true:  c is positions x channels, y[o][p] from c[j*ldc + o], through registers.
template <class T, bool Transposed>
struct WriteBack {
  const T* c;
  int64_t ldc;
  T* y;
  int64_t ldy, wide, ow;
  const T* bias;  // one value per channel, or null
  Activation act;
  const GemmKernel<T>* kern;  // its activate pass for sigmoid and tanh, its transpose blocks

  void operator()(int64_t i0, int64_t mc, int64_t j0, int64_t nc) const {
    // The bias added as each value is written; sigmoid and tanh then over each run just written.
    with_write_activation(act, kern, [&](auto f, auto after) {
      if constexpr (Transposed)
        transposed(i0, mc, j0, nc, f, after);
      else
        rows(i0, mc, j0, nc, f, after);
    });
  }

 private:
  // Channels [i0, i0+mc) by positions [j0, j0+nc): each channel's runs, value by value.
  template <class F, class After>
  void rows(int64_t i0, int64_t mc, int64_t j0, int64_t nc, F f, After after) const {
    for (int64_t o = i0; o < i0 + mc; ++o) {
      const T b = bias ? bias[o] : T(0);
      const T* src = c + o * ldc;
      T* dst = y + o * ldy;
      for_each_output_run(j0, j0 + nc, wide, ow, [&](int64_t j, int64_t p, int64_t len) {
        for (int64_t t = 0; t < len; ++t) dst[p + t] = f(src[j + t] + b);
        after(dst + p, len);
      });
    }
  }

  // Positions [i0, i0+mc) by channels [j0, j0+nc): the runs of positions that land in one output
  // row (the whole block where wide == ow), each transposed into y.
  template <class F, class After>
  void transposed(int64_t i0, int64_t mc, int64_t j0, int64_t nc, F f, After after) const {
    for_each_output_run(i0, i0 + mc, wide, ow, [&](int64_t m0, int64_t p0, int64_t len) {
      transpose_run(m0, p0, len, j0, nc, f);
      for (int64_t o = j0; o < j0 + nc; ++o) after(y + o * ldy + p0, len);
    });
  }

  // y[o][p0 + t] = f(c[m0 + t][o] + bias[o]) for t < len, j0 <= o < j0 + nc. Square blocks of
  // positions x channels go through registers, the bias added and relu applied there (sigmoid and
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
        for (int64_t t = t0; t < t1; ++t) y[o * ldy + p0 + t] = f(c[(m0 + t) * ldc + o] + b);
      }
    };
    // The rectangle in blocks of side B through `block`, what is left of it through `rest`.
    const auto in_blocks = [&](int64_t B, auto block, auto rest, int64_t o0, int64_t o1,
                               int64_t t0, int64_t t1) {
      const int64_t ob = o0 + (o1 - o0) / B * B, tb = t0 + (t1 - t0) / B * B;
      for (int64_t o = o0; o < ob; o += B) {
        const T* add = bias ? bias + o : zeros;
        for (int64_t t = t0; t < tb; t += B)
          block(c + (m0 + t) * ldc + o, ldc, add, relu, y + o * ldy + p0 + t, ldy);
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

// The forward's epilogue for Y = W col (channels x positions).
template <class T>
using BiasActivation = WriteBack<T, false>;
// The epilogue for a product computed transposed (positions x channels).
template <class T>
using TransposeBiasActivation = WriteBack<T, true>;

}  // namespace convcore::detail
