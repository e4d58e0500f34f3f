#pragma once
// The GEMM driver: cache blocking, threading and edge tiles, with the packing of each operand
// supplied by the caller. gemm() is this driver with the plain-matrix packers of pack.hpp; an
// implicit-GEMM convolution passes a pack_b that reads the image directly (im2col on the fly).
//
//   C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C,   C row-major: c[i*ldc + j]
//
// Loops (BLIS), inside the region of C owned by one thread:
//
//   for jc in [0, n) step NC                               B block  (L3)
//     for pc in [0, k) step kc                             kc <= KC, the same split for all threads
//       pack_b(pc, kc, jc, nc, NR, Bp)                     Bp: kc x nc
//       for ic in [0, m) step MC                           A block  (L2)
//         pack_a(ic, mc, pc, kc, MR, Ap)                   Ap: mc x kc
//         for jr in [0, nc) step NR                        B micro-panel (L1)
//           for ir in [0, mc) step MR
//             ukernel(kc, alpha, Ap[ir], Bp[jr], pc == 0 ? beta : 1, C[ic+ir][jc+jr])
//
// Packed layouts (the packer's contract):
//
//   Ap, mc x kc, in ceil(mc/MR) panels          Bp, kc x nc, in ceil(nc/NR) panels
//
//        p ->                                         j ->
//     +---------------+  panel 0                   +------+------+-- ... --+------+
//   i | MR x kc       |  Ap[0*kc*MR + p*MR + i]  p |  kc  |  kc  |         |  kc  |
//   | +---------------+                          | |  x   |  x   |         |  x   |
//   v | MR x kc       |  panel 1                 v |  NR  |  NR  |         |  NR  |
//     +---------------+                            +------+------+-- ... --+------+
//     :  last panel:  :                             panel 0  panel 1         last panel:
//     :  rows >= mc   :                             Bp[jp*kc*NR + p*NR + j]  columns >= nc
//     :  are zero     :                                                      are zero
//
//   pack_a(i0, mc, p0, kc, mr, dst): dst[(i/mr)*kc*mr + p*mr + i%mr] = op(A)[i0+i][p0+p]
//   pack_b(p0, kc, j0, nc, nr, dst): dst[(j/nr)*kc*nr + p*nr + j%nr] = op(B)[p0+p][j0+j]
//   for i < round_up(mc, mr), j < round_up(nc, nr), p < kc, with zeros beyond mc / nc.
//   dst is 64-byte aligned. Packers are called concurrently from several threads (each with its
//   own dst), must not throw, and must write every element of the padded panels.
//
// An epilogue, when given, is called as epilogue(i0, mc, j0, nv) once the block C[i0 .. i0+mc)
// [j0 .. j0+nv) of one B micro-panel is final (after its last kc pass), while it is still in
// cache: a bias or an activation applied there costs no extra trip through memory.
//
// A B operand read in place (DirectB below) skips pack_b: the kernel reads row p of a panel at
// base + off[p] + j, so the only packed operand is A. Likewise an A read in place (DirectA, or
// RowsA where its rows are consecutive) skips pack_a. At most one of the two is read in place. A B packed beforehand, whole
// (PrepackedB, prepack_b), skips pack_b too: for a B shared by many products, as the weights are
// by the images of a batch.
//
// Threads: C is cut into an nthr_m x nthr_n grid at multiples of MR and NR, and each thread runs
// the loops above on its part with its own packing buffers. k is never split, MC and NC are
// multiples of MR and NR, and the kc split depends on k only: every element of C is computed by
// the same kernel with the same summation order for any thread count (bitwise reproducible).
#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "gemm/pack.hpp"
#include "gemm/ukernel.hpp"

namespace convcore::detail {

// Per-thread scratch memory, 64-byte aligned, grown on demand and kept for later calls.
// The pointer stays valid until the same thread asks again.
void* gemm_workspace(std::size_t bytes);

// How C is cut among threads (gemm_driver.cpp).
struct GemmPartition {
  int64_t nthr_m, nthr_n;
};
// Threads worth starting for this product (at least 1).
int64_t gemm_max_threads(int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr);
// The grid for exactly nthr threads: nthr_m * nthr_n == nthr.
GemmPartition gemm_partition(int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr, int64_t nc,
                             int64_t nthr);
// The k split: ceil(k / KC) blocks of nearly equal size; returns the block size (<= KC).
inline int64_t gemm_kc_step(int64_t k, int64_t kc_max) {
  const int64_t blocks = (k + kc_max - 1) / kc_max;
  return (k + blocks - 1) / blocks;
}

// The B block width that keeps a kc x nc block of packed B within about half of L2.
inline int64_t gemm_nc_for_l2(int64_t kc, int64_t nr, int64_t nc_max, std::size_t elem) {
  constexpr int64_t kL2BlockBytes = 256 * 1024;
  const int64_t nc = kL2BlockBytes / (kc * static_cast<int64_t>(elem)) / nr * nr;
  return nc < nr ? nr : (nc > nc_max ? nc_max : nc);
}

// A B operand that needs no packing: op(B)[p][j] = base[off[p] + j], each row contiguous.
// The kernel reads whole NR-wide panels, so base[off[p] + j] must be readable (any value) for
// j up to n rounded up to NR; those extra columns only reach the discarded part of edge tiles.
template <class T>
struct DirectB {
  const T* base;
  const int64_t* off;  // k entries
};

// An A operand that needs no packing: op(A)[i][p] = base[row_off[i] + k_off[p]]. Optionally,
// row_run[i] (m entries, made with row_off) counts the rows from i on that follow each other in
// memory (row_off[i + t] == row_off[i] + t for t < row_run[i]): a tile whose rows all do is the
// rows-A kernel's operand (one address per k step instead of MR row pointers).
template <class T>
struct DirectA {
  const T* base;
  const int64_t* row_off;  // m entries
  const int64_t* k_off;    // k entries
  const int64_t* row_run = nullptr;
};

// row_run of DirectA for row_off[0 .. m): run[i] = 1 + run[i + 1] where row i + 1 follows row i.
inline std::vector<int64_t> consecutive_runs(const int64_t* row_off, int64_t m) {
  std::vector<int64_t> run(static_cast<std::size_t>(m), 1);
  for (int64_t i = m - 2; i >= 0; --i)
    if (row_off[i + 1] == row_off[i] + 1) run[std::size_t(i)] = run[std::size_t(i) + 1] + 1;
  return run;
}

// An A operand read in place whose rows are consecutive in memory: op(A)[i][p] = base[i + k_off[p]].
// The kernel reads whole MR-row tiles, so base[i + k_off[p]] must be readable (any value) for i
// up to m rounded up to MR; those extra rows only reach the discarded part of edge tiles.
template <class T>
struct RowsA {
  const T* base;
  const int64_t* k_off;  // k entries
};

// A B operand packed beforehand by prepack_b with the kernel kern: for each kc block of the
// driver's k split, in order, the ceil(n/NR) panels of all n columns. kern is the kernel the
// product must then use (the active one may change between the two calls).
template <class T>
struct PrepackedB {
  const GemmKernel<T>* kern;
  const T* panels;
  int64_t n;  // columns (rows, for an A operand)
};
// An A operand packed beforehand by prepack_a: for each kc block of the driver's k split, in
// order, the ceil(m/MR) panels of all m rows (the same record: the driver tells the operands
// apart by their place).
template <class T>
using PrepackedA = PrepackedB<T>;

// Elements of an operand prepacked for kern: k x extent, the extent (A's rows, B's columns)
// rounded up to whole panels of `step` (MR, NR).
inline int64_t prepacked_elems(int64_t k, int64_t extent, int64_t step) {
  return k * ((extent + step - 1) / step * step);
}
template <class T>
int64_t prepacked_a_elems(const GemmKernel<T>& kern, int64_t m, int64_t k) {
  return prepacked_elems(k, m, kern.mr);
}
template <class T>
int64_t prepacked_b_elems(const GemmKernel<T>& kern, int64_t k, int64_t n) {
  return prepacked_elems(k, n, kern.nr);
}

// Packs an operand whole into dst (prepacked_elems): for each kc block of the driver's k split,
// in order, its panels of `step` rows or columns, panel jp of block pc at
// dst + pc * round_up(extent, step) + jp * step * kc; pack_panel(pc, kc, j0, width, to) packs
// one. With `shared`, the panels are spread over the threads, else packed on the calling thread.
template <class T, class PackPanel>
void prepack_panels(int64_t k, int64_t kc_max, int64_t extent, int64_t step, bool shared,
                    const PackPanel& pack_panel, T* dst) {
  const int64_t kc_step = gemm_kc_step(k, kc_max);
  const int64_t panels = (extent + step - 1) / step, rounded = panels * step;
  const auto panel = [&](int64_t jp) {
    const int64_t j0 = jp * step, width = extent - j0 < step ? extent - j0 : step;
    for (int64_t pc = 0; pc < k; pc += kc_step) {
      const int64_t kc = k - pc < kc_step ? k - pc : kc_step;
      pack_panel(pc, kc, j0, width, dst + pc * rounded + j0 * kc);
    }
  };
  if (shared)
    parallel_for(panels, k * step, panel);
  else
    for (int64_t jp = 0; jp < panels; ++jp) panel(jp);
}

// Packs op(A)[m x k] whole into dst (prepacked_a_elems) with pack_a, on the calling thread, or
// with `shared` its panels spread over the threads.
template <class T, class PackA>
PrepackedA<T> prepack_a(const GemmKernel<T>& kern, int64_t m, int64_t k, const PackA& pack_a,
                        T* dst, bool shared = false) {
  const int64_t mr = kern.mr;
  prepack_panels(
      k, kern.kc, m, mr, shared,
      [&](int64_t pc, int64_t kc, int64_t i0, int64_t mc, T* to) {
        pack_a(i0, mc, pc, kc, mr, to);
      },
      dst);
  return {&kern, dst, m};
}

// Packs op(B)[k x n] whole into dst (prepacked_b_elems) with pack_b (the contract above), the
// panels shared among the threads.
template <class T, class PackB>
PrepackedB<T> prepack_b(const GemmKernel<T>& kern, int64_t k, int64_t n, const PackB& pack_b,
                        T* dst) {
  const int64_t nr = kern.nr;
  prepack_panels(
      k, kern.kc, n, nr, true,
      [&](int64_t pc, int64_t kc, int64_t j0, int64_t nc, T* to) {
        pack_b(pc, kc, j0, nc, nr, to);
      },
      dst);
  return {&kern, dst, n};
}

// The rows of a k x n B prepacked for kern (prepack_panels' layout) with row p at place col[p]
// of a filter, by increasing place (ties in row order): WeightsTInOrder's read order, made once.
template <class T>
std::vector<PanelRow> panel_rows(const GemmKernel<T>& kern, const std::vector<int64_t>& col,
                                 int64_t n) {
  const int64_t k = int64_t(col.size()), kc_step = gemm_kc_step(k, kern.kc);
  const int64_t rounded = (n + kern.nr - 1) / kern.nr * kern.nr;
  std::vector<PanelRow> rows(col.size());
  for (int64_t p = 0; p < k; ++p) {
    const int64_t pc = p / kc_step * kc_step;
    rows[size_t(p)] = {col[size_t(p)], pc * rounded + (p - pc) * kern.nr,
                       k - pc < kc_step ? k - pc : kc_step};
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const PanelRow& a, const PanelRow& b) { return a.col < b.col; });
  return rows;
}

