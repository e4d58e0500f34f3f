#include <algorithm>
#include <cstring>
#include <thread>

#include "convcore/conv2d.hpp"
#include "convcore/gemm.hpp"
#include "convcore/im2col.hpp"
#include "convcore/plan.hpp"
#include "depthwise/conv2d_depthwise.hpp"
#include "depthwise/spread_nhwc.hpp"
#include "gemm/gemm_driver.hpp"
#include "gemm/pack.hpp"
#include "igemm/col2im_rows.hpp"
#include "igemm/im2col_pack.hpp"
#include "igemm/padded_image.hpp"
#include "memory/scratch.hpp"
#include "ops/conv2d_nhwc.hpp"
#include "ops/nhwc_via_nchw.hpp"
#include "ops/exec.hpp"
#include "ops/write_back.hpp"
#include "ops/weight_chunks.hpp"
#include "plan/paths.hpp"

namespace convcore {
namespace detail {
namespace {

// The tutorial's method: dx = crop(pad(expand(dy), k-1) * flip(w)), a stride-1 forward
// convolution with geometry g.flipped() (its negative padding, if any, is the crop).
// Images are expanded a chunk at a time so the zero-inserted copy never spans the whole batch.
// The flipped kernels are made by flip_kernels, or not at all where the flipped forward packs
// them straight from w (InputExec::flip_in_pack).
template <class T>
void backward_input_flip(const InputExec<T>& e, const T* w, const T* dy, T* dx) {
  const Conv2dGeometry& g = e.g;
  const ForwardExec<T>& flipped = *e.flipped;
  Scratch wf_buf(e.flip_in_pack ? 0 : 1, g.wei_size() * int64_t(sizeof(T)));
  const T* wf = w;
  if (!e.flip_in_pack) {
    flip_kernels(g, w, wf_buf.get<T>(0));
    wf = wf_buf.get<T>(0);
  }
  if (g.sh == 1 && g.sw == 1) {  // nothing to insert: expand(dy) == dy
    flipped.run(g.mb, dy, wf, static_cast<const T*>(nullptr), dx, Activation::identity);
    return;
  }
  const int64_t chunk = image_threads(g);
  const int64_t e_img = g.oc * g.eh() * g.ew(), dy_img = g.oc * g.oh() * g.ow();
  const int64_t dx_img = g.ic * g.ih * g.iw;
  Scratch expanded(1, chunk * e_img * int64_t(sizeof(T)));
  T* ex = expanded.get<T>(0);
  for (int64_t n0 = 0; n0 < g.mb; n0 += chunk) {
    const int64_t cnt = std::min(chunk, g.mb - n0);
    parallel_for(cnt, e_img, [&](int64_t i) {
      if (g.layout == Layout::nhwc)
        expand_stride_nhwc(g, g.oc, dy + (n0 + i) * dy_img, ex + i * e_img);
      else
        expand_stride(g, g.oc, dy + (n0 + i) * dy_img, ex + i * e_img);
    });
    flipped.run(cnt, static_cast<const T*>(ex), wf, static_cast<const T*>(nullptr),
                dx + n0 * dx_img, Activation::identity);
  }
}

// The classic method: dcol = W^T * dy per image and group, then col2im. Each group's W_g^T is
// packed once for all the images. With stride 1 across, dx's rows are gathered from dcol in
// vector registers (col2im_rows), else dcol is scattered back value by value.
template <class T>
void backward_input_col2im(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                           const T* dy, T* dx, bool dy_nhwc = false) {
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t ihw = g.ih * g.iw;
  const bool direct = col_is_input(g), gather = g.sw == 1;
  const int64_t nthr = image_threads(g);
  // dcol with kCol2imSlack zeros on each side for the gather's whole-vector reads.
  const int64_t slack = gather ? kCol2imSlack<T> : 0;
  Scratch col_buf(direct ? 0 : nthr, (K * N + 2 * slack) * int64_t(sizeof(T)));
  const int64_t wt_elems = prepacked_a_elems(kern, K, ocg);
  Scratch packed_w(1, g.groups * wt_elems * int64_t(sizeof(T)));
  for (int64_t gi = 0; gi < g.groups; ++gi)
    prepack_a(kern, K, ocg, MatrixPackA<T>(true, w + gi * ocg * K, K),
              packed_w.get<T>(0) + gi * wt_elems, true);

  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    T* dcol = direct ? nullptr : col_buf.get<T>(tid) + slack;
    if (!direct) {
      std::fill(dcol - slack, dcol, T(0));
      std::fill(dcol + K * N, dcol + K * N + slack, T(0));
    }
    for (int64_t n = begin; n < end; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        T* dxg = dx + (n * g.ic + gi * icg) * ihw;
        // dcol[K x N] = W_g^T[K x ocg] * dY_g[ocg x N]; dy in NHWC order is dY_g^T (row stride oc)
        const T* dyg = dy_nhwc ? dy + n * N * g.oc + gi * ocg : dy + (n * g.oc + gi * ocg) * N;
        gemm_driver<T>(kern, K, N, ocg, T(1),
                       PrepackedA<T>{&kern, packed_w.get<T>(0) + gi * wt_elems, K},
                       MatrixPackB<T>(dy_nhwc, dyg, dy_nhwc ? g.oc : N), T(0),
                       direct ? dxg : dcol, N);
        if (direct) continue;
        if (gather) {
          col2im_rows(*kern.loops, g, dcol, dxg);
        } else {
          std::fill(dxg, dxg + icg * ihw, T(0));
          col2im(g, dcol, dxg);
        }
      }
  });
}

// dx[c][a][b] = src[(a % sh)*sw + b % sw][((a/sh)*V + b/sw)*ld + c] for one image's planes
// (icg channels of ih x iw), the phases' products (pixels x channels, V of the phase's pixels a
// row) as they come out of the GEMM; zero where a phase has no taps (its src is null). Stride
// 2 across with both phases of a row: SSE blocks of channels x pixels of each, transposed in
// registers and zipped into dx's row. Elsewhere value by value.
template <class T>
void interleave_phases(const Conv2dGeometry& g, const std::vector<Phase>& phases,
                       const T* const* src, int64_t ld, T* dx) {
  const int64_t ihw = g.ih * g.iw, icg = g.icg();
  constexpr int64_t S = kSseBlock<T>;
  int64_t c_fast = 0;  // channels [0, c_fast) of the zipped rows go through SSE blocks
  if constexpr (S > 0) {
    if (g.sw == 2 && g.iw >= 2) c_fast = icg / S * S;
  }
  for (int64_t a = 0; a < g.ih; ++a) {
    const int64_t rh = a % g.sh, u = a / g.sh;
    const bool zip = c_fast > 0 && src[rh * 2] != nullptr && src[rh * 2 + 1] != nullptr;
#if defined(__SSE2__)
    if (zip) {
      const Phase& p0 = phases[size_t(rh * 2)];
      const Phase& p1 = phases[size_t(rh * 2 + 1)];
      const T* s0 = src[rh * 2] + u * p0.w.out * ld;
      const T* s1 = src[rh * 2 + 1] + u * p1.w.out * ld;
      const int64_t pairs = p1.w.out;  // p0.w.out is pairs or pairs + 1
      const int64_t vb = pairs / S * S;
      for (int64_t c0 = 0; c0 < c_fast; c0 += S) {
        T* row = dx + c0 * ihw + a * g.iw;
        for (int64_t v = 0; v < vb; v += S) {
          typename SseVec<T>::V x0[S], x1[S];
          load_transposed(s0 + v * ld + c0, ld, x0);  // x0[c]: pixels v .. v+S-1 of channel c
          load_transposed(s1 + v * ld + c0, ld, x1);
          for (int64_t c = 0; c < S; ++c) {
            SseVec<T>::store(row + c * ihw + 2 * v, SseVec<T>::zip_lo(x0[c], x1[c]));
            SseVec<T>::store(row + c * ihw + 2 * v + S, SseVec<T>::zip_hi(x0[c], x1[c]));
          }
        }
        for (int64_t c = 0; c < S; ++c) {
          for (int64_t v = vb; v < pairs; ++v) {
            row[c * ihw + 2 * v] = s0[v * ld + c0 + c];
            row[c * ihw + 2 * v + 1] = s1[v * ld + c0 + c];
          }
          if (p0.w.out > pairs) row[c * ihw + 2 * pairs] = s0[pairs * ld + c0 + c];
        }
      }
    }
#endif
    for (int64_t c = zip ? c_fast : 0; c < icg; ++c)
      for (int64_t rw = 0; rw < g.sw && rw < g.iw; ++rw) {
        const int64_t q = rh * g.sw + rw;
        const int64_t cols = phases[size_t(q)].w.out;
        T* row = dx + c * ihw + a * g.iw + rw;
        if (src[q] == nullptr) {
          for (int64_t v = 0; v < cols; ++v) row[v * g.sw] = T(0);
          continue;
        }
        const T* s = src[q] + u * cols * ld + c;
        for (int64_t v = 0; v < cols; ++v) row[v * g.sw] = s[v * ld];
      }
  }
}

// The same for NHWC: dx[a][b][c] (one image, a group's icg channels of its ic a pixel) from the
// products, one pixel's run of icg channels at a time; no transposing.
template <class T>
void interleave_phases_nhwc(const Conv2dGeometry& g, const std::vector<Phase>& phases,
                            const T* const* src, int64_t ld, T* dx) {
  const int64_t icg = g.icg();
  for (int64_t a = 0; a < g.ih; ++a)
    for (int64_t b = 0; b < g.iw; ++b) {
      const int64_t q = (a % g.sh) * g.sw + b % g.sw;
      T* d = dx + (a * g.iw + b) * g.ic;
      if (src[q] == nullptr) {
        for (int64_t c = 0; c < icg; ++c) d[c] = T(0);
        continue;
      }
      const T* s = src[q] + ((a / g.sh) * phases[size_t(q)].w.out + b / g.sw) * ld;
      for (int64_t c = 0; c < icg; ++c) d[c] = s[c];
    }
}

// The phase decomposition (ops/phases.hpp): each phase of dx, the rows and columns of one
// residue mod the stride, is a stride-1 forward convolution of dy with a sub-kernel of w (its
// taps reversed, the roles of ic and oc swapped), computed transposed as a_in_place computes a
// forward,
//
//   P_k^T[N_k x icg] = col_k^T[N_k x K_k] * W_k^T[K_k x icg],   col_k read in place from dy's copy,
//
// with every W_k^T packed once per call straight from w through one table, in one pass over w
// (no sub-kernel is built). Each thread takes its images `batch` at a time: one padded copy of
// dy serves every phase, the phases' products stay in the thread's buffer, and one pass puts
// them into dx while they are still in cache (NCHW: transposed and interleaved; NHWC: already
// in its order, a pixel's channels copied as one run). Nothing is inserted, nothing scattered,
// and one parallel region besides the packing.
template <class T>
void backward_input_phases(const InputExec<T>& e, const T* w, const T* dy, T* dx) {
  const Conv2dGeometry& g = e.g;
  const GemmKernel<T>& kern = *e.kern;
  const int64_t icg = g.icg(), ocg = g.ocg(), khw = g.kh * g.kw;
  const int64_t ihw = g.ih * g.iw, ohw = g.oh() * g.ow();
  const bool nhwc = g.layout == Layout::nhwc;
  const int64_t nprod = int64_t(e.products.size()), B = e.batch;
  // Where each product's output starts in a thread's buffer.
  std::vector<int64_t> out_start(size_t(nprod) + 1, 0);
  for (int64_t k = 0; k < nprod; ++k)
    out_start[size_t(k) + 1] = out_start[size_t(k)] + B * e.products[size_t(k)].n * icg;
  // Every phase's W_k^T of each group, packed in one pass over w (wt_elems a group).
  Scratch packed_w(1, std::max<int64_t>(g.groups * e.wt_elems, 1) * int64_t(sizeof(T)));
  T* const wt = packed_w.get<T>(0);
  const int64_t k_all = int64_t(e.wrows.size());
  const int64_t chunks = (k_all + kWholeRows - 1) / kWholeRows;
  parallel_for(g.groups * chunks, kWholeRows * icg, [&](int64_t item) {
    const int64_t q0 = item % chunks * kWholeRows, gi = item / chunks;
    const WeightsTInOrder<T> pack{w + gi * ocg * icg * khw, khw, e.wrows.data()};
    pack.rows_all_panels(q0, std::min(k_all, q0 + kWholeRows), icg, kern.nr,
                         wt + gi * e.wt_elems);
  });

  const int64_t nthr = image_threads(g);
  Scratch work(nthr, (B * e.dyp.elems + out_start[size_t(nprod)]) * int64_t(sizeof(T)));
  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t begin, end;
    balance(g.mb, nt, tid, begin, end);
    T* const xp = work.get<T>(tid);  // B copies of dy, dyp.elems apart
    T* const out = xp + B * e.dyp.elems;
    std::vector<const T*> src(e.phases.size());  // an image's product of each phase, or null
    for (int64_t n0 = begin; n0 < end; n0 += B) {
      const int64_t cnt = std::min(B, end - n0);
      // NHWC: one copy of every channel of an image (rows of ow*oc values placed as a plane).
      for (int64_t i = 0; nhwc && i < cnt; ++i) {
        T* d = xp + i * e.dyp.elems;
        place_plane(dy + (n0 + i) * ohw * g.oc, g.oh(), g.ow() * g.oc, e.dyp_g.pt,
                    e.dyp_g.pl * g.oc, e.dyp.hp, e.dyp.wp * g.oc, d, true);
        std::fill(d + e.dyp.hp * e.dyp.wp * g.oc, d + e.dyp.elems, T(0));
      }
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        for (int64_t i = 0; !nhwc && i < cnt; ++i)
          e.dyp.fill(e.dyp_g, dy + ((n0 + i) * g.oc + gi * ocg) * ohw, xp + i * e.dyp.elems);
        for (int64_t k = 0; k < nprod; ++k) {
          const auto& pr = e.products[size_t(k)];
          const DirectA<T> col_t{nhwc ? xp + gi * ocg : xp, pr.pix.data(), pr.taps.data(),
                                 pr.pix_run.empty() ? nullptr : pr.pix_run.data()};
          const PrepackedB<T> wk{&kern, wt + gi * e.wt_elems + pr.wt_start, icg};
          gemm_driver<T>(kern, cnt * pr.n, icg, pr.k, T(1), col_t, wk, T(0),
                         out + out_start[size_t(k)], icg);
        }
        for (int64_t i = 0; i < cnt; ++i) {
          std::fill(src.begin(), src.end(), nullptr);
          for (int64_t k = 0; k < nprod; ++k) {
            const auto& pr = e.products[size_t(k)];
            src[pr.phase] = out + out_start[size_t(k)] + i * pr.n * icg;
          }
          if (nhwc)
            interleave_phases_nhwc(g, e.phases, src.data(), icg,
                                   dx + (n0 + i) * ihw * g.ic + gi * icg);
          else
            interleave_phases(g, e.phases, src.data(), icg,
                              dx + ((n0 + i) * g.ic + gi * icg) * ihw);
        }
      }
    }
  });
}

