#pragma once
// Direct kernels for depthwise convolution: every group has one input channel (icg == 1) and
// ocg = oc / groups output channels, each the correlation of that one input plane with its own
// kh x kw filter. Layouts as in conv2d.hpp:
//   x[mb][ic][ih][iw]   w[oc][1][kh][kw]   b[oc]   y, dy[mb][oc][oh][ow]
//   y[n][o][i][j] = f(b[o] + sum_{r,q} w[o][r][q] * x[n][o/ocg][i*sh + r*dh - pt][j*sw + q*dw - pl])
// The GEMM formulation degenerates here into one skinny product per image and channel
// (M = ocg, K = kh*kw), so these kernels loop over the planes directly:
//   - stride 1 (all three ops): the plane is copied once into a zero-padded buffer with row
//     length wp, so that every tap is one contiguous run of it and the whole output plane is a
//     single flat loop, p = i*wp + j, adding several taps per pass (the columns j >= ow of that
//     layout are computed and dropped). Backward-input is the same correlation of the padded dy
//     with the rotated filter; backward-weight sweeps each row of dy once against all the taps of
//     its channel (up to 9 at a time), each tap summing into its own vector of partial sums.
//   - other strides: per output row and tap, the range of columns whose input lies inside the
//     image is computed once, and a strided axpy (scatter for backward-input) runs over it.
// Scratch, where used, is leased before the parallel region; nothing inside it throws.
//
// The caller validates g first (Conv2dGeometry::validate). Every element of the output is computed
// by one thread in a fixed order, so results are bitwise identical for any thread count.
#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"

namespace convcore::detail {

// The plan (plan/paths.cpp) decides when to run a layer here rather than on the GEMM: these
// kernels are correct for any g with icg == 1. kern is the inner-loop table of the plan's
// kernel row (GemmKernel::depthwise).
template <class T>
struct DirectLoops;

// y = f(conv(x, w) + b). bias may be null. Overwrites y.
template <class T>
void depthwise_forward(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act);

// dx = dE/dx given dy. Overwrites dx.
template <class T>
void depthwise_backward_input(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* w, const T* dy, T* dx);

// dw (+)= sum over images of the correlation of x with dy. Overwrites dw unless accumulate.
template <class T>
void depthwise_backward_weight(const DirectLoops<T>& kern, const Conv2dGeometry& g, const T* x, const T* dy, T* dw,
                               bool accumulate);

}  // namespace convcore::detail