// Rows of B packed together across their kc blocks and all panels, kWholeRows at a time.
constexpr int64_t kWholeRows = 64;

// prepack_b's layout packed by pack.rows_all_panels(q0, q1, n, nr, dst) (WeightsTInOrder),
// kWholeRows rows of the table at a time, shared among the threads.
template <class T, class PackB>
PrepackedB<T> prepack_b_whole(const GemmKernel<T>& kern, int64_t k, int64_t n, const PackB& pack,
                              T* dst) {
  parallel_for((k + kWholeRows - 1) / kWholeRows, kWholeRows * n, [&](int64_t item) {
    const int64_t q0 = item * kWholeRows;
    pack.rows_all_panels(q0, k - q0 < kWholeRows ? k : q0 + kWholeRows, n, kern.nr, dst);
  });
  return {&kern, dst, n};
}

// The default epilogue: nothing.
struct NoEpilogue {
  void operator()(int64_t, int64_t, int64_t, int64_t) const {}
};

// C = beta * C over m x n; beta == 0 writes zeros without reading C.
template <class T>
void gemm_scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc);

// The loops of one thread over rows [ib, ie) and columns [jb, je) of C.
template <class T, class PackA, class PackB, class Epilogue>
void gemm_region(const GemmKernel<T>& kern, int64_t ib, int64_t ie, int64_t jb, int64_t je,
                 int64_t k, T alpha, const PackA& pack_a, const PackB& pack_b, T beta, T* c,
                 int64_t ldc, const Epilogue& epilogue) {
  const int64_t mr = kern.mr, nr = kern.nr;
  const int64_t kc_step = gemm_kc_step(k, kern.kc);
  assert(kern.ukernel != nullptr && mr <= kMaxMR && nr <= kMaxNR && kc_step <= kern.kc);
  const auto round_up = [](int64_t x, int64_t r) { return (x + r - 1) / r * r; };
  const int64_t mc_max = ie - ib < kern.mc ? round_up(ie - ib, mr) : kern.mc;
  // With a single A block (few rows, as in convolutions) every B panel is used once per pass:
  // a B block sized for L2 rather than L3 is then read back by the kernel from L2.
  const int64_t nc_step =
      ie - ib <= kern.mc ? gemm_nc_for_l2(kc_step, nr, kern.nc, sizeof(T)) : kern.nc;
  const int64_t nc_max = je - jb < nc_step ? round_up(je - jb, nr) : nc_step;
  constexpr bool a_rows = std::is_same_v<PackA, RowsA<T>>;
  constexpr bool a_in_place = std::is_same_v<PackA, DirectA<T>> || a_rows;
  constexpr bool a_prepacked = std::is_same_v<PackA, PrepackedA<T>>;
  constexpr bool b_in_place = std::is_same_v<PackB, DirectB<T>>;
  constexpr bool b_prepacked = std::is_same_v<PackB, PrepackedB<T>>;
  static_assert(!(a_in_place && b_in_place), "one operand at most is read in place");
  const std::size_t a_elems =
      a_in_place || a_prepacked ? 0 : static_cast<std::size_t>(round_up(mc_max * kc_step, 64));
  const std::size_t b_elems =
      b_in_place || b_prepacked ? 0 : static_cast<std::size_t>(nc_max * kc_step);
  T* const ap = static_cast<T*>(gemm_workspace((a_elems + b_elems) * sizeof(T)));
  T* const b_buf = ap + a_elems;
  const T* bp = b_buf;  // the packed block of B
  alignas(64) T edge[kMaxMR * kMaxNR];

  for (int64_t jc = jb; jc < je; jc += nc_step) {
    const int64_t nc = je - jc < nc_step ? je - jc : nc_step;
    for (int64_t pc = 0; pc < k; pc += kc_step) {
      const int64_t kc = k - pc < kc_step ? k - pc : kc_step;
      const T beta_p = pc == 0 ? beta : T(1);
      // A prepacked block pc starts at pc * (n rounded up to NR); jc is a multiple of NR.
      if constexpr (b_prepacked)
        bp = pack_b.panels + pc * round_up(pack_b.n, nr) + jc * kc;
      else if constexpr (!b_in_place)
        pack_b(pc, kc, jc, nc, nr, b_buf);
      for (int64_t ic = ib; ic < ie; ic += kern.mc) {
        const int64_t mc = ie - ic < kern.mc ? ie - ic : kern.mc;
        const T* a_block = ap;  // the packed block of A
        if constexpr (a_prepacked)
          a_block = pack_a.panels + pc * round_up(pack_a.n, mr) + ic * kc;  // ic: a multiple of MR
        else if constexpr (!a_in_place)
          pack_a(ic, mc, pc, kc, mr, ap);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t nv = nc - jr < nr ? nc - jr : nr;
          const T* b_panel = b_in_place ? nullptr : bp + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int64_t mv = mc - ir < mr ? mc - ir : mr;
            const T* a_panel = a_in_place ? nullptr : a_block + ir * kc;
            const auto kernel = [&](T beta_k, T* ck, int64_t ldck) {
              if constexpr (b_in_place) {
                kern.ukernel_direct_b(kc, alpha, a_panel, pack_b.base + jc + jr, pack_b.off + pc,
                                      beta_k, ck, ldck);
              } else if constexpr (a_rows) {
                kern.ukernel_rows_a(kc, alpha, pack_a.base + ic + ir, pack_a.k_off + pc, b_panel,
                                    beta_k, ck, ldck);
              } else if constexpr (a_in_place) {
                if (pack_a.row_run != nullptr && mv == mr && pack_a.row_run[ic + ir] >= mr) {
                  kern.ukernel_rows_a(kc, alpha, pack_a.base + pack_a.row_off[ic + ir],
                                      pack_a.k_off + pc, b_panel, beta_k, ck, ldck);
                  return;
                }
                const T* rows[kMaxMR];  // rows past the edge repeat the last one
                for (int64_t i = 0; i < mr; ++i)
                  rows[i] = pack_a.base + pack_a.row_off[ic + ir + (i < mv ? i : mv - 1)];
                kern.ukernel_direct_a(kc, alpha, rows, pack_a.k_off + pc, b_panel, beta_k, ck,
                                      ldck);
              } else {
                kern.ukernel(kc, alpha, a_panel, b_panel, beta_k, ck, ldck);
              }
            };
            T* ct = c + (ic + ir) * ldc + (jc + jr);
            if (mv == mr && nv == nr) {
              kernel(beta_p, ct, ldc);
              continue;
            }
            kernel(T(0), edge, nr);
            for (int64_t i = 0; i < mv; ++i) {
              T* crow = ct + i * ldc;
              const T* erow = edge + i * nr;
              if (beta_p == T(0)) {
                for (int64_t j = 0; j < nv; ++j) crow[j] = erow[j];
              } else {
                for (int64_t j = 0; j < nv; ++j) crow[j] = beta_p * crow[j] + erow[j];
              }
            }
          }
          if (pc + kc == k) epilogue(ic, mc, jc + jr, nv);
        }
      }
    }
  }
}

