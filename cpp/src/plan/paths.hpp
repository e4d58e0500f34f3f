#pragma once
// The path table: for each op, its paths in order, each with a predicate (does it support the
// geometry on this kernel row?) and a cost model. The plan (plan.cpp) evaluates every path on
// every enabled kernel row and keeps the cheapest supported pair; a forced path skips the
// comparison of paths but still takes its cheapest row.
//
// Costs are modelled cycles of one core for the whole batch. They are built from the kernel
// row (MR, NR, KC, the vector width) and the CPU's caches, never from a literal tile size:
//   - a GEMM of m x n x k costs ceil(m/MR) * ceil(n/NR) micro-tiles of k steps, each step
//     MR*NR multiply-adds at lanes * kFmaPipes per cycle, or its loads (NR/lanes vectors of B,
//     MR broadcasts of A, and MR row pointers where A is read through them) at kLoadPorts per
//     cycle where those take longer, plus the tile's write-back (twice for edge tiles, which go
//     through the driver's buffer);
//   - data movement costs a fixed number of cycles per element: contiguous copies (padding,
//     plain packing), gathers (im2col packing, transposed write-back) and col2im's scatter;
//   - an operand read in place from a padded copy larger than half the L2 cache is read from
//     further out, which costs more per element copied.
#include <cstdint>
#include <string>

#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"
#include "ops/exec.hpp"
#include "ops/phases.hpp"

namespace convcore::detail {

// What a cost model reads besides the geometry.
struct CostContext {
  const Conv2dGeometry& g;
  int64_t mr, nr, mc, kc, nc, lanes;  // the kernel row
  int64_t dw_lanes;                   // elements of T in a vector of the row's depthwise loops
  int64_t elem_size;
  double l2_bytes;  // per core
};
// c on another geometry (g must outlive the result).
inline CostContext on_geometry(const CostContext& c, const Conv2dGeometry& g) {
  return {g, c.mr, c.nr, c.mc, c.kc, c.nc, c.lanes, c.dw_lanes, c.elem_size, c.l2_bytes};
}

template <class T>
CostContext cost_context(const Conv2dGeometry& g, const GemmKernel<T>& k);

// One row of the path table.
template <class Path>
struct PathInfo {
  Path path;
  const char* name;
  bool (*supports)(const CostContext&);
  double (*cost)(const CostContext&);
};

extern const PathInfo<ForwardPath> kForwardPaths[11];
extern const PathInfo<InputPath> kInputPaths[7];
extern const PathInfo<WeightPath> kWeightPaths[7];

// The cheapest supported path of each op for g on the row of c (there always is one: packed,
// flip, packed for NCHW; nhwc_in_place, flip, nhwc_in_place for NHWC).
ForwardPath cheapest_forward(const CostContext& c, double* cost = nullptr);
InputPath cheapest_input(const CostContext& c, double* cost = nullptr);
WeightPath cheapest_weight(const CostContext& c, double* cost = nullptr);

// The L2 cache of one core, in bytes, as the OS reports it (a default when it does not).
double l2_cache_bytes();

}  // namespace convcore::detail
