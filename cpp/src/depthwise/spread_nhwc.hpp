#pragma once
// Path nhwc_spread of the three ops (spread_nhwc.cpp): NHWC, one input channel per group,
// stride 1. Each input pixel is spread to the output channels it feeds, in a padded copy of a
// band of rows, so that a run of pixels and all their channels is one flat vector loop (the
// depthwise loops' nhwc_taps and nhwc_tap_sums) however few the channels are.
#include <cstdint>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"

namespace convcore::detail {

enum class SpreadOp { forward, backward_input, backward_weight };

// What the path works in, from the geometry and the depthwise loops' vector (`lanes` values):
// bands of `rows` result rows (`bands` per image), each band's spread copy `band_elems` values in
// rows of `wp` pixels; the weights repeated over `period` values (whole vectors and whole
// pixels); the weight gradient's sums over runs of `run` pixels (the last of a row fewer).
struct SpreadSizes {
  int64_t wp = 0, period = 0, run = 0, rows = 0, bands = 0, band_elems = 0;
};
SpreadSizes spread_sizes(const Conv2dGeometry& g, SpreadOp op, int64_t lanes);

template <class T>
void spread_forward_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* x,
                         const T* w, const T* bias, T* y, Activation act);
template <class T>
void spread_backward_input_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                const T* dy, T* dx);
// dw (+)= the sums of `chunks` fixed chunks of images, added in order.
template <class T>
void spread_backward_weight_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g,
                                 int64_t chunks, const T* x, const T* dy, T* dw, bool accumulate);

}  // namespace convcore::detail
