// Path nhwc_via_nchw (nhwc_via_nchw.hpp): transposes around the NCHW twin's executor.
#include "ops/nhwc_via_nchw.hpp"

#include <algorithm>
#include <type_traits>

#include "convcore/parallel.hpp"
#include "gemm/sse_transpose.hpp"
#include "memory/scratch.hpp"
#include "plan/paths.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace convcore::detail {
namespace {

Conv2dGeometry nchw_twin(const Conv2dGeometry& g) {
  Conv2dGeometry t = g;
  t.layout = Layout::nchw;
  return t;
}

// One NCHW scratch array of `elems` values, or none where the array is used as it is.
template <class T>
struct TwinBuffer {
  TwinBuffer(bool needed, int64_t elems)
      : scratch(needed ? 1 : 0, int64_t(sizeof(T)) * std::max<int64_t>(elems, 1)) {}
  T* get() { return scratch.get<T>(0); }
  Scratch scratch;
};

// d[c][r] = s[r][c] for r in [r0, r1), c in [c0, c1) of a rows x cols matrix s.
template <class T>
void transpose_scalar(int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      const T* s, T* d) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = r0; r < r1; ++r) d[c * rows + r] = s[r * cols + c];
}
template <class T>
void transpose_block(int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                     const T* s, T* d) {
  transpose_scalar(rows, cols, r0, r1, c0, c1, s, d);
}
#if defined(__SSE2__)
// float: 4 x 4 sub-blocks through SSE registers (the x86-64 baseline), about 2.5x the scalar
// loop; two rows or two columns left over as 2 x 4 blocks (a six-channel tensor's last two
// channels), the last single row or column scalar. Four columns of s at a time, down the
// block's rows, so that only four rows of d take stores at once: where d's rows lie a multiple of
// 4 KiB apart (1024 pixels), sixteen or more of them map to the same L1 sets and evict each
// other (a 1024 x 16 transpose: 7.4 us rows first, 1.5 us columns first).
template <>
void transpose_block<float>(int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                            int64_t c1, const float* s, float* d) {
  const auto load2 = [](const float* p) {  // two floats into the low half
    return _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(p));
  };
  int64_t c = c0;
  for (; c + 4 <= c1; c += 4) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) transpose_block_sse(s + r * cols + c, cols, d + c * rows + r, rows);
    if (r + 2 <= r1) {
      transpose_2x4_sse(s + r * cols + c, cols, d + c * rows + r, rows);
      r += 2;
    }
    transpose_scalar(rows, cols, r, r1, c, c + 4, s, d);
  }
  if (c + 2 <= c1) {  // columns x, y of four rows: (x0 x1 x2 x3) and (y0 y1 y2 y3)
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      const float* q = s + r * cols + c;
      const __m128 u = _mm_unpacklo_ps(load2(q), load2(q + cols));
      const __m128 v = _mm_unpacklo_ps(load2(q + 2 * cols), load2(q + 3 * cols));
      _mm_storeu_ps(d + c * rows + r, _mm_movelh_ps(u, v));
      _mm_storeu_ps(d + (c + 1) * rows + r, _mm_movehl_ps(v, u));
    }
    transpose_scalar(rows, cols, r, r1, c, c + 2, s, d);
    c += 2;
  }
  transpose_scalar(rows, cols, r0, r1, c, c1, s, d);
}
#endif

// Three rows of one image (an RGB image's planes into NHWC): d[c*3 + r] = s[r*cols + c]. Four
// columns at a time as a 4 x 4 block of the three rows and the third again; its columns are
// stored four values wide, three apart, each store's fourth value then overwritten by the next
// column's. The last four columns take the scalar loop: their fourth values would fall past d.
// (The general blocks do these rows as a 2 x 4 block and four scalar values per four columns.)
template <class T>
bool transpose_three_rows(int64_t cols, const T* s, T* d) {
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    int64_t c = 0;
    for (; c + 4 < cols; c += 4) {
      __m128 v[4] = {_mm_loadu_ps(s + c), _mm_loadu_ps(s + cols + c),
                     _mm_loadu_ps(s + 2 * cols + c), _mm_loadu_ps(s + 2 * cols + c)};
      _MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);
      for (int j = 0; j < 4; ++j) _mm_storeu_ps(d + (c + j) * 3, v[j]);
    }
    transpose_scalar(int64_t(3), cols, 0, 3, c, cols, s, d);
    return true;
  }
#endif
  (void)cols, (void)s, (void)d;
  return false;
}

}  // namespace

template <class T>
void transpose_images(int64_t mb, int64_t rows, int64_t cols, const T* src, T* dst) {
  // Blocks of kB x kB, so that both the rows read and the rows written stay in L1; an item is a
  // band of kB rows of one image.
  constexpr int64_t kB = 32;
  const int64_t bands = (rows + kB - 1) / kB;
  parallel_for(mb * bands, kB * cols, [&](int64_t item) {
    const int64_t n = item / bands, r0 = (item % bands) * kB, r1 = std::min(r0 + kB, rows);
    const T* s = src + n * rows * cols;
    T* d = dst + n * rows * cols;
    if (rows == 3 && transpose_three_rows(cols, s, d)) return;
    for (int64_t c0 = 0; c0 < cols; c0 += kB)
      transpose_block(rows, cols, r0, r1, c0, std::min(c0 + kB, cols), s, d);
  });
}

