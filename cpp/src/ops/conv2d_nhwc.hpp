#pragma once
// The NHWC executors (conv2d_nhwc.cpp): activations x[mb][ih][iw][ic], y, dy[mb][oh][ow][oc],
// weights [oc][ic/groups][kh][kw] as in NCHW. In this layout the pixels are the rows of every
// product and the channels its columns, so the transposed products of the NCHW paths need no
// transposition at all:
//
//   forward          Y_g[N x ocg] = col^T[N x K] * Wr_g^T[K x ocg]      (ldc = oc, column gi*ocg)
//   backward_input   col2im: dcol^T[N x K] = dY_g[N x ocg] * Wr_g[ocg x K], then contiguous
//                    icg-vectors scatter-added into dx; flip: expand_stride_nhwc, then the
//                    forward above on g.flipped() (conv2d_backward.cpp)
//   backward_weight  dW_g^T[K x ocg] (+)= col[K x N] * dY_g[N x ocg]
//   backward_bias    column sums of dy seen as [mb*oh*ow x oc]
//
// with the K index ordered (r, s, c) (padded_image_nhwc.hpp) and Wr the weights in that order,
// wr[o][(r*kw + s)*icg + c] = w[o][c][r][s], packed once per call straight from w.
#include <cstdint>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"
#include "ops/exec.hpp"

namespace convcore::detail {

// The offset tables and band sizes of the nhwc_in_place paths.
template <class T>
void prepare_nhwc(ForwardExec<T>& e);
template <class T>
void prepare_nhwc(WeightExec<T>& e);

// Forward paths nhwc_1x1 and nhwc_in_place, on g (g.mb images).
template <class T>
void forward_nhwc(const ForwardExec<T>& e, const Conv2dGeometry& g, const T* x, const T* w,
                  const T* bias, T* y, Activation act);

// dx = col2im(W^T dy), NHWC.
template <class T>
void backward_input_col2im_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                const T* dy, T* dx);

// Zero insertion of one image, NHWC: e[i*sh][j*sw][c] = dy[i][j][c] over e[eh][ew][channels],
// zeros elsewhere.
template <class T>
void expand_stride_nhwc(const Conv2dGeometry& g, int64_t channels, const T* dy, T* e);

// Path nhwc_in_place of the weight gradient.
template <class T>
void backward_weight_nhwc(const WeightExec<T>& e, const T* x, const T* dy, T* dw, bool accumulate);

// Depthwise (one input channel per group) direct loops, vectorised along the channels
// (depthwise/depthwise_nhwc.cpp): paths nhwc_depthwise of the three ops.
template <class T>
void depthwise_forward_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* x,
                            const T* w, const T* bias, T* y, Activation act);
template <class T>
void depthwise_backward_input_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                   const T* dy, T* dx);
template <class T>
void depthwise_backward_weight_nhwc(const GemmKernel<T>& kern, const Conv2dGeometry& g,
                                    int64_t chunks, const T* x, const T* dy, T* dw,
                                    bool accumulate);

// db (+)= dy summed over images and pixels, NHWC.
template <class T>
void backward_bias_nhwc(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate);

}  // namespace convcore::detail
