#pragma once
// Max and average pooling, forward and backward. A pooling window is described by a
// Conv2dGeometry with oc == ic and groups == ic (one window per channel, like a depthwise
// convolution), so the output size comes from the one formula in geometry.hpp:
//
//   NCHW: x[mb][ic][ih][iw] -> y[mb][ic][oh][ow]     idx[mb][ic][oh][ow] = h * iw + w
//   NHWC: x[mb][ih][iw][ic] -> y[mb][oh][ow][ic]     idx[mb][oh][ow][ic] = h * iw + w
//   y[n,c,i,j] = max over taps (r, s) of xp[n, c, i*sh + r*dh, j*sw + s*dw]
//
// idx is the flat index, into the H x W input plane of (n, c), of the cell (h, w) that won, in
// both layouts (as PyTorch's channels_last max_pool2d): the indices of an NHWC run are those of
// the NCHW run transposed like the output. NHWC vectorises over the channels (pool_nhwc.cpp). Padded cells count
// as -inf (PyTorch's semantics) and never win; padding is limited, as in PyTorch, to half the
// dilated window. Taps are scanned row by row (r, then s) and a later cell replaces the current
// maximum only when it is strictly greater, so on ties the first maximum in scan order wins. NaN
// propagates: the first NaN of a window wins over every number. A window that holds only padded
// cells (possible with dilation) gives y = -inf and idx = -1.
//
// Backward scatters: dx = 0, then dx[n][c][idx[n,c,i,j]] += dy[n,c,i,j] for every output cell
// (idx == -1 is skipped). Where windows overlap (stride < kernel) a cell that wins several
// windows receives the sum of their gradients.
//
// NCHW work is split over the mb*ic planes, NHWC work over output rows (forward) and over
// (image, block of channels) (backward); every output element is computed by one thread in a
// fixed order, so results are bitwise identical for any number of threads.
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore {

// Checks that g describes a pooling window (oc == ic, groups == ic, padding <= half the dilated
// window) and that its sizes are valid; throws std::invalid_argument naming `op` otherwise.
void validate_pool(const Conv2dGeometry& g, const char* op = "max_pool2d");

// y and idx have g.mb * g.ic * g.oh() * g.ow() elements, in g.layout.
template <class T>
void max_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx);

// dx (g.src_size() elements) is overwritten. Throws std::invalid_argument, writing nothing, when
// an index is outside [-1, ih*iw).
template <class T>
void max_pool2d_backward(const Conv2dGeometry& g, const int64_t* idx, const T* dy, T* dx);

// Average pooling (as torch.nn.AvgPool2d without ceil_mode; g.dh = g.dw = 1):
//   y[n,c,i,j] = sum of the window's input cells / divisor
// divisor = kh*kw with count_include_pad (the padded zeros count), else the number of input cells
// in the window. Backward: dx = 0, then every dy[n,c,i,j] / divisor added to each input cell of its
// window, in the order of the output cells. Both layouts run the channels-last loops (NCHW as
// mb*ic images of one channel); deterministic for any thread count.
template <class T>
void avg_pool2d_forward(const Conv2dGeometry& g, bool count_include_pad, const T* x, T* y);
// dx (g.src_size() elements) is overwritten.
template <class T>
void avg_pool2d_backward(const Conv2dGeometry& g, bool count_include_pad, const T* dy, T* dx);

}  // namespace convcore
