#pragma once
// Packing of GEMM operands into micro-panels. Transposition and the zero-fill of edge panels
// happen here and nowhere else, so the driver and the micro-kernels see one layout only.
//
// Both operands are packed by one routine. It reads a logical matrix X[r][p] (r: the m or n
// index, p: the k index) through two strides and writes panels of w consecutive r:
//
//   dst[r / w][p][r % w] <- X[r][p] = src[r*rs + p*ps],    r in [0, rows), p in [0, kc)
//
// rows are padded with zeros up to a multiple of w. For op(A) (w = MR), X = op(A) with
// (rs, ps) = (lda, 1), or (1, lda) when transposed; for op(B) (w = NR), X = op(B)^T with
// (rs, ps) = (1, ldb), or (ldb, 1) when transposed.
#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gemm/sse_transpose.hpp"

namespace convcore::detail {

// Sources up to this size are assumed to be in cache (L2) when packed.
constexpr int64_t kPackInCacheBytes = 256 * 1024;

// Whether pack_panels_w transposes a panel of width w in SSE blocks (x86-64): w a multiple of the
// block's side (4 floats, 2 doubles), or for float two more (a 6-row tile's panels: 4 x 4 blocks,
// then 2 x 4).
template <class T>
constexpr bool transposes_in_sse(int64_t w) {
  constexpr int64_t B = kSseBlock<T>;
  if constexpr (B == 0) {
    return false;
  } else {
    return w % B == 0 || (B == 4 && w % B == 2);
  }
}

// d[p*w + r] = s[r*rs + p] for r < w, p < kc: one panel, in SSE blocks where transposes_in_sse,
// the last kc % block values of each row one by one.
template <class T>
void transpose_panel(int64_t w, int64_t kc, const T* s, int64_t rs, T* d) {
  assert(transposes_in_sse<T>(w) || kSseBlock<T> == 0);
  int64_t p = 0;
  if constexpr (kSseBlock<T> > 0) {
    constexpr int64_t B = kSseBlock<T>;
    const int64_t whole = w / B * B;
    for (; p + B <= kc; p += B) {
      for (int64_t r = 0; r < whole; r += B)
        transpose_block_sse(s + r * rs + p, rs, d + p * w + r, w);
      if constexpr (B == 4) {
        if (whole < w) transpose_2x4_sse(s + whole * rs + p, rs, d + p * w + whole, w);
      }
    }
  }
  for (; p < kc; ++p)
    for (int64_t r = 0; r < w; ++r) d[p * w + r] = s[r * rs + p];
}

// W > 0: the panel width known at compile time (w must equal W); W == 0: any w.
template <int W, class T>
void pack_panels_w(int64_t w_rt, int64_t rows, int64_t kc, const T* src, int64_t rs, int64_t ps,
                   T* dst) {
  assert(W == 0 || w_rt == W);
  assert(w_rt > 0 && rows >= 0 && kc >= 0);
  const int64_t w = W > 0 ? W : w_rt;
  const int64_t full = rows / w, panel = w * kc;
  if (rs == 1) {
    // Each p gives w contiguous values per panel: fixed-size copies. A source that is likely in
    // cache is read panel by panel, so each panel is written in order; a large one is swept row
    // by row, which the hardware prefetcher follows (about 2x faster each way, measured).
    const std::size_t bytes = static_cast<std::size_t>(w) * sizeof(T);
    if (rows * kc * static_cast<int64_t>(sizeof(T)) <= kPackInCacheBytes) {
      for (int64_t q = 0; q < full; ++q)
        for (int64_t p = 0; p < kc; ++p)
          std::memcpy(dst + q * panel + p * w, src + p * ps + q * w, bytes);
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t q = 0; q < full; ++q)
          std::memcpy(dst + q * panel + p * w, src + p * ps + q * w, bytes);
    }
  } else if (ps == 1 && W > 0 && transposes_in_sse<T>(W)) {
    // A transpose in SSE registers (the x86-64 baseline), 4 x 4 floats or 2 x 2 doubles at a
    // time: the rows' next values in, each p's consecutive r's out.
    for (int64_t q = 0; q < full; ++q)
      transpose_panel(W, kc, src + q * W * rs, rs, dst + q * panel);
  } else if (ps == 1 && W > 0) {
    // A transpose: w rows, each contiguous along p. A cache line of each row at a time goes
    // through a small tile, so that both the reads and the writes are contiguous runs the
    // compiler turns into vector moves (about 2x the element-by-element gather, measured).
    constexpr int64_t kRun = 64 / static_cast<int64_t>(sizeof(T));
    for (int64_t q = 0; q < full; ++q) {
      const T* s = src + q * W * rs;
      T* d = dst + q * panel;
      int64_t p = 0;
      for (; p + kRun <= kc; p += kRun) {
        T tile[W > 0 ? W : 1][kRun];
        for (int64_t r = 0; r < W; ++r) std::memcpy(tile[r], s + r * rs + p, sizeof(tile[r]));
        for (int64_t pp = 0; pp < kRun; ++pp)
          for (int64_t r = 0; r < W; ++r) d[(p + pp) * W + r] = tile[r][pp];
      }
      for (; p < kc; ++p)
        for (int64_t r = 0; r < W; ++r) d[p * W + r] = s[r * rs + p];
    }
  } else {
    // Gathers w rows at a time (for ps == 1, w sequential streams) and writes each panel in
    // order; writing one r at a time with stride w is several times slower.
    for (int64_t q = 0; q < full; ++q)
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t r = 0; r < w; ++r)
          dst[q * panel + p * w + r] = src[(q * w + r) * rs + p * ps];
  }
  // The edge panel: rows past the end are zero.
  const int64_t rv = rows - full * w;
  if (rv > 0) {
    const T* s = src + full * w * rs;
    T* d = dst + full * panel;
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t r = 0; r < rv; ++r) d[p * w + r] = s[r * rs + p * ps];
      for (int64_t r = rv; r < w; ++r) d[p * w + r] = T(0);
    }
  }
}

