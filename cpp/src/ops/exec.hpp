#pragma once
// The executors of the plan's paths: each holds what its path derived from the geometry once
// (offset tables, padded-image sizes, chunking) and runs it on buffers. The plan (plan/plan.cpp)
// makes them; nothing here validates: geometries were validated when the plan was made, and the
// flipped-kernel pass's geometry may carry negative padding (a crop).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"
#include "gemm/pack.hpp"
#include "gemm/ukernel.hpp"
#include "igemm/padded_image.hpp"
#include "igemm/padded_image_nhwc.hpp"
#include "ops/phases.hpp"

namespace convcore::detail {

// The paths of plan.hpp, in the order of the path table (plan/paths.cpp). The nhwc_ paths serve
// the NHWC layout only (ops/conv2d_nhwc.cpp; nhwc_via_nchw: ops/nhwc_via_nchw.cpp), the others
// NCHW only, except flip and col2im, which have a body per layout.
enum class ForwardPath {
  gemm_1x1, packed, a_in_place, a_wide, b_in_place, depthwise,
  nhwc_1x1, nhwc_in_place, nhwc_depthwise, nhwc_spread, nhwc_via_nchw
};
enum class InputPath {
  flip, col2im, phases, depthwise, nhwc_depthwise, nhwc_spread, nhwc_via_nchw
};
enum class WeightPath {
  a_in_place, packed, depthwise, nhwc_in_place, nhwc_depthwise, nhwc_spread, nhwc_via_nchw
};

// y = act(conv(x, w) + bias) for mb images (any mb: the flipped pass runs chunks of a batch).
template <class T>
struct ForwardExec {
  ForwardExec(const Conv2dGeometry& g, ForwardPath path, const GemmKernel<T>& kern);
  void run(int64_t mb, const T* x, const T* w, const T* bias, T* y, Activation act) const;

  Conv2dGeometry g;
  ForwardPath path;
  const GemmKernel<T>* kern;
  PaddedImage pi{};           // a_in_place, a_wide, b_in_place
  std::vector<int64_t> taps;  // a_in_place, a_wide, b_in_place: K tap offsets into the copy
  std::vector<int64_t> pix;   // a_in_place: batch*N pixel offsets into batch padded copies
  std::vector<int64_t> pix_run;  // a_in_place: consecutive_runs of pix (DirectA::row_run)
  int64_t batch = 1;          // a_in_place: images per product
                              // nhwc_in_place: taps and pix of a band of the copy below
  PaddedBandNhwc band{};      // nhwc_in_place
  // W^T read through a table (WeightsTInOrder): nhwc_in_place, its K index in the NHWC order;
  // a_in_place, a_wide and nhwc_in_place as the flipped forward of an input gradient, the
  // layer's own w rot180 and transposed (InputExec). For each K index, its place from a filter's
  // start, the filters wld apart; empty: w is read as it is, rows of K.
  std::vector<int64_t> wcol;
  std::vector<PanelRow> wrows;  // panel_rows of wcol: the table's K indices in w's memory order
  int64_t wld = 0;
  std::unique_ptr<ForwardExec> nchw;  // nhwc_via_nchw: the NCHW twin of g, on its cheapest path
};

// Each group's W_g^T of e's forward packed once per call (prepack_b, the panels over the threads)
// into dst, wt_elems apart: from w's rows of K, or through e's table where it has one (wcol,
// filters wld apart). For the paths that take W^T as a prepacked B operand.
template <class T>
void prepack_weights_t(const ForwardExec<T>& e, const T* w, T* dst, int64_t wt_elems);

// dx from dy.
template <class T>
struct InputExec {
  // flip: forward_path is the path of the stride-1 forward of g.flipped(); phases: the
  // paths of the phases' forwards are chosen here (cheapest_forward on kern's row).
  InputExec(const Conv2dGeometry& g, InputPath path, const GemmKernel<T>& kern,
            ForwardPath flipped_path);
  void run(const T* w, const T* dy, T* dx) const;

