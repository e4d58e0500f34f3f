// The NHWC executors (conv2d_nhwc.hpp): the products of the NCHW in-place paths, with pixels as
// rows and channels as columns, so that the GEMM's row-major C is the NHWC output itself.
#include "ops/conv2d_nhwc.hpp"

#include <algorithm>

#include "gemm/gemm_driver.hpp"
#include "gemm/pack.hpp"
#include "igemm/padded_image_nhwc.hpp"
#include "memory/scratch.hpp"
#include "ops/weight_chunks.hpp"

namespace convcore::detail {
namespace {

// The place in a row of w (PyTorch's (c, r, s) order) of each K index of the NHWC im2col
// matrix, (r*kw + s)*icg + c.
inline std::vector<int64_t> nhwc_weight_columns(const Conv2dGeometry& g) {
  const int64_t icg = g.icg(), khw = g.kh * g.kw;
  std::vector<int64_t> col(static_cast<size_t>(icg * khw));
  for (int64_t t = 0; t < khw; ++t)
    for (int64_t c = 0; c < icg; ++c) col[static_cast<size_t>(t * icg + c)] = c * khw + t;
  return col;
}

// The forward epilogue: y = act(y + bias) over a finished block of the NHWC output (pixels
// [i0, i0+mc), channels [j0, j0+nc) of the group, which starts at y with row stride ldy).
template <class T>
struct NhwcBiasActivation {
  T* y;
  int64_t ldy;
  const T* bias;  // ocg values, or null
  Activation act;
  const GemmKernel<T>* kern;  // its activate pass for sigmoid and tanh

  void operator()(int64_t i0, int64_t mc, int64_t j0, int64_t nc) const {
    const bool pass = act == Activation::sigmoid || act == Activation::tanh;
    with_activation(pass ? Activation::identity : act, [&](auto a) {
      for (int64_t i = i0; i < i0 + mc; ++i) {
        T* row = y + i * ldy + j0;
        if (bias) {
          const T* b = bias + j0;
          for (int64_t t = 0; t < nc; ++t) row[t] = activate(a, row[t] + b[t]);
        } else if (decltype(a)::value != Activation::identity) {
          for (int64_t t = 0; t < nc; ++t) row[t] = activate(a, row[t]);
        }
        if (pass) kern->activate(act, row, nc);
      }
    });
  }
};

// The work of one band of one image's forward product, for the thread count.
int64_t band_work(const Conv2dGeometry& g, int64_t rows) {
  return work_mul(work_mul(g.oc, g.col_rows()), work_mul(rows, g.ow()));
}

// 1x1, stride 1, no padding: col^T is x itself, the whole batch one product per group,
// Y[mb*ih*iw x ocg] = X_g[mb*ih*iw x icg] * W_g^T[icg x ocg], both read with row stride ic / oc.
template <class T>
void forward_nhwc_1x1(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* x, const T* w,
                      const T* bias, T* y, Activation act) {
  const int64_t m = g.mb * g.ih * g.iw, icg = g.icg(), ocg = g.ocg();
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const MatrixPackA<T> a(false, x + gi * icg, g.ic);
    const MatrixPackB<T> b(true, w + gi * ocg * icg, icg);
    T* yg = y + gi * ocg;
    if (bias == nullptr && act == Activation::identity)
      gemm_driver<T>(kern, m, ocg, icg, T(1), a, b, T(0), yg, g.oc);
    else
      gemm_driver<T>(kern, m, ocg, icg, T(1), a, b, T(0), yg, g.oc,
                     NhwcBiasActivation<T>{yg, g.oc, bias ? bias + gi * ocg : nullptr, act, &kern});
  }
}

// Any geometry: per band of output rows of an image, the padded copy xp of the band (all
// channels), then per group Y_g[cnt*ow x ocg] = col^T * Wr_g^T with col^T read in place from
// xp (DirectA) and Wr_g^T packed once per call straight from w (WeightsTInOrder). Images and
// bands are split over the threads.
template <class T>
void forward_nhwc_in_place(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x,
                           const T* w, const T* bias, T* y, Activation act) {
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const GemmKernel<T>& kern = *e.kern;
  const PaddedBandNhwc& pb = e.band;
  const int64_t items = g.mb * pb.bands;
  const int64_t nthr = std::min<int64_t>(threads_for_work(items, band_work(g, pb.rows)),
                                         get_num_threads());
  const int64_t wt_elems = prepacked_b_elems(kern, K, ocg);
  Scratch packed_w(1, g.groups * wt_elems * int64_t(sizeof(T)));
  Scratch work(nthr, pb.elems * int64_t(sizeof(T)));
  prepack_weights_t(e, w, packed_w.get<T>(0), wt_elems);
  const int64_t* pix = e.pix.data();
  const int64_t* taps = e.taps.data();
  const int64_t img = g.ih * g.iw * g.ic;

  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(items, nt, tid, begin, end);
    T* xp = work.get<T>(tid);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / pb.bands;
      int64_t i0, cnt;
      pb.band_range(g, item % pb.bands, i0, cnt);
      pb.fill(g, x + n * img, i0, cnt, xp);
      T* yb = y + (n * N + i0 * g.ow()) * g.oc;
      const int64_t m = cnt * g.ow();
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const DirectA<T> a{xp + gi * icg, pix, taps};
        const PrepackedB<T> b{&kern, packed_w.get<T>(0) + gi * wt_elems, ocg};
        T* yg = yb + gi * ocg;
        if (bias == nullptr && act == Activation::identity)
          gemm_driver<T>(kern, m, ocg, K, T(1), a, b, T(0), yg, g.oc);
        else
          gemm_driver<T>(kern, m, ocg, K, T(1), a, b, T(0), yg, g.oc,
                         NhwcBiasActivation<T>{yg, g.oc, bias ? bias + gi * ocg : nullptr, act,
                                               &kern});
      }
    }
  });
}

}  // namespace

