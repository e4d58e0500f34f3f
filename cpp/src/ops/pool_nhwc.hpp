#pragma once
// Pooling kernels over channels-last activations, x[mb][ih][iw][c] -> y[mb][oh][ow][c], c = g.ic.
// Every inner loop runs over a run of channels, which are contiguous in this layout, so it
// vectorises. They assume a geometry checked by validate_pool and (backward) indices checked to
// lie in [-1, ih*iw). An index is the flat position h*iw + w of the winning cell within its
// H x W plane, as in NCHW, so indices do not depend on the layout.
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore::detail {

template <class T>
void max_pool2d_forward_nhwc(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx);
// dx is overwritten.
template <class T>
void max_pool2d_backward_nhwc(const Conv2dGeometry& g, const int64_t* idx, const T* dy, T* dx);

// divisor: kh*kw with count_include_pad, else the number of input cells in the window.
template <class T>
void avg_pool2d_forward_nhwc(const Conv2dGeometry& g, bool count_include_pad, const T* x, T* y);
// dx is overwritten.
template <class T>
void avg_pool2d_backward_nhwc(const Conv2dGeometry& g, bool count_include_pad, const T* dy, T* dx);

}  // namespace convcore::detail