// Packs with a fixed-width body for the panel widths the kernel table uses (every MR and NR).
template <class T>
void pack_panels(int64_t w, int64_t rows, int64_t kc, const T* src, int64_t rs, int64_t ps,
                 T* dst) {
  switch (w) {
    case 4: pack_panels_w<4>(w, rows, kc, src, rs, ps, dst); break;
    case 6: pack_panels_w<6>(w, rows, kc, src, rs, ps, dst); break;
    case 8: pack_panels_w<8>(w, rows, kc, src, rs, ps, dst); break;
    case 12: pack_panels_w<12>(w, rows, kc, src, rs, ps, dst); break;
    case 16: pack_panels_w<16>(w, rows, kc, src, rs, ps, dst); break;
    case 24: pack_panels_w<24>(w, rows, kc, src, rs, ps, dst); break;
    case 32: pack_panels_w<32>(w, rows, kc, src, rs, ps, dst); break;
    case 64: pack_panels_w<64>(w, rows, kc, src, rs, ps, dst); break;
    default: pack_panels_w<0>(w, rows, kc, src, rs, ps, dst); break;
  }
}

// pack_a for a plain matrix: op(A)[i][p] = a[i*lda + p], or a[p*lda + i] when transposed.
template <class T>
struct MatrixPackA {
  const T* a;
  int64_t rs, ps;
  MatrixPackA(bool trans, const T* a_, int64_t lda)
      : a(a_), rs(trans ? 1 : lda), ps(trans ? lda : 1) {}
  // Rows [i0, i0+mc) and columns [p0, p0+kc) of op(A), in MR-row panels.
  void operator()(int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t mr, T* dst) const {
    pack_panels(mr, mc, kc, a + i0 * rs + p0 * ps, rs, ps, dst);
  }
};

// pack_b for a plain matrix: op(B)[p][j] = b[p*ldb + j], or b[j*ldb + p] when transposed.
template <class T>
struct MatrixPackB {
  const T* b;
  int64_t rs, ps;  // strides along j and along p
  MatrixPackB(bool trans, const T* b_, int64_t ldb)
      : b(b_), rs(trans ? ldb : 1), ps(trans ? 1 : ldb) {}
  // Rows [p0, p0+kc) and columns [j0, j0+nc) of op(B), in NR-column panels.
  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst) const {
    pack_panels(nr, nc, kc, b + j0 * rs + p0 * ps, rs, ps, dst);
  }
};

// A row p of a prepacked B (prepack_panels' layout) for WeightsTInOrder: its place `col` in a
// filter, and where it lies: dst + row + j0 * kc for the panel at column j0, kc the rows of its
// kc block (gemm_driver.hpp's panel_rows makes them).
struct PanelRow {
  int64_t col, row, kc;
};

