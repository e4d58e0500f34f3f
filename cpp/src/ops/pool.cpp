#include "convcore/pool.hpp"

#include <cmath>

#include "convcore/error.hpp"
#include "convcore/parallel.hpp"

namespace convcore {

void validate_pool(const Conv2dGeometry& g, const char* op) {
  CONVCORE_CHECK(g.oc == g.ic, op, ": a pooling window keeps the channels: oc=", g.oc,
                 " must equal ic=", g.ic);
  CONVCORE_CHECK(g.groups == g.ic, op, ": a pooling window works per channel: groups=", g.groups,
                 " must equal ic=", g.ic);
  g.validate(op);
  // PyTorch's rule: every padding at most half the dilated window, so that padding never makes up
  // a whole window on its own in the undilated case.
  const int64_t half_h = (g.dh * (g.kh - 1) + 1) / 2, half_w = (g.dw * (g.kw - 1) + 1) / 2;
  CONVCORE_CHECK(g.pt <= half_h && g.pb <= half_h && g.pl <= half_w && g.pr <= half_w, op,
                 ": padding (top, bottom, left, right) = (", g.pt, ", ", g.pb, ", ", g.pl, ", ",
                 g.pr, ") must be at most half the dilated window, ", half_h, "x", half_w);
}

namespace {

// One plane: y[oh][ow], idx[oh][ow] <- x[ih][iw]. Assumes a validated geometry.
template <class T>
void max_pool2d_plane(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx) {
  const int64_t oh = g.oh(), ow = g.ow();
  for (int64_t i = 0; i < oh; ++i) {
    for (int64_t j = 0; j < ow; ++j) {
      T best = -INFINITY;
      int64_t best_idx = -1;
      for (int64_t r = 0; r < g.kh; ++r) {
        const int64_t h = i * g.sh - g.pt + r * g.dh;
        if (static_cast<uint64_t>(h) >= static_cast<uint64_t>(g.ih)) continue;
        for (int64_t s = 0; s < g.kw; ++s) {
          const int64_t w = j * g.sw - g.pl + s * g.dw;
          if (static_cast<uint64_t>(w) >= static_cast<uint64_t>(g.iw)) continue;
          const T v = x[h * g.iw + w];
          // Strictly greater: ties keep the first maximum. The first NaN wins and stays.
          if (best_idx < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
            best = v;
            best_idx = h * g.iw + w;
          }
        }
      }
      y[i * ow + j] = best;
      idx[i * ow + j] = best_idx;
    }
  }
}

}  // namespace

template <class T>
void max_pool2d_forward(const Conv2dGeometry& g, const T* x, T* y, int64_t* idx) {
  validate_pool(g, "max_pool2d_forward");
  const int64_t planes = g.mb * g.ic, in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  detail::parallel_for(planes, out_plane * g.kh * g.kw, [&](int64_t p) {
    max_pool2d_plane(g, x + p * in_plane, y + p * out_plane, idx + p * out_plane);
  });
}

template <class T>
void max_pool2d_backward(const Conv2dGeometry& g, const int64_t* idx, const T* dy, T* dx) {
  validate_pool(g, "max_pool2d_backward");
  const int64_t planes = g.mb * g.ic, in_plane = g.ih * g.iw, out_plane = g.oh() * g.ow();
  // Every index is checked before anything is written: the scatter below must stay in bounds.
  const int64_t n_out = planes * out_plane;
  for (int64_t k = 0; k < n_out; ++k)
    CONVCORE_CHECK(idx[k] >= -1 && idx[k] < in_plane, "max_pool2d_backward: index ", idx[k],
                   " at position ", k, " is outside the input plane of ", in_plane,
                   " cells (expected -1 or 0..", in_plane - 1, ")");
  detail::parallel_for(planes, in_plane + out_plane, [&](int64_t p) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    const int64_t* ip = idx + p * out_plane;
    for (int64_t k = 0; k < in_plane; ++k) dxp[k] = T(0);
    for (int64_t k = 0; k < out_plane; ++k)
      if (ip[k] >= 0) dxp[ip[k]] += dyp[k];
  });
}

template void max_pool2d_forward<float>(const Conv2dGeometry&, const float*, float*, int64_t*);
template void max_pool2d_forward<double>(const Conv2dGeometry&, const double*, double*, int64_t*);
template void max_pool2d_backward<float>(const Conv2dGeometry&, const int64_t*, const float*,
                                         float*);
template void max_pool2d_backward<double>(const Conv2dGeometry&, const int64_t*, const double*,
                                          double*);

}  // namespace convcore
