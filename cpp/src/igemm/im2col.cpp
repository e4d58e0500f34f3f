#include "convcore/im2col.hpp"

#include <algorithm>
#include <cstring>

#include "igemm/padded_image.hpp"

namespace convcore {
namespace {

// 0 <= a < b in one compare (Caffe's is_a_ge_zero_and_a_lt_b).
inline bool in_range(int64_t a, int64_t b) {
  return static_cast<uint64_t>(a) < static_cast<uint64_t>(b);
}

// Visits every (col row, output pixel) pair with the image offset it reads, or -1 when it falls
// in the padding: f(col_index, im_index_or_minus_one). One loop nest for im2col and col2im.
template <class F>
void for_each_col_entry(const Conv2dGeometry& g, F&& f) {
  const int64_t oh = g.oh(), ow = g.ow(), channels = g.icg();
  int64_t idx = 0;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t r = 0; r < g.kh; ++r)
      for (int64_t s = 0; s < g.kw; ++s)
        for (int64_t i = 0; i < oh; ++i) {
          const int64_t y = i * g.sh + r * g.dh - g.pt;
          if (!in_range(y, g.ih)) {
            for (int64_t j = 0; j < ow; ++j) f(idx++, int64_t{-1});
            continue;
          }
          const int64_t row = (c * g.ih + y) * g.iw;
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t x = j * g.sw + s * g.dw - g.pl;
            f(idx++, in_range(x, g.iw) ? row + x : int64_t{-1});
          }
        }
}

}  // namespace

template <class T>
void im2col(const Conv2dGeometry& g, const T* im, T* col) {
  for_each_col_entry(g, [&](int64_t k, int64_t at) { col[k] = at >= 0 ? im[at] : T(0); });
}

template <class T>
void col2im(const Conv2dGeometry& g, const T* col, T* im) {
  for_each_col_entry(g, [&](int64_t k, int64_t at) {
    if (at >= 0) im[at] += col[k];
  });
}

template <class T>
void expand_stride(const Conv2dGeometry& g, int64_t channels, const T* delta, T* expanded) {
  const int64_t oh = g.oh(), ow = g.ow(), eh = g.eh(), ew = g.ew();
  std::fill(expanded, expanded + channels * eh * ew, T(0));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        expanded[(c * eh + i * g.sh) * ew + j * g.sw] = delta[(c * oh + i) * ow + j];
}

template <class T>
void pad(int64_t channels, int64_t h, int64_t w, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
         const T* src, T* dst) {
  const int64_t hp = h + pt + pb, wp = w + pl + pr;
  for (int64_t c = 0; c < channels; ++c)
    detail::place_plane(src + c * h * w, h, w, pt, pl, hp, wp, dst + c * hp * wp, true);
}

template <class T>
void flip_kernels(const Conv2dGeometry& g, const T* w, T* wf) {
  const int64_t icg = g.icg(), ocg = g.ocg(), khw = g.kh * g.kw;
  for (int64_t gi = 0; gi < g.groups; ++gi)
    for (int64_t o = 0; o < ocg; ++o)
      for (int64_t c = 0; c < icg; ++c) {
        const T* src = w + ((gi * ocg + o) * icg + c) * khw;
        T* dst = wf + ((gi * icg + c) * ocg + o) * khw;
        for (int64_t t = 0; t < khw; ++t) dst[t] = src[khw - 1 - t];  // rot180 of a row-major kh x kw
      }
}

#define CONVCORE_INSTANTIATE(T)                                                              \
  template void im2col<T>(const Conv2dGeometry&, const T*, T*);                              \
  template void col2im<T>(const Conv2dGeometry&, const T*, T*);                              \
  template void expand_stride<T>(const Conv2dGeometry&, int64_t, const T*, T*);              \
  template void pad<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,         \
                       const T*, T*);                                                        \
  template void flip_kernels<T>(const Conv2dGeometry&, const T*, T*);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore
