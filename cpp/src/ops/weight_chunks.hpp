#pragma once
// The weight gradient's fixed image chunks (weight_chunks, exec.hpp), shared by the in-place paths
// of both layouts: partial sums per chunk, then the chunks added in order into dw, so that the
// bits do not depend on the thread count.
#include <algorithm>
#include <cstdint>

#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"
#include "gemm/sse_transpose.hpp"
#include "memory/scratch.hpp"

namespace convcore::detail {

// Threads the chunk loop runs on: no more than there are chunks.
inline int64_t chunk_threads(int64_t chunks) {
  return std::max<int64_t>(1, std::min<int64_t>(chunks, get_num_threads()));
}

// body(chunk, first image, end image, thread) for every chunk of g.mb images, the chunks shared
// among chunk_threads(chunks) threads.
template <class Body>
void for_each_image_chunk(const Conv2dGeometry& g, int64_t chunks, Body body) {
  parallel(chunk_threads(chunks), [&](int64_t tid, int64_t nt) {
    int64_t c_begin, c_end;
    balance(chunks, nt, tid, c_begin, c_end);
    for (int64_t c = c_begin; c < c_end; ++c) {
      int64_t begin, end;
      balance(g.mb, chunks, c, begin, end);
      body(c, begin, end, tid);
    }
  });
}

// dw[gi*ocg + o][q] = (accumulate ? dw : 0) + the chunks' sums, in chunk order, of the
// transposed partials [groups][K][ocg] at row k_of(q) (k_of maps dw's K index q to the layout's
// row of the im2col product). A job is a band of QB consecutive q of one group, all its rows of
// dw: the partials' rows it reads (QB of them, a few runs where k_of permutes) are read whole,
// once, and stay in L2 while the band's blocks use them. Where the baseline has SSE, square
// blocks of B consecutive q x B rows of dw: the chunks' B-value runs along o added in registers
// (each element's sum in the same order), the block transposed into dw once, one vector per row
// of dw; the values past whole blocks one at a time.
template <class T, class KOf>
void add_transposed_chunks(const Conv2dGeometry& g, int64_t chunks, const Scratch& partial,
                           T* dw, bool accumulate, KOf k_of) {
  const int64_t K = g.col_rows(), ocg = g.ocg();
  // dw[row][q] for q0 <= q < q1, value by value.
  const auto values = [&](int64_t row, int64_t q0, int64_t q1) {
    const int64_t gi = row / ocg, o = row % ocg;
    for (int64_t q = q0; q < q1; ++q) {
      T* d = dw + row * K + q;
      T s = accumulate ? *d : T(0);
      const int64_t at = (gi * K + k_of(q)) * ocg + o;
      for (int64_t c = 0; c < chunks; ++c) s += partial.get<T>(c)[at];
      *d = s;
    }
  };
  constexpr int64_t B = kSseBlock<T>;
  constexpr int64_t QB = 64;
  const int64_t bands = (K + QB - 1) / QB;
  parallel_for(g.groups * bands, QB * ocg * chunks, [&](int64_t item) {
    const int64_t gi = item / bands, q0 = item % bands * QB, q1 = std::min(K, q0 + QB);
    int64_t o_blocked = 0, q_blocked = q0;
    if constexpr (B > 0) {
      o_blocked = ocg / B * B;
      q_blocked = q0 + (q1 - q0) / B * B;
      for (int64_t q = q0; q < q_blocked; q += B) {
        int64_t at[B];  // the partials' row for dw column q + i
        for (int64_t i = 0; i < B; ++i) at[i] = (gi * K + k_of(q + i)) * ocg;
        for (int64_t o0 = 0; o0 < o_blocked; o0 += B) {
          T* const d = dw + (gi * ocg + o0) * K + q;
          alignas(16) T acc[B * B];  // acc[i*B + j]: dw column q + i, dw row o0 + j
          if (accumulate)
            transpose_block_sse(d, K, acc, B);
          else
            std::fill(acc, acc + B * B, T(0));
          for (int64_t c = 0; c < chunks; ++c) {
            const T* p = partial.get<T>(c) + o0;
            for (int64_t i = 0; i < B; ++i)
              for (int64_t j = 0; j < B; ++j) acc[i * B + j] += p[at[i] + j];
          }
          transpose_block_sse(acc, B, d, K);
        }
      }
    }
    for (int64_t o = 0; o < o_blocked; ++o) values(gi * ocg + o, q_blocked, q1);
    for (int64_t o = o_blocked; o < ocg; ++o) values(gi * ocg + o, q0, q1);
  });
}

}  // namespace convcore::detail