// The weight gradient transposed, with col read in place from the padded image (any stride):
//
//   dW_g^T[K x ocg] (+)= col[K x N] * dY_g^T[N x ocg],   col[p][j] = xp[tap_offset(p) + pix(j)]
//
// (DirectA: no transposing pack of col, the costly part of the other orientation; dY^T is
// packed, which is 1/K of the work). Partial sums over fixed chunks of images as in
// conv2d_backward_weight, transposed into dw at the end in chunk order; with one chunk and no
// accumulation, by the last image's product as it finishes each block.
template <class T>
void backward_weight_in_place_a(const WeightExec<T>& e, const T* x, const T* dy, T* dw,
                                bool accumulate) {
  const Conv2dGeometry& g = e.g;
  const int64_t chunks = e.chunks;
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t ihw = g.ih * g.iw, wsize = g.wei_size();
  const PaddedImage& pi = e.pi;
  Scratch partial(chunks, wsize * int64_t(sizeof(T)));
  Scratch padded(chunk_threads(chunks), pi.elems * int64_t(sizeof(T)));
  const int64_t* row_off = e.row_off.data();
  const int64_t* k_off = e.k_off.data();

  // One chunk on one thread while the work is worth more: each image's product is split among
  // the threads by the driver, and so is its padded copy here (one thread copying res3x3c256's
  // 256 channels while the other waited took 6 % of its weight gradient).
  const int64_t copy_threads = chunk_threads(chunks) == 1 ? image_threads(g) : 1;
  // With one chunk and nothing to add to, dW^T needs only transposing into dw: done by the last
  // image's product, block by block, instead of a pass over the whole of it afterwards.
  const bool in_epilogue = chunks == 1 && !accumulate && g.mb > 0;
  for_each_image_chunk(g, chunks, [&](int64_t c, int64_t begin, int64_t end, int64_t tid) {
    T* xp = padded.get<T>(tid);
    T* sum = partial.get<T>(c);  // [groups][K][ocg]
    for (int64_t n = begin; n < end; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = x + (n * g.ic + gi * icg) * ihw;
        parallel(copy_threads, [&](int64_t t, int64_t nt) {
          int64_t c0, c1;
          balance(icg, nt, t, c0, c1);
          pi.fill_channels(g, xg, xp, c0, c1);
        });
        const DirectA<T> col{xp, row_off, k_off};
        const MatrixPackB<T> dyt(true, dy + (n * g.oc + gi * ocg) * N, N);
        T* const sum_g = sum + gi * K * ocg;
        const T beta = n == begin ? T(0) : T(1);
        if (in_epilogue && n + 1 == end) {
          // The last image's product finishes each block of dW_g^T: into dw while in cache.
          const TransposeBiasActivation<T> to_dw{sum_g, ocg, dw + gi * ocg * K, K, K, K,
                                                 nullptr, Activation::identity, e.kern};
          gemm_driver<T>(*e.kern, K, ocg, N, T(1), col, dyt, beta, sum_g, ocg, to_dw);
        } else {
          gemm_driver<T>(*e.kern, K, ocg, N, T(1), col, dyt, beta, sum_g, ocg);
        }
      }
  });
  if (in_epilogue) return;
  // dw[gi*ocg + o][p] = (accumulate ? dw : 0) + the chunks' sums in order.
  add_transposed_chunks(g, chunks, partial, dw, accumulate, [](int64_t q) { return q; });
}

