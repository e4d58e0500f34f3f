#pragma once
// The weight gradient's fixed image chunks (weight_chunks, exec.hpp), shared by the in-place paths
// of both layouts: partial sums per chunk, then the chunks added in order into dw, so that the
// bits do not depend on the thread count.
#include <algorithm>
#include <cstdint>

#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"
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
// partials [groups][K][ocg] at K index k_of(q) (the layout's order of the im2col rows).
template <class T, class KOf>
void add_transposed_chunks(const Conv2dGeometry& g, int64_t chunks, const Scratch& partial,
                           T* dw, bool accumulate, KOf k_of) {
  const int64_t K = g.col_rows(), ocg = g.ocg();
  parallel_for(g.oc, K * chunks, [&](int64_t row) {
    const int64_t gi = row / ocg, o = row % ocg;
    for (int64_t q = 0; q < K; ++q) {
      T s = accumulate ? dw[row * K + q] : T(0);
      const int64_t at = (gi * K + k_of(q)) * ocg + o;
      for (int64_t c = 0; c < chunks; ++c) s += partial.get<T>(c)[at];
      dw[row * K + q] = s;
    }
  });
}

}  // namespace convcore::detail
