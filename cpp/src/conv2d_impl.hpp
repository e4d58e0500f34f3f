#pragma once
// Internals shared by the forward and backward ops.
#include <algorithm>
#include <cstdint>

#include "convcore/activation.hpp"
#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"

namespace convcore::detail {

// The forward convolution without validation: g may carry negative padding (a crop), which the
// flipped-kernel backward pass produces. bias may be null.
template <class T>
void forward_unchecked(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y,
                       Activation act);

// Whether im2col is the identity for g (1x1 kernel, stride 1, no padding): the GEMM reads x.
inline bool col_is_input(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pb == 0 &&
         g.pl == 0 && g.pr == 0;
}

// How many threads an image-parallel loop over mb images uses (at least 1).
inline int64_t image_threads(int64_t mb) {
  return std::max<int64_t>(1, std::min<int64_t>(mb, get_num_threads()));
}

}  // namespace convcore::detail
