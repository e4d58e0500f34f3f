#pragma once
// col2im for stride 1 across (g.sw == 1), a dx row at a time: the adjoint of im2col as a gather.
//
//   im[c][y][x] = sum over r, s with y = i*sh + r*dh - pt, x = j + s*dw - pl, (i, j) < (oh, ow)
//                 of col[c][r][s][i][j]
//
// Each dx row is held in vector registers over the kw taps of one kernel row (the kernel table's
// col2im_row) and written once per kernel row that reaches it; rows no tap reaches are zeroed.
// The terms of each element are added in the order of convcore::col2im's scatter (r, then s),
// starting from zero, so that the two give the same bits. Unlike col2im it overwrites im.
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore::detail {

template <class T>
struct DirectLoops;

// Values before col's first element and after its last that col2im_rows may read (and ignores):
// at most the widest vector less one; one 64-byte line, so that col keeps its buffer's alignment.
template <class T>
constexpr int64_t kCol2imSlack = 64 / int64_t(sizeof(T));

// im[icg][ih][iw] of one image's group from col[K][N] (K = g.col_rows(), N = g.col_cols());
// requires g.sw == 1. col must have kCol2imSlack<T> readable elements on each side.
template <class T>
void col2im_rows(const DirectLoops<T>& k, const Conv2dGeometry& g, const T* col, T* im);

}  // namespace convcore::detail