// dW_g[ocg x K] (+)= dY_g[ocg x N] * col^T[N x K], col^T packed from the image.
template <class T>
void backward_weight_packed(const WeightExec<T>& e, const T* x, const T* dy, T* dw,
                            bool accumulate) {
  const Conv2dGeometry& g = e.g;
  const int64_t wsize = g.wei_size();
  const int64_t K = g.col_rows(), N = g.col_cols(), icg = g.icg(), ocg = g.ocg();
  const int64_t ihw = g.ih * g.iw;
  const int64_t chunks = e.chunks;
  if (chunks == 1) {
    // One chunk: dw's columns split among the threads in whole panels, each thread summing every
    // image into its columns: dY_n packed once per image (prepack_a), col^T packed one
    // L2-sized block of columns at a time. One parallel region, no partial sums, and every
    // element summed over the images in order by one thread: the same bits for any thread count.
    const GemmKernel<T>& kern = *e.kern;
    const int64_t nr = kern.nr, panels = (K + nr - 1) / nr;
    const int64_t block = gemm_nc_for_l2(gemm_kc_step(N, kern.kc), nr, kern.nc, sizeof(T));
    const int64_t nthr = std::min<int64_t>(panels, get_num_threads());
    Scratch apack(nthr, prepacked_a_elems(kern, ocg, N) * int64_t(sizeof(T)));
    parallel(nthr, [&](int64_t tid, int64_t nt) {
      int64_t pb, pe;
      balance(panels, nt, tid, pb, pe);
      const int64_t jb = pb * nr, je = std::min(pe * nr, K);
      for (int64_t gi = 0; gi < g.groups; ++gi)
        for (int64_t n = 0; n < g.mb; ++n) {
          const PrepackedA<T> a = prepack_a(
              kern, ocg, N, MatrixPackA<T>(false, dy + (n * g.oc + gi * ocg) * N, N),
              apack.get<T>(tid));
          for (int64_t jc = jb; jc < je; jc += block)
            gemm_region<T>(kern, 0, ocg, jc, std::min(je, jc + block), N, T(1), a,
                           Im2colTransPackB<T>{g, x + (n * g.ic + gi * icg) * ihw},
                           n == 0 && !accumulate ? T(0) : T(1), dw + gi * ocg * K, K,
                           NoEpilogue());
        }
    });
    return;
  }
  const int64_t nthr = std::max<int64_t>(1, std::min<int64_t>(chunks, get_num_threads()));
  Scratch partial(chunks, wsize * int64_t(sizeof(T)));

  parallel(nthr, [&](int64_t tid, int64_t nt) {
    int64_t c_begin, c_end;
    balance(chunks, nt, tid, c_begin, c_end);
    for (int64_t c = c_begin; c < c_end; ++c) {
      T* sum = partial.get<T>(c);
      int64_t begin, end;
      balance(g.mb, chunks, c, begin, end);
      for (int64_t n = begin; n < end; ++n)
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          const bool first = n == begin;
          // dW_g[ocg x K] (+)= dY_g[ocg x N] * col^T[N x K], col^T packed from the image.
          gemm_driver<T>(*e.kern, ocg, K, N, T(1),
                                 MatrixPackA<T>(false, dy + (n * g.oc + gi * ocg) * N, N),
                                 Im2colTransPackB<T>{g, x + (n * g.ic + gi * icg) * ihw},
                                 first ? T(0) : T(1), sum + gi * ocg * K, K);
        }
    }
  });
  // dw = (accumulate ? dw : 0) + partial[0] + partial[1] + ..., in that order for every element;
  // chunk by chunk over a cache-sized block, so that the additions vectorise.
  parallel_for((wsize + 4095) / 4096, 4096 * chunks, [&](int64_t blk) {
    const int64_t begin = blk * 4096, end = std::min(wsize, begin + 4096);
    if (!accumulate) std::fill(dw + begin, dw + end, T(0));
    for (int64_t c = 0; c < chunks; ++c) {
      const T* part = partial.get<T>(c);
      for (int64_t i = begin; i < end; ++i) dw[i] += part[i];
    }
  });
}

}  // namespace

