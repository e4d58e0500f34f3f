#pragma once
// The convolution ops. Layouts (PyTorch's):
//   x[mb][ic][ih][iw]   w[oc][ic/groups][kh][kw]   b[oc]   y, dy[mb][oc][oh][ow]
// Every op validates its geometry first (std::invalid_argument / std::overflow_error) and writes
// nothing when it throws. Results are bitwise identical for any number of threads.
#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"

namespace convcore {

// y = f(conv(x, w) + b). bias may be null. Per image and group: im2col, then
// Y[ocg x oh*ow] = W[ocg x icg*kh*kw] * col[icg*kh*kw x oh*ow] (one GEMM), bias and f on write-back.
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                    Activation act = Activation::identity);

enum class BackwardInputMethod {
  automatic,  // the faster of the two for the geometry
  flip,       // the tutorial's: expand_stride, pad by k-1-p, flipped kernels, stride-1 forward
  col2im,     // dcol = W^T * dy, then col2im (scatter-add)
};

// dx = dE/dx given dy = dE/dy (the layer's delta, activation derivative already applied).
template <class T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* w, const T* dy, T* dx,
                           BackwardInputMethod method = BackwardInputMethod::automatic);

// dw (+)= sum over images of dY[ocg x oh*ow] * col^T. Overwrites dw, or adds to it with accumulate.
template <class T>
void conv2d_backward_weight(const Conv2dGeometry& g, const T* x, const T* dy, T* dw,
                            bool accumulate);

// db[o] (+)= sum over images and pixels of dy[n][o].
template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db, bool accumulate);

}  // namespace convcore
