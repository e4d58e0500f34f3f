#include "reference/conv2d_ref.hpp"

namespace convcore::ref {

template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t oh = g.oh(), ow = g.ow(), icg = g.icg(), ocg = g.ocg();
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t o = 0; o < g.oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = bias ? double(bias[o]) : 0.0;
          const int64_t gi = o / ocg;
          for (int64_t c = 0; c < icg; ++c)
            for (int64_t r = 0; r < g.kh; ++r)
              for (int64_t q = 0; q < g.kw; ++q) {
                const int64_t yy = i * g.sh + r * g.dh - g.pt, xx = j * g.sw + q * g.dw - g.pl;
                if (yy < 0 || yy >= g.ih || xx < 0 || xx >= g.iw) continue;
                s += double(x[((n * g.ic + gi * icg + c) * g.ih + yy) * g.iw + xx]) *
                     double(w[((o * icg + c) * g.kh + r) * g.kw + q]);
              }
          y[((n * g.oc + o) * oh + i) * ow + j] = T(s);
        }
}

template <class T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* w, const T* dy, T* dx) {
  const int64_t oh = g.oh(), ow = g.ow(), icg = g.icg(), ocg = g.ocg();
  for (int64_t n = 0; n < g.mb; ++n)
    for (int64_t c = 0; c < g.ic; ++c)
      for (int64_t yy = 0; yy < g.ih; ++yy)
        for (int64_t xx = 0; xx < g.iw; ++xx) {
          double s = 0.0;
          const int64_t gi = c / icg, cg = c % icg;
          for (int64_t og = 0; og < ocg; ++og)
            for (int64_t r = 0; r < g.kh; ++r)
              for (int64_t q = 0; q < g.kw; ++q) {
                int64_t i = yy + g.pt - r * g.dh, j = xx + g.pl - q * g.dw;
                if (i < 0 || j < 0 || i % g.sh || j % g.sw) continue;
                i /= g.sh;
                j /= g.sw;
                if (i >= oh || j >= ow) continue;
                const int64_t o = gi * ocg + og;
                s += double(dy[((n * g.oc + o) * oh + i) * ow + j]) *
                     double(w[((o * icg + cg) * g.kh + r) * g.kw + q]);
              }
          dx[((n * g.ic + c) * g.ih + yy) * g.iw + xx] = T(s);
        }
}

template <class T>
void conv2d_backward_weight(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  const int64_t oh = g.oh(), ow = g.ow(), icg = g.icg(), ocg = g.ocg();
  for (int64_t o = 0; o < g.oc; ++o)
    for (int64_t c = 0; c < icg; ++c)
      for (int64_t r = 0; r < g.kh; ++r)
        for (int64_t q = 0; q < g.kw; ++q) {
          double s = 0.0;
          const int64_t gi = o / ocg;
          for (int64_t n = 0; n < g.mb; ++n)
            for (int64_t i = 0; i < oh; ++i)
              for (int64_t j = 0; j < ow; ++j) {
                const int64_t yy = i * g.sh + r * g.dh - g.pt, xx = j * g.sw + q * g.dw - g.pl;
                if (yy < 0 || yy >= g.ih || xx < 0 || xx >= g.iw) continue;
                s += double(dy[((n * g.oc + o) * oh + i) * ow + j]) *
                     double(x[((n * g.ic + gi * icg + c) * g.ih + yy) * g.iw + xx]);
              }
          dw[((o * icg + c) * g.kh + r) * g.kw + q] = T(s);
        }
}

template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* dy, T* db) {
  const int64_t ohw = g.oh() * g.ow();
  for (int64_t o = 0; o < g.oc; ++o) {
    double s = 0.0;
    for (int64_t n = 0; n < g.mb; ++n)
      for (int64_t p = 0; p < ohw; ++p) s += double(dy[(n * g.oc + o) * ohw + p]);
    db[o] = T(s);
  }
}

#define CONVCORE_INSTANTIATE(T)                                                             \
  template void conv2d_forward<T>(const Conv2dGeometry&, const T*, const T*, const T*, T*); \
  template void conv2d_backward_input<T>(const Conv2dGeometry&, const T*, const T*, T*);    \
  template void conv2d_backward_weight<T>(const Conv2dGeometry&, const T*, const T*, T*);   \
  template void conv2d_backward_bias<T>(const Conv2dGeometry&, const T*, T*);
CONVCORE_INSTANTIATE(float)
CONVCORE_INSTANTIATE(double)
#undef CONVCORE_INSTANTIATE

}  // namespace convcore::ref