// Weight-gradient partial sums are formed over fixed chunks of images (the chunking depends on
// the geometry only) and added in chunk order: the same bits for any thread count.
constexpr int64_t kMaxWeightChunks = 8;
constexpr int64_t kMaxWeightChunkBytes = int64_t{64} << 20;

bool weight_columns_split(const Conv2dGeometry& g, int64_t nr) {
  return g.col_rows() / nr + (g.col_rows() % nr != 0) >= 2 * kMaxWeightChunks;  // no overflow
}

int64_t weight_chunks(const Conv2dGeometry& g, int64_t elem_size) {
  // As many chunks as the work is worth threads, and no more than the machine has CPUs: the
  // threads take the chunks in turn, so more would only add partial sums to read back. (A
  // function of the geometry and the machine, not of the threads set.)
  const int64_t per_image = work_mul(work_mul(g.oc, g.col_rows()), g.col_cols());
  const int64_t cpus = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  int64_t chunks = std::min({threads_for_work(g.mb, per_image), kMaxWeightChunks, cpus});
  const int64_t bytes = work_mul(g.wei_size(), elem_size);
  while (chunks > 1 && bytes > kMaxWeightChunkBytes / chunks) --chunks;
  // A chunk's partial sums are accumulated image after image by one thread, in its core's L2;
  // past it they come from further out, and one chunk (each image's product split among the
  // threads) costs less.
  if (double(bytes) > l2_cache_bytes()) chunks = 1;
  return std::max<int64_t>(chunks, 1);
}

