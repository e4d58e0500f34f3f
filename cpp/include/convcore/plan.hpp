#pragma once
// Conv2dPlan: a convolution decided once and run many times (oneDNN's primitive descriptor,
// XNNPACK's create/run operators).
//
//   x[mb][ic][ih][iw]   w[oc][ic/groups][kh][kw]   b[oc]   y, dy[mb][oc][oh][ow]
//
// Making a plan validates the geometry (the only place it is validated; std::invalid_argument or
// std::overflow_error), then picks for each op a path of the path table and a kernel row of the
// CPU's kernel table by the paths' cost models, and derives everything the chosen paths need
// (offset tables, padded-image sizes, the flipped geometry of the backward pass, chunking).
// Running a plan only reads and writes the buffers: they must hold the geometry's sizes.
// Results are bitwise identical for any number of threads.
//
// Paths (names as describe() and PlanOptions use them). The nhwc_ paths serve geometries whose
// layout is NHWC (x[mb][ih][iw][ic], y[mb][oh][ow][oc]) and only those; flip, col2im and lanes
// serve both layouts; the others NCHW only.
//   forward          gemm_1x1    1x1 stride-1 unpadded kernel: the image is the GEMM's B
//                    packed      col packed panel by panel from the image (im2col on the fly)
//                    a_in_place  Y^T = col^T W^T, col^T read in place from a padded copy
//                    a_wide      the same over rows as wide as the padded copy, whose tiles are
//                                consecutive in it (stride 1 only)
//                    b_in_place  Y = W col, col read in place (stride 1 only)
//                    depthwise   direct loops, one input channel per group
//                    nhwc_1x1    NHWC 1x1 stride-1 unpadded: Y = X W^T, the batch one product
//                    nhwc_in_place  NHWC: Y = col^T Wr^T per band of output rows, col^T read in
//                                place from the band's HWC padded copy
//                    nhwc_depthwise NHWC depthwise: direct loops along the channels
//                    nhwc_spread NHWC, one input channel per group, stride 1: x spread to the
//                                output channels, then flat runs of pixels x channels
//                    nhwc_via_nchw  NHWC: x transposed to NCHW, the NCHW twin's cheapest path,
//                                y transposed back (no transpose of a one-channel tensor)
//   backward_input   flip        the tutorial's: expand, pad by k-1-p, flipped kernels, then a
//                                stride-1 forward (its own forward path chosen as above)
//                    col2im      dcol = W^T dy, then the scatter-add col2im
//                    phases      strided layers: a stride-1 forward of dy per residue of dx's
//                                rows and columns mod the stride (sub-kernels of w, nothing
//                                inserted), interleaved into dx
//                    depthwise   direct loops, one input channel per group
//                    nhwc_depthwise NHWC depthwise: direct loops, gathered per input pixel (multiplier 1)
//                    nhwc_spread NHWC, as above: flat runs over padded dy, rotated filters
//                    nhwc_via_nchw  NHWC: dy to NCHW, the NCHW twin's path, dx back
//   backward_weight  a_in_place  dW^T = col dY^T, col read in place from a padded copy
//                    packed      dW = dY col^T, col^T packed from the image
//                    depthwise   direct loops, one input channel per group
//                    nhwc_in_place  NHWC: dW^T = col dY per band, col read in place
//                    nhwc_depthwise NHWC depthwise: direct loops
//                    nhwc_spread NHWC, as above: flat runs against dy, sums per run position
//                    nhwc_via_nchw  NHWC: x and dy to NCHW, the NCHW twin's path
//   backward_bias    lanes       sums over mb, oh, ow in fixed lanes
#include <memory>
#include <string>
#include <vector>

#include "convcore/activation.hpp"
#include "convcore/gemm.hpp"
#include "convcore/geometry.hpp"

namespace convcore {

enum class PlanOp { forward, backward_input, backward_weight, backward_bias };
const char* plan_op_name(PlanOp op);

// What a plan is made for. Empty path names leave the choice to the cost models; a named path
// is used as long as it supports the geometry (else std::invalid_argument listing the ones that
// do). isa, when set, restricts the kernel rows to that ISA's (it must be supported and enabled);
// by default the plan considers every row up to the active ISA (CONVCORE_ISA, set_isa). tile,
// when set ("MRxNR", e.g. "24x16"), restricts them further to the rows with that micro-tile.
struct PlanOptions {
  Activation activation = Activation::identity;
  bool bias = true;
  std::string forward, backward_input, backward_weight;
  std::string isa;
  std::string tile;
};

// One candidate of an op: a path on a kernel row (an ISA may have several, one per tile), whether it supports the geometry, and its
// modelled cost (cycles of one core for the whole batch; meaningful relative to the others).
struct PathEstimate {
  std::string path;
  std::string isa;
  bool supported = false;
  double cost = 0;
  std::string tile;  // the kernel row's micro-tile, "MRxNR"
};

// The choice for one op, with every candidate the model weighed.
struct OpChoice {
  std::string path;
  std::string isa;
  std::string tile;  // the kernel row's micro-tile, "MRxNR"
  bool forced = false;
  std::string detail;  // e.g. the flipped product's own forward path
  std::vector<PathEstimate> candidates;
};

struct PlanDescription {
  std::string geometry;  // canonical string
  std::string dtype;
  OpChoice forward, backward_input, backward_weight, backward_bias;
};

namespace detail {
template <class T>
struct PlanImpl;
}

template <class T>
class Conv2dPlan {
 public:
  explicit Conv2dPlan(const Conv2dGeometry& g, const PlanOptions& options = {});
  ~Conv2dPlan();
  Conv2dPlan(Conv2dPlan&&) noexcept;
  Conv2dPlan& operator=(Conv2dPlan&&) noexcept;

  const Conv2dGeometry& geometry() const;
  const PlanOptions& options() const;

  // y = act(conv(x, w) + bias); bias may be null (then no bias is added).
  void forward(const T* x, const T* w, const T* bias, T* y) const;
  // dx from dy (the layer's delta).
  void backward_input(const T* w, const T* dy, T* dx) const;
  // dw (+)= the weight gradient; overwrites dw unless accumulate.
  void backward_weight(const T* x, const T* dy, T* dw, bool accumulate) const;
  // db (+)= dy summed over images and pixels.
  void backward_bias(const T* dy, T* db, bool accumulate) const;

  PlanDescription describe() const;

  // Every path name of an op, supported here or not.
  static std::vector<std::string> path_names(PlanOp op);

 private:
  std::unique_ptr<const detail::PlanImpl<T>> impl_;
};

extern template class Conv2dPlan<float>;
extern template class Conv2dPlan<double>;

}  // namespace convcore