// C = alpha * op(A) * op(B) + beta * C on the kernel row kern, with caller-supplied packers
// (contract above):
//   pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t mr, T* dst), or a DirectA<T>
//     or a RowsA<T>
//   pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst), or a DirectB<T>
//     or a PrepackedB<T> (packed for the same row)
//   epilogue(int64_t i0, int64_t mc, int64_t j0, int64_t nc), optional (see above)
// Sizes are assumed valid (callers validate). Runs on get_num_threads() threads at most, or on
// the calling thread alone inside a parallel region.
template <class T, class PackA, class PackB, class Epilogue = NoEpilogue>
void gemm_driver(const GemmKernel<T>& kern, int64_t m, int64_t n, int64_t k, T alpha,
                 const PackA& pack_a, const PackB& pack_b, T beta, T* c, int64_t ldc,
                 const Epilogue& epilogue = Epilogue()) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == T(0)) {
    gemm_scale_c(m, n, beta, c, ldc);
    epilogue(0, m, 0, n);
    return;
  }
  if constexpr (std::is_same_v<PackB, PrepackedB<T>>) assert(pack_b.kern == &kern);
  const int64_t mt = (m + kern.mr - 1) / kern.mr, nt = (n + kern.nr - 1) / kern.nr;
  parallel(gemm_max_threads(m, n, k, kern.mr, kern.nr), [&](int64_t tid, int64_t nthr) {
    const GemmPartition part = gemm_partition(m, n, k, kern.mr, kern.nr, kern.nc, nthr);
    int64_t ib, ie, jb, je;
    balance(mt, part.nthr_m, tid / part.nthr_n, ib, ie);
    balance(nt, part.nthr_n, tid % part.nthr_n, jb, je);
    ib *= kern.mr;
    jb *= kern.nr;
    ie = ie * kern.mr < m ? ie * kern.mr : m;
    je = je * kern.nr < n ? je * kern.nr : n;
    if (ib < ie && jb < je)
      gemm_region(kern, ib, ie, jb, je, k, alpha, pack_a, pack_b, beta, c, ldc, epilogue);
  });
}

}  // namespace convcore::detail