template <class T>
void backward_input_col2im_nhwc_dy(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                   const T* dy, T* dx) {
  backward_input_col2im(kern, g, w, dy, dx, true);
}
template void backward_input_col2im_nhwc_dy<float>(const GemmKernel<float>&, const Conv2dGeometry&,
                                                   const float*, const float*, float*);
template void backward_input_col2im_nhwc_dy<double>(const GemmKernel<double>&,
                                                    const Conv2dGeometry&, const double*,
                                                    const double*, double*);

template <class T>
InputExec<T>::InputExec(const Conv2dGeometry& geometry, InputPath p, const GemmKernel<T>& k,
                        ForwardPath flipped_path)
    : g(geometry), path(p), kern(&k) {
  if (path == InputPath::flip) {
    flipped = std::make_unique<ForwardExec<T>>(g.flipped(), flipped_path, k);
    // Where the flipped forward packs W_f^T through a table, the table reads the layer's w:
    // K index q = o*khw + t of a row of W_f (nhwc_in_place: after its own order) is w's value
    // at o*icg*khw + (khw-1-t) from filter c's start, the filters khw apart; W_f is never made.
    const ForwardPath fp = flipped->path;
    flip_in_pack = fp == ForwardPath::a_in_place || fp == ForwardPath::a_wide ||
                   fp == ForwardPath::nhwc_in_place;
    if (flip_in_pack) {
      const int64_t khw = g.kh * g.kw, kf = flipped->g.col_rows();
      std::vector<int64_t>& col = flipped->wcol;
      if (col.empty()) {
        col.resize(size_t(kf));
        for (int64_t q = 0; q < kf; ++q) col[size_t(q)] = q;
      }
      for (int64_t& q : col) q = q / khw * g.icg() * khw + (khw - 1 - q % khw);
      flipped->wrows = panel_rows(k, col, flipped->g.ocg());
      flipped->wld = khw;
    }
  }
  if (path == InputPath::nhwc_via_nchw) nchw = nchw_twin_input(g, k);
  if (path != InputPath::phases) return;
  phases = input_phases(g);
  dyp_g = phase_copy_geometry(g, phase_copy_padding(phases));
  dyp = PaddedImage::of<T>(dyp_g);
  const bool nhwc = g.layout == Layout::nhwc;
  if (nhwc) dyp.elems = PaddedImage::elems_for<T>(g.oc * dyp.hp * dyp.wp);  // every channel
  const int64_t khw = g.kh * g.kw, ocg = g.ocg();
  for (size_t q = 0; q < phases.size(); ++q) {
    const Phase& ph = phases[q];
    if (!ph.has_taps()) continue;
    const Conv2dGeometry& f = ph.g;
    PhaseProduct pr{q, f.col_rows(), f.col_cols(), {}, {}, {}, wt_elems};
    // Pixel (u, v) of the phase reads its window from row u + top - pt, column v + left - pl of
    // the copy; its K index, (o, m, n) in NCHW and (m, n, o) in NHWC, is dy's channel o, tap
    // (m, n) of the sub-kernel, whose value is w[o][c][r0h + (mh-1-m)*th][r0w + (mw-1-n)*tw]
    // for dx channel c (taps reversed).
    pr.taps.resize(size_t(pr.k));
    std::vector<int64_t> wcol(size_t(pr.k));
    for (int64_t p = 0; p < pr.k; ++p) {
      const Tap t = nhwc ? Tap{p % ocg, p / ocg / f.kw, p / ocg % f.kw} : Tap::of(f, p);
      pr.taps[size_t(p)] = nhwc ? (t.r * f.dh * dyp.wp + t.s * f.dw) * g.oc + t.c
                                : (t.c * dyp.hp + t.r * f.dh) * dyp.wp + t.s * f.dw;
      wcol[size_t(p)] = t.c * g.icg() * khw +
                        (ph.h.first + (f.kh - 1 - t.r) * ph.h.step) * g.kw + ph.w.first +
                        (f.kw - 1 - t.s) * ph.w.step;
    }
    for (PanelRow r : panel_rows(k, wcol, g.icg())) {
      r.row += pr.wt_start;
      wrows.push_back(r);
    }
    wt_elems += prepacked_b_elems(k, pr.k, g.icg());
    products.push_back(std::move(pr));
  }
  std::stable_sort(wrows.begin(), wrows.end(),
                   [](const PanelRow& a, const PanelRow& b) { return a.col < b.col; });
  batch = phases_batch(g, phases, k.mc, int64_t(sizeof(T)));
  for (PhaseProduct& pr : products) {
    const Conv2dGeometry& f = phases[pr.phase].g;
    const int64_t r0 = dyp_g.pt - f.pt, c0 = dyp_g.pl - f.pl, V = f.ow();
    pr.pix.resize(size_t(batch * pr.n));
    const int64_t px = nhwc ? g.oc : 1;  // between the copy's pixels
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t j = 0; j < pr.n; ++j)
        pr.pix[size_t(i * pr.n + j)] = i * dyp.elems + ((j / V + r0) * dyp.wp + j % V + c0) * px;
    if (!nhwc) pr.pix_run = consecutive_runs(pr.pix.data(), int64_t(pr.pix.size()));
  }
}

