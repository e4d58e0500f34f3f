#pragma once
// Data movement of the convolution: im2col / col2im, zero insertion for the stride, padding and
// kernel flipping. Templates over float and double, instantiated in im2col.cpp.
// All work on one image; im2col/col2im on one group of it (g.ic / g.groups channels).
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore {

// col[c][r][s][i][j] <- xp[c][i*sh + r*dh][j*sw + s*dw]       c < ic/groups, (i, j) < (oh, ow)
// where xp is im[c][ih][iw] padded by (pt, pb, pl, pr); reads outside im give 0.
// Negative padding is allowed here (it crops): the flipped-kernel backward pass uses it.
template <class T>
void im2col(const Conv2dGeometry& g, const T* im, T* col);

// The adjoint of im2col: im[c][y][x] += every col entry that im2col read from (y, x).
template <class T>
void col2im(const Conv2dGeometry& g, const T* col, T* im);

// Zero insertion (tutorial: "expand_stride"): expanded[c][i*sh][j*sw] = delta[c][i][j], zeros
// elsewhere; expanded is channels x eh x ew (the stride-1 output size, see Conv2dGeometry::eh),
// so trailing rows/columns stay zero when the stride did not divide.
template <class T>
void expand_stride(const Conv2dGeometry& g, int64_t channels, const T* delta, T* expanded);

// dst[c][pt + y][pl + x] = src[c][y][x], zeros in the border: dst is
// channels x (h + pt + pb) x (w + pl + pr).
template <class T>
void pad(int64_t channels, int64_t h, int64_t w, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
         const T* src, T* dst);

// Kernels rotated by 180 degrees with the roles of ic and oc swapped, per group:
//   wf[gi*icg + c][o][r][s] = w[gi*ocg + o][c][kh-1-r][kw-1-s]
// w is oc x icg x kh x kw, wf is ic x ocg x kh x kw.
template <class T>
void flip_kernels(const Conv2dGeometry& g, const T* w, T* wf);

}  // namespace convcore