template <class T>
void prepare_nhwc(ForwardExec<T>& e) {
  if (e.path != ForwardPath::nhwc_in_place) return;
  e.band = PaddedBandNhwc::of<T>(e.g);
  e.taps = e.band.tap_offsets(e.g);
  e.wcol = nhwc_weight_columns(e.g);
  e.wrows = panel_rows(*e.kern, e.wcol, e.g.ocg());
  e.wld = e.g.col_rows();
  e.pix = e.band.pixel_offsets(e.g);
}

template <class T>
void prepare_nhwc(WeightExec<T>& e) {
  if (e.path != WeightPath::nhwc_in_place) return;
  e.band = PaddedBandNhwc::of<T>(e.g);
  e.row_off = e.band.tap_offsets(e.g);
  e.k_off = e.band.pixel_offsets(e.g);
  // Row (r*kw + s)*icg + c of the product is dw's (c, r, s): k_of inverts that map.
  const std::vector<int64_t> q_of = nhwc_weight_columns(e.g);
  e.k_of.assign(q_of.size(), 0);
  for (size_t k = 0; k < q_of.size(); ++k) e.k_of[size_t(q_of[k])] = int64_t(k);
}

template <class T>
void forward_nhwc(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x, const T* w,
                  const T* bias, T* y, Activation act) {
  if (e.path == ForwardPath::nhwc_1x1) return forward_nhwc_1x1(*e.kern, g, x, w, bias, y, act);
  if (e.path == ForwardPath::nhwc_depthwise)
    return depthwise_forward_nhwc(*e.kern, g, x, w, bias, y, act);
  forward_nhwc_in_place(e, g, x, w, bias, y, act);
}