  Conv2dGeometry g;
  InputPath path;
  const GemmKernel<T>* kern;
  std::unique_ptr<ForwardExec<T>> flipped;  // flip
  bool flip_in_pack = false;  // flip: flipped reads the layer's w through its table (no copy)
  std::vector<Phase> phases;                // phases: one per (row, column) residue
  // phases: the product of each phase with taps, all reading `batch` padded copies of dy (one
  // copy for every phase, `dyp`, made from dy as the image of `dyp_g`; NHWC: every channel, rows
  // of wp*oc values, elems for all of them).
  struct PhaseProduct {
    size_t phase;  // its entry in phases
    int64_t k, n;  // K: dy's channels of a group times the phase's taps; N: its dx pixels
    std::vector<int64_t> pix, taps, pix_run;  // DirectA's tables, pix over `batch` copies
    int64_t wt_start;  // where its packed W^T starts among a group's (wt_elems of them)
  };
  std::vector<PhaseProduct> products;
  // Every phase's W^T as one table through w (WeightsTInOrder, the filters kh*kw apart): each
  // product's rows, placed after the products before it, in w's memory order, so that one pass
  // over w packs them all (each weight goes to the one phase its tap belongs to).
  std::vector<PanelRow> wrows;
  int64_t wt_elems = 0;  // a group's packed W^T of every phase
  Conv2dGeometry dyp_g{};
  PaddedImage dyp{};
  int64_t batch = 1;
  std::unique_ptr<InputExec> nchw;  // nhwc_via_nchw: the NCHW twin of g, on its cheapest path
};

// dw (+)= the weight gradient, partial sums over fixed chunks of images.
template <class T>
struct WeightExec {
  WeightExec(const Conv2dGeometry& g, WeightPath path, const GemmKernel<T>& kern);
  void run(const T* x, const T* dy, T* dw, bool accumulate) const;

