#pragma once
// Internals shared by the forward and backward ops.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"

namespace convcore::detail {

// The forward convolution without validation: g may carry negative padding (a crop), which the
// flipped-kernel backward pass produces. bias may be null.
template <class T>
void forward_unchecked(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act);

// How forward_unchecked computes g (conv2d_forward.cpp): reading col in place from a zero-padded
// copy of each image, as the transposed product's A (any stride) or the product's B (stride 1),
// or packing col panels from the image.
enum class ForwardPath { a_in_place, b_in_place, packed };
ForwardPath forward_path(const Conv2dGeometry& g, int64_t elem_size);

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

// Whether im2col is the identity for g (1x1 kernel, stride 1, no padding): the GEMM reads x.
inline bool col_is_input(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pb == 0 &&
         g.pl == 0 && g.pr == 0;
}

// How many threads an image-parallel loop over g.mb images uses (at least 1): no more than there
// are images, nor than the work (one forward product per image) is worth.
inline int64_t image_threads(const Conv2dGeometry& g) {
  const int64_t per_image = g.oc * g.col_rows() * g.col_cols();
  return std::min<int64_t>(threads_for_work(g.mb, per_image), get_num_threads());
}

}  // namespace convcore::detail