// dcol^T[cnt*ow x K] = dY_g[cnt*ow x ocg] * Wr_g[ocg x K] per band of output rows (Wr_g packed
// once per call straight from w, WeightsInOrder), then each row of dcol^T added back, one
// contiguous icg-vector per tap, into dx (zeroed first). Images
// are split over the threads (a band's scatter overlaps its neighbours'). 1x1 stride-1 unpadded
// kernels need no scatter: dX_g[mb*ih*iw x icg] = dY_g * W_g, the whole batch in one product.
template <class T>
void backward_input_col2im_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                const T* dy, T* dx) {
  const int64_t K = g.col_rows(), icg = g.icg(), ocg = g.ocg(), oh = g.oh(), ow = g.ow();
  if (col_is_input(g)) {
    const int64_t m = g.mb * g.ih * g.iw;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm_driver<T>(kern, m, icg, ocg, T(1), MatrixPackA<T>(false, dy + gi * ocg, g.oc),
                     MatrixPackB<T>(false, w + gi * ocg * icg, icg), T(0), dx + gi * icg, g.ic);
    return;
  }
  const double row_bytes = double(ow) * double(K) * double(sizeof(T));
  const int64_t rows = band_rows(oh, row_bytes, 0, PaddedBandNhwc::kBandBytes);
  const int64_t nthr = image_threads(g);
  Scratch col_buf(nthr, rows * ow * K * int64_t(sizeof(T)));
  // Wr_g, each group's weights with K in the NHWC order, packed once for all the images.
  const int64_t wt_elems = prepacked_b_elems(kern, ocg, K);
  Scratch packed_w(1, g.groups * wt_elems * int64_t(sizeof(T)));
  const std::vector<int64_t> wcol = nhwc_weight_columns(g);
  for (int64_t gi = 0; gi < g.groups; ++gi)
    prepack_b(kern, ocg, K, WeightsInOrder<T>{w + gi * ocg * K, K, wcol.data()},
              packed_w.get<T>(0) + gi * wt_elems);
  const int64_t img = g.ih * g.iw * g.ic;
  const bool runs = nhwc_col2im_runs(g);

  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    T* dcol = col_buf.get<T>(tid);
    for (int64_t n = begin; n < end; ++n) {
      T* dxn = dx + n * img;
      std::fill(dxn, dxn + img, T(0));
      for (int64_t i0 = 0; i0 < oh; i0 += rows) {
        const int64_t cnt = std::min(rows, oh - i0);
        const T* dyb = dy + (n * oh + i0) * ow * g.oc;
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          gemm_driver<T>(kern, cnt * ow, K, ocg, T(1), MatrixPackA<T>(false, dyb + gi * ocg, g.oc),
                         PrepackedB<T>{&kern, packed_w.get<T>(0) + gi * wt_elems, K}, T(0), dcol,
                         K);
          for (int64_t i = 0; i < cnt; ++i)
            for (int64_t j = 0; j < ow; ++j) {
              const T* src = dcol + (i * ow + j) * K;
              for (int64_t r = 0; r < g.kh; ++r) {
                const int64_t iy = (i0 + i) * g.sh + r * g.dh - g.pt;
                if (static_cast<uint64_t>(iy) >= static_cast<uint64_t>(g.ih)) continue;
                if (runs) {  // the row's taps in range: one run of channels in dcol and in dx
                  const int64_t x0 = j * g.sw - g.pl;
                  const int64_t s0 = std::max<int64_t>(0, -x0), s1 = std::min(g.kw, g.iw - x0);
                  if (s0 >= s1) continue;
                  T* d = dxn + (iy * g.iw + x0 + s0) * g.ic;
                  const T* v = src + (r * g.kw + s0) * icg;
                  const int64_t len = (s1 - s0) * icg;
                  for (int64_t c = 0; c < len; ++c) d[c] += v[c];
                  continue;
                }
                for (int64_t s = 0; s < g.kw; ++s) {
                  const int64_t ix = j * g.sw + s * g.dw - g.pl;
                  if (static_cast<uint64_t>(ix) >= static_cast<uint64_t>(g.iw)) continue;
                  T* d = dxn + (iy * g.iw + ix) * g.ic + gi * icg;
                  const T* v = src + (r * g.kw + s) * icg;
                  for (int64_t c = 0; c < icg; ++c) d[c] += v[c];
                }
              }
            }
        }
      }
    }
  });
}

template <class T>
void expand_stride_nhwc(const Conv2dGeometry& g, int64_t channels, const T* dy, T* e) {
  const int64_t eh = g.eh(), ew = g.ew(), oh = g.oh(), ow = g.ow();
  std::fill(e, e + eh * ew * channels, T(0));
  for (int64_t i = 0; i < oh; ++i)
    for (int64_t j = 0; j < ow; ++j)
      std::copy(dy + (i * ow + j) * channels, dy + (i * ow + j + 1) * channels,
                e + (i * g.sh * ew + j * g.sw) * channels);
}

