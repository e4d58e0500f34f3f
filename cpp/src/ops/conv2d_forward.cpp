#include <algorithm>

#include "convcore/conv2d.hpp"
#include "convcore/gemm.hpp"
#include "convcore/plan.hpp"
#include "depthwise/conv2d_depthwise.hpp"
#include "depthwise/spread_nhwc.hpp"
#include "gemm/gemm_driver.hpp"
#include "gemm/pack.hpp"
#include "gemm/sse_transpose.hpp"
#include "igemm/im2col_pack.hpp"
#include "igemm/padded_image.hpp"
#include "memory/scratch.hpp"
#include "ops/conv2d_nhwc.hpp"
#include "ops/exec.hpp"
#include "ops/nhwc_via_nchw.hpp"
#include "ops/write_back.hpp"
#include "plan/paths.hpp"

namespace convcore {
namespace detail {
namespace {

// The image loop of the in-place paths: on nthr threads, each image's groups are padded in turn
// into the thread's block of work (pi.elems elements, then the rest of the block, `after`) and
// handed to body(n, gi, xp, after).
template <class T, class Body>
void for_each_padded_group(const Conv2dGeometry& g, const PaddedImage& pi, const T* x,
                           const Scratch& work, int64_t nthr, Body body) {
  const int64_t ihw = g.ih * g.iw;
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    T* xp = work.get<T>(tid);
    for (int64_t n = begin; n < end; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        pi.fill(g, x + (n * g.ic + gi * g.icg()) * ihw, xp);
        body(n, gi, xp, xp + pi.elems);
      }
  });
}

// Stride 1 (any dilation, padding or crop): with the padded copy xp of padded_image.hpp, row p
// of col over an output computed wp columns wide is
//
//   col[p][i*wp + j] = xp[tap_offset(p) + i*wp + j],
//
// a contiguous window of xp, so the product reads B straight from xp (DirectB: no packing, no
// 9-fold im2col copy for a 3x3 kernel) over oh*wp columns, of which the last wp - ow of each
// output row are discarded when the result is written out (the epilogue). The padded copy is
// 1/(kh*kw) of what packing col writes.
template <class T>
void forward_in_place_b(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x, const T* w,
                        const T* bias, T* y, Activation act) {
  const int64_t K = g.col_rows(), N = g.col_cols(), ocg = g.ocg();
  const int64_t oh = g.oh(), ow = g.ow();
  const PaddedImage& ip = e.pi;
  const int64_t np = oh * ip.wp;
  const int64_t wide_elems = ip.wp != ow ? ocg * np : 0;  // else the product lands in y
  const int64_t nthr = image_threads(g);
  Scratch work(nthr, (ip.elems + wide_elems) * int64_t(sizeof(T)));
  const int64_t* off = e.taps.data();

  for_each_padded_group(g, ip, x, work, nthr, [&](int64_t n, int64_t gi, T* xp, T* wide) {
    T* yg = y + (n * g.oc + gi * ocg) * N;
    T* out = wide_elems > 0 ? wide : yg;
    const MatrixPackA<T> pack_w(false, w + gi * ocg * K, K);
    const DirectB<T> b_in_place{xp, off};
    if (out == yg && bias == nullptr && act == Activation::identity) {
      gemm_driver<T>(*e.kern, ocg, np, K, T(1), pack_w, b_in_place, T(0), out, np);
      return;
    }
    const BiasActivation<T> epilogue{out, np, yg, N, ip.wp, ow, bias ? bias + gi * ocg : nullptr,
                                     act, e.kern};
    gemm_driver<T>(*e.kern, ocg, np, K, T(1), pack_w, b_in_place, T(0), out, np, epilogue);
  });
}

// Any stride: the transposed product, with col^T read in place from the padded copy xp of
// padded_image.hpp,
//
//   Y_g^T[N x ocg] = col^T[N x K] * W_g^T[K x ocg],   col^T[j][p] = xp[pix(j) + tap_offset(p)],
//   pix(i*ow + j) = i*sh*wp + j*sw,
//
// (DirectA over pixels, so a strided layer packs nothing of col; W^T is packed once per call),
// written back into y transposed, with bias and activation, by the epilogue while each
// block is in cache.
template <class T>
void forward_in_place_a(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x, const T* w,
                        const T* bias, T* y, Activation act) {
  const int64_t K = g.col_rows(), N = g.col_cols(), ocg = g.ocg(), icg = g.icg();
  const int64_t ihw = g.ih * g.iw;
  const PaddedImage& pi = e.pi;
  const int64_t nthr = image_threads(g);
  const GemmKernel<T>& kern = *e.kern;
  const int64_t B = e.batch;  // images per product
  const int64_t wt_elems = prepacked_b_elems(kern, K, ocg);
  Scratch packed_w(1, g.groups * wt_elems * int64_t(sizeof(T)));
  Scratch work(nthr, B * (pi.elems + N * ocg) * int64_t(sizeof(T)));
  const int64_t* pix = e.pix.data();  // B*N entries: image i's pixels at i*pi.elems + pix(j)
  const int64_t* taps = e.taps.data();
  // W_g^T, packed once for all the images.
  prepack_weights_t(e, w, packed_w.get<T>(0), wt_elems);

  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    T* xp = work.get<T>(tid);      // B padded copies, pi.elems apart
    T* yt = xp + B * pi.elems;     // the product, B*N x ocg
    for (int64_t n0 = begin; n0 < end; n0 += B) {
      const int64_t cnt = std::min(B, end - n0);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        for (int64_t i = 0; i < cnt; ++i)
          pi.fill(g, x + ((n0 + i) * g.ic + gi * icg) * ihw, xp + i * pi.elems);
        // Rows of the block split at image boundaries, each image written back on its own.
        const auto epilogue = [&](int64_t i0, int64_t mc, int64_t j0, int64_t nc) {
          for (int64_t m = i0, stop = i0 + mc; m < stop;) {
            const int64_t img = m / N, local = m % N, len = std::min(stop - m, N - local);
            const TransposeBiasActivation<T> one{yt + img * N * ocg, ocg,
                                                 y + ((n0 + img) * g.oc + gi * ocg) * N, N,
                                                 g.ow(), g.ow(),
                                                 bias ? bias + gi * ocg : nullptr, act, &kern};
            one(local, len, j0, nc);
            m += len;
          }
        };
        const PrepackedB<T> wt{&kern, packed_w.get<T>(0) + gi * wt_elems, ocg};
        const DirectA<T> col_t{xp, pix, taps, e.pix_run.data()};
        gemm_driver<T>(kern, cnt * N, ocg, K, T(1), col_t, wt, T(0), yt, ocg, epilogue);
      }
    }
  });
}

