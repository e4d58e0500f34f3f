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

// dw[gi*ocg + o][q_of(k)] = (accumulate ? dw : 0) + the chunks' sums, in chunk order, of the
// transposed partials [groups][K][ocg] at row k (q_of maps the layout's order of the im2col rows
// to dw's). The partials are read row after row. Where the baseline has SSE, square blocks of B
// rows k x B rows of dw: the chunks' B-value runs along o added in registers (each element's sum
// in the same order), the block transposed into dw once, as one vector per row of dw where the
// B values of q are consecutive, value by value otherwise; the rows past whole blocks one value
// at a time.
template <class T, class QOf>
void add_transposed_chunks(const Conv2dGeometry& g, int64_t chunks, const Scratch& partial,
                           T* dw, bool accumulate, QOf q_of) {
  const int64_t K = g.col_rows(), ocg = g.ocg();
  // dw[row][q_of(k)] for k0 <= k < K, value by value.
  const auto one_row = [&](int64_t row, int64_t k0) {
    const int64_t gi = row / ocg, o = row % ocg;
    for (int64_t k = k0; k < K; ++k) {
      T* d = dw + row * K + q_of(k);
      T s = accumulate ? *d : T(0);
      const int64_t at = (gi * K + k) * ocg + o;
      for (int64_t c = 0; c < chunks; ++c) s += partial.get<T>(c)[at];
      *d = s;
    }
  };
  constexpr int64_t B = kSseBlock<T>;
  if constexpr (B > 0) {
    // Per group, ocg / B blocks of rows, then one item for the rows left over.
    const int64_t blocks = ocg / B, items = blocks + (ocg % B != 0);
    const int64_t k_blocked = K / B * B;
    parallel_for(g.groups * items, B * K * chunks, [&](int64_t item) {
      const int64_t gi = item / items, b = item % items;
      if (b == blocks) {
        for (int64_t o = blocks * B; o < ocg; ++o) one_row(gi * ocg + o, 0);
        return;
      }
      const int64_t o0 = b * B, row0 = gi * ocg + o0;
      T* const d = dw + row0 * K;
      for (int64_t k = 0; k < k_blocked; k += B) {
        int64_t q[B];
        bool run = true;  // q[i] == q[0] + i
        for (int64_t i = 0; i < B; ++i) {
          q[i] = q_of(k + i);
          run = run && q[i] == q[0] + i;
        }
        alignas(16) T acc[B * B];  // acc[i*B + j]: row k + i, dw row row0 + j
        if (!accumulate) {
          std::fill(acc, acc + B * B, T(0));
        } else if (run) {
          transpose_block_sse(d + q[0], K, acc, B);
        } else {
          for (int64_t i = 0; i < B; ++i)
            for (int64_t j = 0; j < B; ++j) acc[i * B + j] = d[j * K + q[i]];
        }
        const int64_t at = (gi * K + k) * ocg + o0;
        for (int64_t c = 0; c < chunks; ++c) {
          const T* p = partial.get<T>(c) + at;
          for (int64_t i = 0; i < B; ++i)
            for (int64_t j = 0; j < B; ++j) acc[i * B + j] += p[i * ocg + j];
        }
        if (run) {
          transpose_block_sse(acc, B, d + q[0], K);
        } else {
          for (int64_t i = 0; i < B; ++i)
            for (int64_t j = 0; j < B; ++j) d[j * K + q[i]] = acc[i * B + j];
        }
      }
      for (int64_t j = 0; j < B; ++j) one_row(row0 + j, k_blocked);
    });
  } else {
    parallel_for(g.oc, K * chunks, [&](int64_t row) { one_row(row, 0); });
  }
}

}  // namespace convcore::detail