// dW_g^T[K x ocg] (+)= col[K x cnt*ow] * dY_g[cnt*ow x ocg] per band of an image, col read in
// place from the band's padded copy (DirectA), dY_g packed from dy with row stride oc. Partial
// sums over the same fixed chunks of images as the NCHW paths, bands in order inside each
// image, then reduced in chunk order with K mapped back from (r, s, c) to dw's (c, r, s).
template <class T>
void backward_weight_nhwc(const WeightExec<T>& e, const T* x, const T* dy, T* dw,
                          bool accumulate) {
  const Conv2dGeometry& g = e.g;
  const int64_t chunks = e.chunks;
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t img = g.ih * g.iw * g.ic;
  const PaddedBandNhwc& pb = e.band;
  Scratch partial(chunks, g.wei_size() * int64_t(sizeof(T)));
  Scratch padded(chunk_threads(chunks), pb.elems * int64_t(sizeof(T)));
  const int64_t* taps = e.row_off.data();
  const int64_t* pix = e.k_off.data();

  // One chunk on one thread while the work is worth more: the driver splits each product among
  // the threads, and the band's copy is split among them here (as the NCHW path's).
  const int64_t copy_threads = chunk_threads(chunks) == 1 ? image_threads(g) : 1;
  for_each_image_chunk(g, chunks, [&](int64_t c, int64_t begin, int64_t end, int64_t tid) {
    T* xp = padded.get<T>(tid);
    T* sum = partial.get<T>(c);  // [groups][K][ocg]
    for (int64_t n = begin; n < end; ++n)
      for (int64_t b = 0; b < pb.bands; ++b) {
        int64_t i0, cnt;
        pb.band_range(g, b, i0, cnt);
        parallel(copy_threads, [&](int64_t t, int64_t nt) {
          int64_t y0, y1;
          balance(PaddedBandNhwc::copy_rows(g, cnt), nt, t, y0, y1);
          pb.fill_rows(g, x + n * img, i0, cnt, xp, y0, y1);
        });
        const T* dyb = dy + (n * N + i0 * g.ow()) * g.oc;
        const T beta = n == begin && b == 0 ? T(0) : T(1);
        for (int64_t gi = 0; gi < g.groups; ++gi)
          gemm_driver<T>(*e.kern, K, ocg, cnt * g.ow(), T(1), DirectA<T>{xp + gi * icg, taps, pix},
                         MatrixPackB<T>(false, dyb + gi * ocg, g.oc), beta, sum + gi * K * ocg, ocg);
      }
  });
  // dw[gi*ocg + o][c][t] (q = c*khw + t) from the K index t*icg + c of the NHWC im2col rows.
  const int64_t* k_of = e.k_of.data();
  add_transposed_chunks(g, chunks, partial, dw, accumulate, [k_of](int64_t q) { return k_of[q]; });
}

// Column sums of dy[mb*oh*ow][oc]. The rows are cut into chunks of kChunk, each chunk's sums
// (one job per chunk and block of channels, over the threads) kept apart, then the chunks added
// in order. In a chunk, the rows go in groups of kRows, each group summed as a balanced tree and
// added to one running sum per channel (a load and a store of the sum per kRows rows), the last
// rows one by one. The order depends on the geometry only; the inner loops run along contiguous
// channels (vectorised).
template <class T>
void backward_bias_nhwc(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate) {
  constexpr int64_t kBlock = 256, kRows = 8, kChunk = 2048;
  static_assert(kRows == 8, "the tree below adds eight rows");
  const int64_t m = g.mb * g.oh() * g.ow(), oc = g.oc;
  const int64_t chunks = (m + kChunk - 1) / kChunk, blocks = (oc + kBlock - 1) / kBlock;
  Scratch part_buf(1, std::max<int64_t>(chunks * oc, 1) * int64_t(sizeof(T)));
  T* const part = part_buf.get<T>(0);
  parallel_for(chunks * blocks, kChunk * kBlock, [&](int64_t job) {
    const int64_t i = job / blocks, c0 = job % blocks * kBlock, cn = std::min(kBlock, oc - c0);
    const int64_t p1 = std::min(m, (i + 1) * kChunk);
    T acc[kBlock] = {};
    int64_t p = i * kChunk;
    for (; p + kRows <= p1; p += kRows) {
      const T* r = dy + p * oc + c0;
      for (int64_t c = 0; c < cn; ++c)
        acc[c] += ((r[c] + r[oc + c]) + (r[2 * oc + c] + r[3 * oc + c])) +
                  ((r[4 * oc + c] + r[5 * oc + c]) + (r[6 * oc + c] + r[7 * oc + c]));
    }
    for (; p < p1; ++p)
      for (int64_t c = 0; c < cn; ++c) acc[c] += dy[p * oc + c0 + c];
    std::copy(acc, acc + cn, part + i * oc + c0);
  });
  for (int64_t c = 0; c < oc; ++c) {
    T s = T(0);
    for (int64_t i = 0; i < chunks; ++i) s += part[i * oc + c];
    db[c] = accumulate ? db[c] + s : s;
  }
}

#define CONVCORE_INSTANTIATE(T)                                                                  \
  template void prepare_nhwc<T>(ForwardExec<T>&);                                               \
  template void prepare_nhwc<T>(WeightExec<T>&);                                                \
  template void forward_nhwc<T>(const ForwardExec<T>&, const Conv2dGeometry&, const T*, const T*, \
                                const T*, T*, Activation);                                      \
  template void backward_input_col2im_nhwc<T>(const GemmKernel<T>&, const Conv2dGeometry&,     \
                                              const T*, const T*, T*);                          \
  template void expand_stride_nhwc<T>(const Conv2dGeometry&, int64_t, const T*, T*);           \
  template void backward_weight_nhwc<T>(const WeightExec<T>&, const T*, const T*, T*, bool);   \
  template void backward_bias_nhwc<T>(const Conv2dGeometry&, const T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::detail