// Stride 1: the transposed product over rows as wide as the padded copy xp,
//
//   Yw_g^T[M x ocg] = colw^T[M x K] * W_g^T[K x ocg],   colw^T[m][p] = xp[m + tap_offset(p)],
//   M = oh*wp, row m = i*wp + j the output pixel (i, j) for j < ow (the rest discarded),
//
// so the MR rows of a tile are consecutive in xp (RowsA: one address per k step, no row
// pointers). The epilogue writes y transposed, without the wp - ow extra rows of each output
// row, with bias and activation. The padded copy carries a zero tail for the rows past M.
template <class T>
void forward_in_place_a_wide(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x,
                             const T* w, const T* bias, T* y, Activation act) {
  const int64_t K = g.col_rows(), N = g.col_cols(), ocg = g.ocg();
  const PaddedImage& pi = e.pi;
  const int64_t M = g.oh() * pi.wp;
  const int64_t nthr = image_threads(g);
  const GemmKernel<T>& kern = *e.kern;
  const int64_t wt_elems = prepacked_b_elems(kern, K, ocg);
  Scratch packed_w(1, g.groups * wt_elems * int64_t(sizeof(T)));
  Scratch work(nthr, (pi.elems + M * ocg) * int64_t(sizeof(T)));
  const int64_t* taps = e.taps.data();
  prepack_weights_t(e, w, packed_w.get<T>(0), wt_elems);

  for_each_padded_group(g, pi, x, work, nthr, [&](int64_t n, int64_t gi, T* xp, T* yt) {
    const TransposeBiasActivation<T> epilogue{yt, ocg, y + (n * g.oc + gi * ocg) * N, N, pi.wp,
                                              g.ow(), bias ? bias + gi * ocg : nullptr, act,
                                              &kern};
    const PrepackedB<T> wt{&kern, packed_w.get<T>(0) + gi * wt_elems, ocg};
    gemm_driver<T>(kern, M, ocg, K, T(1), RowsA<T>{xp, taps}, wt, T(0), yt, ocg, epilogue);
  });
}