template <class T>
void InputExec<T>::run(const T* w, const T* dy, T* dx) const {
  if (g.mb == 0) return;
  switch (path) {
    case InputPath::flip: return backward_input_flip(*this, w, dy, dx);
    case InputPath::col2im:
      if (g.layout == Layout::nhwc) return backward_input_col2im_nhwc(*kern, g, w, dy, dx);
      return backward_input_col2im(*kern, g, w, dy, dx);
    case InputPath::phases: return backward_input_phases(*this, w, dy, dx);
    case InputPath::depthwise: return depthwise_backward_input(*kern->loops, g, w, dy, dx);
    case InputPath::nhwc_depthwise: return depthwise_backward_input_nhwc(*kern, g, w, dy, dx);
    case InputPath::nhwc_spread: return spread_backward_input_nhwc(*kern, g, w, dy, dx);
    case InputPath::nhwc_via_nchw: return backward_input_via_nchw(*this, w, dy, dx);
  }
}

template <class T>
WeightExec<T>::WeightExec(const Conv2dGeometry& geometry, WeightPath p, const GemmKernel<T>& k)
    : g(geometry),
      path(p),
      kern(&k),
      chunks(p == WeightPath::packed && weight_columns_split(geometry, k.nr)
                 ? 1
                 : weight_chunks(geometry, sizeof(T))) {
  prepare_nhwc(*this);
  if (path == WeightPath::nhwc_via_nchw) nchw = nchw_twin_weight(g, k);
  if (path != WeightPath::a_in_place) return;
  pi = PaddedImage::of<T>(g);
  row_off = pi.tap_offsets(g);
  k_off = pi.pixel_offsets(g);
}

