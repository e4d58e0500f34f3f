#pragma once
// Path nhwc_via_nchw of each op (nhwc_via_nchw.cpp): an NHWC geometry run on the NCHW paths.
// The activations are transposed into NCHW scratch, the op runs on the executor of the NCHW twin
// of the geometry (the same geometry with layout nchw, on its cheapest path and the plan's row),
// and its activation result is transposed back:
//
//   xt[n][c][p] <- x[n][p][c]   (p = h*iw + w; skipped when ic == 1: the same array)
//   yt = op(xt, ...)            on the NCHW twin
//   y[n][p][c]  <- yt[n][c][p]  (skipped when oc == 1)
//
// It serves what the NHWC paths do slowly and an NCHW path quickly: few-channel inputs, depthwise
// layers (whose NCHW loops have an ISA-dispatched copy), a weight gradient better as dW = dY col^T.
// The transposes are exact and the NCHW paths' bits do not depend on threads, so neither do these.
#include <cstdint>
#include <memory>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "gemm/ukernel.hpp"
#include "ops/exec.hpp"

namespace convcore::detail {

// The executors of the NCHW twin of g (layout NHWC), each on its cheapest path on row k.
template <class T>
std::unique_ptr<ForwardExec<T>> nchw_twin_forward(const Conv2dGeometry& g, const GemmKernel<T>& k);
template <class T>
std::unique_ptr<InputExec<T>> nchw_twin_input(const Conv2dGeometry& g, const GemmKernel<T>& k);
template <class T>
std::unique_ptr<WeightExec<T>> nchw_twin_weight(const Conv2dGeometry& g, const GemmKernel<T>& k);

// The three ops through the twin (e.nchw); mb images for the forward (the flipped pass runs
// chunks of a batch).
template <class T>
void forward_via_nchw(const ForwardExec<T>& e, int64_t mb, const T* x, const T* w, const T* bias,
                      T* y, Activation act);
template <class T>
void backward_input_via_nchw(const InputExec<T>& e, const T* w, const T* dy, T* dx);
template <class T>
void backward_weight_via_nchw(const WeightExec<T>& e, const T* x, const T* dy, T* dw,
                              bool accumulate);

// The NCHW col2im of g (layout NCHW) with dy given in NHWC order: the GEMM packs dY_g^T from it
// (a transposed panel), dx in NCHW order.
template <class T>
void backward_input_col2im_nhwc_dy(const GemmKernel<T>& kern, const Conv2dGeometry& g, const T* w,
                                   const T* dy, T* dx);

// Whether transpose_images moves values of elem_size bytes in register blocks (float on x86-64,
// whose baseline has SSE) rather than one at a time: what the cost model prices.
constexpr bool transposes_in_blocks(int64_t elem_size) {
#if defined(__SSE2__)
  return elem_size == 4;
#else
  (void)elem_size;
  return false;
#endif
}

// dst[n][c][r] = src[n][r][c] for n < mb, r < rows, c < cols: each image's rows x cols matrix
// transposed (HWC -> CHW with rows = pixels, cols = channels; CHW -> HWC the other way round).
template <class T>
void transpose_images(int64_t mb, int64_t rows, int64_t cols, const T* src, T* dst);

}  // namespace convcore::detail
