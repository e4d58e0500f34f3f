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

// dw[gi*ocg + o][q] = (accumulate ? dw : 0) + the chunks' sums, in chunk order, of the transposed
// partials [groups][K][ocg] at K index k_of(q) (the layout's order of the im2col rows). Where the
// baseline has SSE, square blocks of B rows of dw x B values of q: the chunks' B-value runs along
// o added in registers (each element's sum in the same order), the block transposed into dw
// once; the rows and values past whole blocks one at a time.
template <class T, class KOf>
void add_transposed_chunks(const Conv2dGeometry& g, int64_t chunks, const Scratch& partial,
                           T* dw, bool accumulate, KOf k_of) {
  const int64_t K = g.col_rows(), ocg = g.ocg();
  // dw[row][q] for q0 <= q < K, value by value.
  const auto one_row = [&](int64_t row, int64_t q0) {
    const int64_t gi = row / ocg, o = row % ocg;
    for (int64_t q = q0; q < K; ++q) {
      T s = accumulate ? dw[row * K + q] : T(0);
      const int64_t at = (gi * K + k_of(q)) * ocg + o;
      for (int64_t c = 0; c < chunks; ++c) s += partial.get<T>(c)[at];
      dw[row * K + q] = s;
    }
  };
  constexpr int64_t B = kSseBlock<T>;
  if constexpr (B > 0) {
    // Per group, ocg / B blocks of rows, then one item for the rows left over.
    const int64_t blocks = ocg / B, items = blocks + (ocg % B != 0);
    const int64_t q_blocked = K / B * B;
    parallel_for(g.groups * items, B * K * chunks, [&](int64_t item) {
      const int64_t gi = item / items, b = item % items;
      if (b == blocks) {
        for (int64_t o = blocks * B; o < ocg; ++o) one_row(gi * ocg + o, 0);
        return;
      }
      const int64_t o0 = b * B, row0 = gi * ocg + o0;
      alignas(16) T acc[B * B];  // acc[i*B + j]: q + i, row0 + j
      for (int64_t q = 0; q < q_blocked; q += B) {
        if (accumulate)
          transpose_block_sse(dw + row0 * K + q, K, acc, B);
        else
          std::fill(acc, acc + B * B, T(0));
        for (int64_t c = 0; c < chunks; ++c) {
          const T* p = partial.get<T>(c) + gi * K * ocg + o0;
          for (int64_t i = 0; i < B; ++i) {
            const T* src = p + k_of(q + i) * ocg;
            for (int64_t j = 0; j < B; ++j) acc[i * B + j] += src[j];
          }
        }
        transpose_block_sse(acc, B, dw + row0 * K + q, K);
      }
      for (int64_t j = 0; j < B; ++j) one_row(row0 + j, q_blocked);
    });
  } else {
    parallel_for(g.oc, K * chunks, [&](int64_t row) { one_row(row, 0); });
  }
}

}  // namespace convcore::detail