template <class T>
void WeightExec<T>::run(const T* x, const T* dy, T* dw, bool accumulate) const {
  if (g.mb == 0) {  // an empty sum: zero, or nothing to add
    if (!accumulate) std::fill(dw, dw + g.wei_size(), T(0));
    return;
  }
  switch (path) {
    case WeightPath::a_in_place: return backward_weight_in_place_a(*this, x, dy, dw, accumulate);
    case WeightPath::packed: return backward_weight_packed(*this, x, dy, dw, accumulate);
    case WeightPath::depthwise:
      return depthwise_backward_weight(*kern->loops, g, x, dy, dw, accumulate);
    case WeightPath::nhwc_in_place: return backward_weight_nhwc(*this, x, dy, dw, accumulate);
    case WeightPath::nhwc_depthwise:
      return depthwise_backward_weight_nhwc(*kern, g, chunks, x, dy, dw, accumulate);
    case WeightPath::nhwc_spread:
      return spread_backward_weight_nhwc(*kern, g, chunks, x, dy, dw, accumulate);
    case WeightPath::nhwc_via_nchw: return backward_weight_via_nchw(*this, x, dy, dw, accumulate);
  }
}

template <class T>
void backward_bias_run(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate) {
  // One channel is the same memory in both layouts: the NCHW sums (and their bits).
  if (g.layout == Layout::nhwc && g.oc > 1) return backward_bias_nhwc(g, dy, db, accumulate);
  const int64_t N = g.oh() * g.ow();
  // kLanes running sums, each over a fixed subset of the positions, so that the loop vectorises
  // (one running sum is a chain of dependent additions) and the bits do not depend on threads.
  constexpr int64_t kLanes = 16;
  parallel_for(g.oc, g.mb * N, [&](int64_t o) {
    T acc[kLanes] = {};
    for (int64_t n = 0; n < g.mb; ++n) {
      const T* row = dy + (n * g.oc + o) * N;
      int64_t p = 0;
      for (; p + kLanes <= N; p += kLanes)
        for (int64_t t = 0; t < kLanes; ++t) acc[t] += row[p + t];
      for (int64_t t = 0; p + t < N; ++t) acc[t] += row[p + t];
    }
    for (int64_t half = kLanes / 2; half > 0; half /= 2)
      for (int64_t t = 0; t < half; ++t) acc[t] += acc[t + half];
    db[o] = accumulate ? db[o] + acc[0] : acc[0];
  });
}