// col packed panel by panel from the image (or, for gemm_1x1, the image itself as B).
template <class T>
void forward_packed(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x, const T* w,
                    const T* bias, T* y, Activation act) {
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t ihw = g.ih * g.iw;
  const bool direct = e.path == ForwardPath::gemm_1x1;
  const GemmKernel<T>& kern = *e.kern;

  parallel(image_threads(g), [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    for (int64_t n = begin; n < end; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = x + (n * g.ic + gi * icg) * ihw;
        T* yg = y + (n * g.oc + gi * ocg) * N;
        // Y[ocg x N] = W_g[ocg x K] * col[K x N], col packed straight from the image.
        const MatrixPackA<T> pack_w(false, w + gi * ocg * K, K);
        const auto product = [&](const auto& epilogue) {
          if (direct)
            gemm_driver<T>(kern, ocg, N, K, T(1), pack_w, MatrixPackB<T>(false, xg, N), T(0),
                           yg, N, epilogue);
          else
            gemm_driver<T>(kern, ocg, N, K, T(1), pack_w, Im2colPackB<T>{g, xg}, T(0), yg, N,
                           epilogue);
        };
        if (bias == nullptr && act == Activation::identity)
          product(NoEpilogue());
        else
          product(BiasActivation<T>{yg, N, yg, N, N, N, bias ? bias + gi * ocg : nullptr, act, e.kern});
      }
  });
}

}  // namespace

template <class T>
ForwardExec<T>::ForwardExec(const Conv2dGeometry& geometry, ForwardPath p,
                            const GemmKernel<T>& k)
    : g(geometry), path(p), kern(&k) {
  prepare_nhwc(*this);
  if (path == ForwardPath::nhwc_via_nchw) nchw = nchw_twin_forward(g, k);
  if (path != ForwardPath::a_in_place && path != ForwardPath::a_wide &&
      path != ForwardPath::b_in_place)
    return;
  pi = PaddedImage::of<T>(g);
  taps = pi.tap_offsets(g);
  if (path == ForwardPath::a_wide) pi.elems += a_wide_tail<T>(pi);
  if (path != ForwardPath::a_in_place) return;
  // Images are stacked where one product would be less than an A block (MC rows), or where the
  // packed weights exceed half of L2 (a_in_place_batch): `batch` padded copies, their pixels the
  // rows of one product.
  batch = a_in_place_batch(g, k.mc, int64_t(sizeof(T)), l2_cache_bytes());
  const std::vector<int64_t> one = pi.pixel_offsets(g);
  pix.resize(size_t(batch) * one.size());
  for (int64_t i = 0; i < batch; ++i)
    for (size_t j = 0; j < one.size(); ++j) pix[size_t(i) * one.size() + j] = i * pi.elems + one[j];
  pix_run = consecutive_runs(pix.data(), int64_t(pix.size()));
}

template <class T>
void ForwardExec<T>::run(int64_t mb, const T* x, const T* w, const T* bias, T* y,
                         Activation act) const {
  if (mb == 0) return;
  Conv2dGeometry gm = g;
  gm.mb = mb;
  switch (path) {
    case ForwardPath::a_in_place: return forward_in_place_a(*this, gm, x, w, bias, y, act);
    case ForwardPath::a_wide: return forward_in_place_a_wide(*this, gm, x, w, bias, y, act);
    case ForwardPath::b_in_place: return forward_in_place_b(*this, gm, x, w, bias, y, act);
    case ForwardPath::gemm_1x1:
    case ForwardPath::packed: return forward_packed(*this, gm, x, w, bias, y, act);
    case ForwardPath::depthwise: return depthwise_forward(*kern->loops, gm, x, w, bias, y, act);
    case ForwardPath::nhwc_1x1:
    case ForwardPath::nhwc_in_place:
    case ForwardPath::nhwc_depthwise: return forward_nhwc(*this, gm, x, w, bias, y, act);
    case ForwardPath::nhwc_spread: return spread_forward_nhwc(*kern, gm, x, w, bias, y, act);
    case ForwardPath::nhwc_via_nchw: return forward_via_nchw(*this, mb, x, w, bias, y, act);
  }
}

