#pragma once
// Naive direct loops over the definition: the oracle of the C++ tests, never called by the ops.
// Accumulates in double. Backward-input uses the gather form (oneDNN's reference), which does not
// depend on zero insertion or kernel flipping, so it checks both library methods independently.
#include "convcore/geometry.hpp"

namespace convcore::ref {

template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y);
template <class T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* w, const T* dy, T* dx);
template <class T>
void conv2d_backward_weight(const Conv2dGeometry& g, const T* x, const T* dy, T* dw);
template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db);

}  // namespace convcore::ref