// pack_b for W^T read through a table of its weights' places, op(B)[p][j] = w[j*ld + place(p)]:
// W^T of a forward whose K index is not w's own order (the NHWC forward's (r, s, c), the flipped
// forward's rot180 taps of the layer's w; ops/exec.hpp), no reordered copy of w made first.
// rows_all_panels packs rows of every kc block at once (prepack_b_whole), the K indices in
// `rows` (panel_rows: by increasing place), so that the filters' weights are read in memory
// order: block by block, the NHWC forward's order reads them nine apart, and again for each
// block; the flipped forward's, a filter's taps backwards.
template <class T>
struct WeightsTInOrder {
  const T* w;
  int64_t ld;  // between the weights of consecutive filters j
  const PanelRow* rows;

  // Rows [q0, q1) of the table (its K indices in w's memory order) in every panel of the n
  // columns, in prepack_panels' layout (each row p at dst + rows[p].row + j0 * rows[p].kc in
  // the panel at column j0). Where kSseBlock consecutive rows have consecutive places (a
  // channel's taps), their columns are gathered as kSseBlock x kSseBlock blocks transposed
  // through SSE registers. A row, or a run of them, is read across all the filters before the
  // next, so that w is read about in memory order whatever ld is (a filter's taps in the
  // flipped forward, whole filters in the NHWC forward).
  void rows_all_panels(int64_t q0, int64_t q1, int64_t n, int64_t nr, T* dst) const {
    constexpr int64_t B = kSseBlock<T>;
    const auto run = [&](int64_t q) {  // kSseBlock consecutive places from rows[q] on
      bool r = B > 0 && q + B <= q1;
      for (int64_t i = 1; r && i < B; ++i) r = rows[q + i].col == rows[q].col + i;
      return r;
    };
    for (int64_t q = q0; q < q1;) {
      const bool block = run(q);
      for (int64_t j0 = 0; j0 < n; j0 += nr) {
        const int64_t jn = std::min(nr, n - j0);
        const T* wj = w + j0 * ld;
        const auto row = [&](int64_t p) { return dst + rows[p].row + j0 * rows[p].kc; };
        if (!block) {
          T* dp = row(q);
          const T* src = wj + rows[q].col;
          for (int64_t j = 0; j < jn; ++j) dp[j] = src[j * ld];
          for (int64_t j = jn; j < nr; ++j) dp[j] = T(0);
          continue;
        }
#if defined(__SSE2__)
        const int64_t c0 = rows[q].col;
        T* dp[B];
        for (int64_t i = 0; i < B; ++i) dp[i] = row(q + i);
        int64_t j = 0;
        for (; j + B <= jn; j += B) {
          typename SseVec<T>::V v[B];
          load_transposed(wj + j * ld + c0, ld, v);
          for (int64_t i = 0; i < B; ++i) SseVec<T>::store(dp[i] + j, v[i]);
        }
        for (int64_t i = 0; i < B; ++i) {
          for (int64_t jj = j; jj < jn; ++jj) dp[i][jj] = wj[jj * ld + c0 + i];
          for (int64_t jj = jn; jj < nr; ++jj) dp[i][jj] = T(0);
        }
#endif
      }
      q += block ? B : 1;
    }
  }
};

// pack_b for W read through a table of its columns' places, op(B)[p][j] = w[p*ld + col[j]]
// (NHWC col2im's product, W with its K index in the NHWC order), gathered value by value, one
// kc block of a panel at a time (prepack_b), in parallel with the other panels.
template <class T>
struct WeightsInOrder {
  const T* w;
  int64_t ld;  // between rows p
  const int64_t* col;

  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst) const {
    for (int64_t q = 0; q * nr < nc; ++q) {
      T* d = dst + q * nr * kc;
      const int64_t jb = j0 + q * nr, jn = std::min(nr, nc - q * nr);
      for (int64_t p = 0; p < kc; ++p) {
        T* dp = d + p * nr;
        const T* src = w + (p0 + p) * ld;
        for (int64_t j = 0; j < jn; ++j) dp[j] = src[col[jb + j]];
        for (int64_t j = jn; j < nr; ++j) dp[j] = T(0);
      }
    }
  }
};

}  // namespace convcore::detail