template struct InputExec<float>;
template struct InputExec<double>;
template struct WeightExec<float>;
template struct WeightExec<double>;
template void backward_bias_run<float>(const Conv2dGeometry&, const float*, float*, bool);
template void backward_bias_run<double>(const Conv2dGeometry&, const double*, double*, bool);

}  // namespace detail

namespace {
PlanOptions method_options(BackwardInputMethod method) {
  PlanOptions opt;
  if (method == BackwardInputMethod::flip) opt.backward_input = "flip";
  if (method == BackwardInputMethod::col2im) opt.backward_input = "col2im";
  return opt;
}
}  // namespace

// The free functions: a plan made and run once.
template <class T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* w, const T* dy, T* dx,
                           BackwardInputMethod method) {
  Conv2dPlan<T>(g, method_options(method)).backward_input(w, dy, dx);
}

template <class T>
void conv2d_backward_weight(const Conv2dGeometry& g, const T* x, const T* dy, T* dw,
                            bool accumulate) {
  Conv2dPlan<T>(g).backward_weight(x, dy, dw, accumulate);
}

// The bias gradient needs no path choice: the geometry checked, then the sums (a whole plan would
// weigh every path of the three products, several times the sums' cost on a small layer).
template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate) {
  g.validate("conv2d_backward_bias");
  detail::backward_bias_run(g, dy, db, accumulate);
}

#define CONVCORE_INSTANTIATE(T)                                                                 \
  template void conv2d_backward_input<T>(const Conv2dGeometry&, const T*, const T*, T*,         \
                                         BackwardInputMethod);                                  \
  template void conv2d_backward_weight<T>(const Conv2dGeometry&, const T*, const T*, T*, bool); \
  template void conv2d_backward_bias<T>(const Conv2dGeometry&, const T*, T*, bool);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore
