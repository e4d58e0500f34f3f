#include <algorithm>

#include "conv2d_depthwise.hpp"
#include "conv2d_impl.hpp"
#include "convcore/conv2d.hpp"
#include "convcore/gemm.hpp"
#include "gemm/gemm_driver.hpp"
#include "gemm/pack.hpp"
#include "im2col_pack.hpp"

namespace convcore {
namespace detail {

template <class T>
void forward_unchecked(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act) {
  if (g.mb == 0) return;
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t ihw = g.ih * g.iw;
  const bool direct = col_is_input(g);

  parallel(image_threads(g), [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    for (int64_t n = begin; n < end; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = x + (n * g.ic + gi * icg) * ihw;
        T* yg = y + (n * g.oc + gi * ocg) * N;
        // Y[ocg x N] = W_g[ocg x K] * col[K x N], col packed straight from the image.
        const MatrixPackA<T> pack_w(false, w + gi * ocg * K, K);
        if (direct)
          gemm_driver<T>(ocg, N, K, T(1), pack_w, MatrixPackB<T>(false, xg, N), T(0), yg, N);
        else
          gemm_driver<T>(ocg, N, K, T(1), pack_w, Im2colPackB<T>{g, xg}, T(0), yg, N);
        if (bias == nullptr && act == Activation::identity) continue;
        for (int64_t o = 0; o < ocg; ++o) {
          const T b = bias ? bias[gi * ocg + o] : T(0);
          T* row = yg + o * N;
          for (int64_t p = 0; p < N; ++p) row[p] = activate(act, row[p] + b);
        }
      }
  });
}

template void forward_unchecked<float>(const Conv2dGeometry&, const float*, const float*,
                                       const float*, float*, Activation);
template void forward_unchecked<double>(const Conv2dGeometry&, const double*, const double*,
                                        const double*, double*, Activation);

}  // namespace detail

template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                    Activation act) {
  g.validate("conv2d_forward");
  if (g.mb == 0) return;
  if (detail::use_depthwise(g)) return detail::depthwise_forward(g, x, w, bias, y, act);
  detail::forward_unchecked(g, x, w, bias, y, act);
}

template <class T>
void activation_backward(Activation act, int64_t n, const T* grad, const T* output, T* delta) {
  detail::parallel_for((n + 4095) / 4096, 4096, [&](int64_t blk) {
    const int64_t end = std::min(n, (blk + 1) * 4096);
    for (int64_t i = blk * 4096; i < end; ++i)
      delta[i] = grad[i] * activation_derivative(act, output[i]);
  });
}

template void conv2d_forward<float>(const Conv2dGeometry&, const float*, const float*,
                                    const float*, float*, Activation);
template void conv2d_forward<double>(const Conv2dGeometry&, const double*, const double*,
                                     const double*, double*, Activation);
template void activation_backward<float>(Activation, int64_t, const float*, const float*, float*);
template void activation_backward<double>(Activation, int64_t, const double*, const double*,
                                          double*);

}  // namespace convcore