template <class T>
void prepack_weights_t(const ForwardExec<T>& e, const T* w, T* dst, int64_t wt_elems) {
  const Conv2dGeometry& g = e.g;
  const int64_t K = g.col_rows(), ocg = g.ocg();
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    if (e.wcol.empty())
      prepack_b(*e.kern, K, ocg, MatrixPackB<T>(true, w + gi * ocg * K, K), dst + gi * wt_elems);
    else
      prepack_b_whole(*e.kern, K, ocg, WeightsTInOrder<T>{w + gi * ocg * K, e.wld, e.wrows.data()},
                      dst + gi * wt_elems);
  }
}

template void prepack_weights_t<float>(const ForwardExec<float>&, const float*, float*, int64_t);
template void prepack_weights_t<double>(const ForwardExec<double>&, const double*, double*,
                                         int64_t);

template struct ForwardExec<float>;
template struct ForwardExec<double>;

}  // namespace detail

template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                    Activation act) {
  PlanOptions opt;
  opt.activation = act;
  opt.bias = bias != nullptr;
  Conv2dPlan<T>(g, opt).forward(x, w, bias, y);
}

template <class T>
void activation_forward(Activation act, int64_t n, const T* x, T* y) {
  const detail::GemmKernel<T>& kern = detail::gemm_kernel<T>(active_isa());
  detail::parallel_for((n + 4095) / 4096, 4096, [&](int64_t blk) {
    const int64_t begin = blk * 4096, end = std::min(n, begin + 4096);
    if (act == Activation::sigmoid || act == Activation::tanh) {
      if (y != x) std::copy(x + begin, x + end, y + begin);
      kern.activate(act, y + begin, end - begin);
      return;
    }
    detail::with_activation(act, [&](auto a) {
      if constexpr (decltype(a)::value == Activation::relu) {
        // A select GCC vectorises (max would keep NaN, which the comparison turns into 0).
        for (int64_t i = begin; i < end; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      } else {
        for (int64_t i = begin; i < end; ++i) y[i] = activate(a, x[i]);
      }
    });
  });
}

template <class T>
void activation_backward(Activation act, int64_t n, const T* grad, const T* output, T* delta) {
  detail::parallel_for((n + 4095) / 4096, 4096, [&](int64_t blk) {
    const int64_t end = std::min(n, (blk + 1) * 4096);
    detail::with_activation(act, [&](auto a) {
      if constexpr (decltype(a)::value == Activation::relu) {
        // Written as a bool converted to T: GCC compiles "a > 0 ? 1 : 0" times grad to a branch
        // (taken at random for ReLU outputs) that blocks vectorisation.
        for (int64_t i = blk * 4096; i < end; ++i) {
          const T positive = output[i] > T(0);
          delta[i] = grad[i] * positive;
        }
      } else {
        for (int64_t i = blk * 4096; i < end; ++i)
          delta[i] = grad[i] * activation_derivative<T>(a, output[i]);
      }
    });
  });
}

template void conv2d_forward<float>(const Conv2dGeometry&, const float*, const float*,
                                    const float*, float*, Activation);
template void conv2d_forward<double>(const Conv2dGeometry&, const double*, const double*,
                                     const double*, double*, Activation);
template void activation_forward<float>(Activation, int64_t, const float*, float*);
template void activation_forward<double>(Activation, int64_t, const double*, double*);
template void activation_backward<float>(Activation, int64_t, const float*, const float*, float*);
template void activation_backward<double>(Activation, int64_t, const double*, const double*,
                                          double*);

}  // namespace convcore