template <class T>
std::unique_ptr<ForwardExec<T>> nchw_twin_forward(const Conv2dGeometry& g, const GemmKernel<T>& k) {
  const Conv2dGeometry t = nchw_twin(g);
  return std::make_unique<ForwardExec<T>>(t, cheapest_forward(cost_context(t, k)), k);
}
template <class T>
std::unique_ptr<InputExec<T>> nchw_twin_input(const Conv2dGeometry& g, const GemmKernel<T>& k) {
  const Conv2dGeometry t = nchw_twin(g);
  const InputPath p = cheapest_input(cost_context(t, k));
  const ForwardPath flipped =
      p == InputPath::flip ? cheapest_forward(cost_context(t.flipped(), k)) : ForwardPath::packed;
  return std::make_unique<InputExec<T>>(t, p, k, flipped);
}
template <class T>
std::unique_ptr<WeightExec<T>> nchw_twin_weight(const Conv2dGeometry& g, const GemmKernel<T>& k) {
  const Conv2dGeometry t = nchw_twin(g);
  return std::make_unique<WeightExec<T>>(t, cheapest_weight(cost_context(t, k)), k);
}

template <class T>
void forward_via_nchw(const ForwardExec<T>& e, int64_t mb, const T* x, const T* w, const T* bias,
                      T* y, Activation act) {
  const Conv2dGeometry& g = e.g;
  const int64_t pix_in = g.ih * g.iw, pix_out = g.oh() * g.ow();
  TwinBuffer<T> xt(g.ic > 1, mb * g.ic * pix_in), yt(g.oc > 1, mb * g.oc * pix_out);
  if (g.ic > 1) transpose_images(mb, pix_in, g.ic, x, xt.get());
  e.nchw->run(mb, g.ic > 1 ? xt.get() : x, w, bias, g.oc > 1 ? yt.get() : y, act);
  if (g.oc > 1) transpose_images(mb, g.oc, pix_out, yt.get(), y);
}

template <class T>
void backward_input_via_nchw(const InputExec<T>& e, const T* w, const T* dy, T* dx) {
  const Conv2dGeometry& g = e.g;
  const int64_t pix_in = g.ih * g.iw, pix_out = g.oh() * g.ow();
  // col2im's product packs dy in NHWC order itself; the other paths take it transposed.
  const bool packs_nhwc = e.nchw->path == InputPath::col2im && g.oc > 1;
  TwinBuffer<T> dyt(g.oc > 1 && !packs_nhwc, g.dst_size()), dxt(g.ic > 1, g.src_size());
  T* const dx_nchw = g.ic > 1 ? dxt.get() : dx;
  if (packs_nhwc) {
    backward_input_col2im_nhwc_dy(*e.kern, e.nchw->g, w, dy, dx_nchw);
  } else {
    if (g.oc > 1) transpose_images(g.mb, pix_out, g.oc, dy, dyt.get());
    e.nchw->run(w, g.oc > 1 ? dyt.get() : dy, dx_nchw);
  }
  if (g.ic > 1) transpose_images(g.mb, g.ic, pix_in, dxt.get(), dx);
}

template <class T>
void backward_weight_via_nchw(const WeightExec<T>& e, const T* x, const T* dy, T* dw,
                              bool accumulate) {
  const Conv2dGeometry& g = e.g;
  const int64_t pix_in = g.ih * g.iw, pix_out = g.oh() * g.ow();
  TwinBuffer<T> xt(g.ic > 1, g.src_size()), dyt(g.oc > 1, g.dst_size());
  if (g.ic > 1) transpose_images(g.mb, pix_in, g.ic, x, xt.get());
  if (g.oc > 1) transpose_images(g.mb, pix_out, g.oc, dy, dyt.get());
  e.nchw->run(g.ic > 1 ? xt.get() : x, g.oc > 1 ? dyt.get() : dy, dw, accumulate);
}

#define CONVCORE_VIA_NCHW(T)                                                                    \
  template void transpose_images<T>(int64_t, int64_t, int64_t, const T*, T*);                   \
  template std::unique_ptr<ForwardExec<T>> nchw_twin_forward<T>(const Conv2dGeometry&,          \
                                                                const GemmKernel<T>&);          \
  template std::unique_ptr<InputExec<T>> nchw_twin_input<T>(const Conv2dGeometry&,              \
                                                            const GemmKernel<T>&);              \
  template std::unique_ptr<WeightExec<T>> nchw_twin_weight<T>(const Conv2dGeometry&,            \
                                                              const GemmKernel<T>&);            \
  template void forward_via_nchw<T>(const ForwardExec<T>&, int64_t, const T*, const T*,         \
                                    const T*, T*, Activation);                                  \
  template void backward_input_via_nchw<T>(const InputExec<T>&, const T*, const T*, T*);        \
  template void backward_weight_via_nchw<T>(const WeightExec<T>&, const T*, const T*, T*, bool);
CONVCORE_VIA_NCHW(float)
CONVCORE_VIA_NCHW(double)
#undef CONVCORE_VIA_NCHW

}  // namespace convcore::detail
