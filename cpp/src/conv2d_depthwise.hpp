#pragma once
// Direct kernels for depthwise convolution: every group has one input channel (icg == 1) and
// ocg = oc / groups output channels, each the correlation of that one input plane with its own
// kh x kw filter. Layouts as in conv2d.hpp:
//   x[mb][ic][ih][iw]   w[oc][1][kh][kw]   b[oc]   y, dy[mb][oc][oh][ow]
//   y[n][o][i][j] = f(b[o] + sum_{r,q} w[o][r][q] * x[n][o/ocg][i*sh + r*dh - pt][j*sw + q*dw - pl])
// The GEMM formulation degenerates here into one skinny product per image and channel
// (M = ocg, K = kh*kw), so these kernels work on rows instead: per output row and tap, the range
// of columns whose input is inside the image is computed once, and the row loop over that range
// (contiguous for stride 1) is a plain axpy that the compiler vectorises.
//
// The caller validates g first (Conv2dGeometry::validate). Every element of the output is computed
// by one thread in a fixed order, so results are bitwise identical for any thread count.
#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"

namespace convcore::detail {

// Whether the direct depthwise kernels handle g, and are the faster path: g.icg() == 1.
// That is every geometry with one input channel per group (any ocg, stride, padding, dilation);
// a single group (ic == 1, a plain convolution of a one-channel image) is left to the GEMM path,
// where N = oh*ow is large and the GEMM is efficient.
bool use_depthwise(const Conv2dGeometry& g);

// y = f(conv(x, w) + b). bias may be null. Overwrites y.
template <class T>
void depthwise_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act);

// dx = dE/dx given dy. Overwrites dx.
template <class T>
void depthwise_backward_input(const Conv2dGeometry& g, const T* w, const T* dy, T* dx);

// dw (+)= sum over images of the correlation of x with dy. Overwrites dw unless accumulate.
template <class T>
void depthwise_backward_weight(const Conv2dGeometry& g, const T* x, const T* dy, T* dw,
                               bool accumulate);

}  // namespace convcore::detail