  Conv2dGeometry g;
  WeightPath path;
  const GemmKernel<T>* kern;
  int64_t chunks = 1;
  PaddedImage pi{};              // a_in_place
  std::vector<int64_t> row_off;  // a_in_place: K tap offsets
  std::vector<int64_t> k_off;    // a_in_place: N pixel offsets; nhwc_in_place: a band's
  PaddedBandNhwc band{};         // nhwc_in_place
  std::vector<int64_t> k_of;     // nhwc_in_place: dw's K index q is the product's row k_of[q]
  std::unique_ptr<WeightExec> nchw;  // nhwc_via_nchw: the NCHW twin of g, on its cheapest path
};

// db (+)= dy summed over images and pixels.
template <class T>
void backward_bias_run(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate);

// Weight-gradient partial sums are formed over this many fixed chunks of images: as many as the
// work is worth threads, a function of the geometry only, so the bits do not depend on threads.
int64_t weight_chunks(const Conv2dGeometry& g, int64_t elem_size);

// Whether the packed weight gradient splits dw's columns among the threads instead (one chunk):
// when there are enough column panels of width nr for two per thread at kMaxWeightChunks
// threads.
bool weight_columns_split(const Conv2dGeometry& g, int64_t nr);

// The workspace the in-place paths may take per thread; past it they do not support a geometry.
constexpr double kMaxWorkspaceBytes = double(int64_t{64} << 20);

// Calls body(a) with a, convertible to act, a compile-time constant: the switch inside activate
// and activation_derivative then folds away and the caller's loops vectorise (a switch per
// element does not).
template <class Body>
void with_activation(Activation act, Body body) {
  using A = Activation;
  switch (act) {
    case A::identity: return body(std::integral_constant<A, A::identity>());
    case A::relu: return body(std::integral_constant<A, A::relu>());
    case A::sigmoid: return body(std::integral_constant<A, A::sigmoid>());
    case A::tanh: return body(std::integral_constant<A, A::tanh>());
  }
}

// The images the a_in_place forward stacks into one product: as many as make its rows (pixels)
// reach one A block of `mc` rows; and where the packed weights W_g^T (elem_size bytes a value)
// exceed half of the l2_bytes of L2, which each product then streams from beyond it, as many as
// make their padded copies at least as large as W_g^T. Within the workspace bound.
inline int64_t a_in_place_batch(const Conv2dGeometry& g, int64_t mc, int64_t elem_size,
                                double l2_bytes) {
  const int64_t n = std::max<int64_t>(g.col_cols(), 1);
  const double wt = double(g.col_rows()) * double(g.ocg()) * double(elem_size);
  const double copy = std::max(padded_image_bytes(g, elem_size), 1.0);
  const double by_weights = wt > l2_bytes / 2 ? std::ceil(wt / copy) : 1;
  const double want = std::max(double((mc + n - 1) / n), by_weights);
  int64_t b = int64_t(std::min(want, double(std::max<int64_t>(g.mb, 1))));
  const double per_image =
      (padded_image_bytes(g, 8) + double(g.ocg()) * double(n) * 8.0);  // bytes, at most
  while (b > 1 && double(b) * per_image > kMaxWorkspaceBytes) --b;
  return std::max<int64_t>(b, 1);
}

// The elements of the padded copy of one image's dy that the phases read (copy: its geometry,
// phase_copy_geometry): a group's channels in NCHW; every channel in NHWC, where the groups read
// it from their own offsets.
inline double phase_copy_elems(const Conv2dGeometry& g, const Conv2dGeometry& copy) {
  const double channels = g.layout == Layout::nhwc ? double(g.oc) : double(g.ocg());
  return channels * double(copy.oh()) * double(copy.ow());
}

// The bytes backward_input_phases takes per image of a product: the padded copy of dy that
// every phase reads, and the phases' products (one group of dx).
inline double phases_image_bytes(const Conv2dGeometry& g, int64_t elem_size) {
  const Conv2dGeometry copy = phase_copy_geometry(g, phase_copy_padding(input_phases(g)));
  return (phase_copy_elems(g, copy) + double(g.icg()) * double(g.ih) * double(g.iw)) *
         double(elem_size);
}

// The images backward_input_phases stacks into one product of each phase: as many as make the
// widest phase's rows (its dx pixels of one image) reach one A block of `mc` rows, within the
// workspace bound.
inline int64_t phases_batch(const Conv2dGeometry& g, const std::vector<Phase>& phases, int64_t mc,
                            int64_t elem_size) {
  int64_t widest = 1;
  for (const Phase& ph : phases)
    if (ph.has_taps()) widest = std::max(widest, ph.h.out * ph.w.out);
  int64_t b = std::min<int64_t>(std::max<int64_t>(g.mb, 1), (mc + widest - 1) / widest);
  const double per_image = phases_image_bytes(g, elem_size);
  while (b > 1 && double(b) * per_image > kMaxWorkspaceBytes) --b;
  return std::max<int64_t>(b, 1);
}

// Whether im2col is the identity for g (1x1 kernel, stride 1, no padding): the GEMM reads x.
inline bool col_is_input(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pb == 0 &&
         g.pl == 0 && g.pr == 0;
}

// Whether NHWC col2im adds each kernel row's taps back as one run of kw*ic values per pixel (one
// group, no column dilation: the taps are adjacent pixels of dx, their values adjacent in dcol).
inline bool nhwc_col2im_runs(const Conv2dGeometry& g) { return g.groups == 1 && g.dw == 1; }

// How many threads an image-parallel loop over g.mb images uses (at least 1): no more than there
// are images, nor than the work (one forward product per image) is worth.
inline int64_t image_threads(const Conv2dGeometry& g) {
  const int64_t per_image = work_mul(work_mul(g.oc, g.col_rows()), g.col_cols());
  return std::min<int64_t>(threads_for_work(g.mb, per_image), get_num_threads());
}

}  // namespace convcore::detail
