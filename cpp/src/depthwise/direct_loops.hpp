#pragma once
// The direct loops: the inner loops that are not a GEMM micro-kernel, those of the depthwise
// kernels (conv2d_depthwise.cpp, depthwise_nhwc.cpp), of the NHWC spread (spread_nhwc.cpp) and
// col2im's rows (igemm/col2im_rows.hpp). Compiled once per instruction set: the portable copy in
// conv2d_depthwise.cpp (16-byte vectors), an AVX2 + FMA copy in depthwise_avx2.cpp (32-byte) and
// an AVX-512 one in depthwise_avx512.cpp (64-byte), chosen at run time with the GEMM's path.
//
// As in gemm/ukernel_simd.hpp, everything here has internal linkage and calls no inline function
// of a standard header, so that no copy built with ISA flags can be merged into the portable path.
#include <cstdint>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>  // masked loads and stores only; its functions are always inlined
#endif

namespace convcore::detail {

// Taps added in one pass (a 3x3 filter in one), and the widest partial-sum vector in elements.
constexpr int kMaxFused = 9;
template <class T>
constexpr int kMaxDotLanes = int(64 / sizeof(T));

// The geometry of a DirectLoops::col2im_row call.
struct Col2imRun {
  int64_t taps, len, tap_stride, off0, doff, ow;
  int64_t rows, src_rows, out_rows;
};

// The direct loops of one instruction set (GemmKernel::loops).
template <class T>
struct DirectLoops {
  // out[p] = (add ? out[p] : 0) + a[0]*x[off[0] + p] + ... + a[n-1]*x[off[n-1] + p], p < len,
  // for 1 <= n <= kMaxFused.
  void (*fused_pass)(int n, int64_t len, const T* x, const int64_t* off, const T* a, bool add,
                     T* out);
  // For each tap t < n, over rows r < rows and columns j < len:
  //   lanes[t][k] += sum_{r, j = k mod L} dy[r*dy_stride + j] * x[off[t] + r*x_stride + j],
  // with L = dot_lanes (<= kMaxDotLanes<T>), in a fixed order; the x runs of all n taps are read
  // against one dy row at a time, and the partial sums stay in registers across the rows. dy and
  // x hold L - 1 readable values past the end of each run (their values unused).
  void (*tap_dots)(int n, int64_t rows, int64_t len, const T* dy, int64_t dy_stride, const T* x,
                   int64_t x_stride, const int64_t* off, T (*lanes)[kMaxDotLanes<T>]);
  int dot_lanes;
  // The NHWC forward of one output pixel (depthwise_nhwc.cpp), along len contiguous channels:
  //   out[o] = init[o] + xs[0][o]*ws[0][o] + ... + xs[n-1][o]*ws[n-1][o], o < len,
  // for n >= 0 taps, added in tap order, a block of channels kept in registers over all taps.
  void (*nhwc_taps)(int64_t n, int64_t len, const T* const* xs, const T* const* ws, const T* init,
                    T* out);
  // nhwc_taps over a run of output pixels whose taps lie at fixed offsets: pixel p < pixels
  // reads tap t at x + off[t] + p*x_stride and writes out + p*len; the same sums, in the same
  // order, as nhwc_taps on each pixel. Several pixels share each weight vector load.
  void (*nhwc_taps_run)(int64_t n, int64_t pixels, int64_t len, const T* x, int64_t x_stride,
                        const int64_t* off, const T* const* ws, const T* init, T* out);
  // The NHWC weight gradient over a run of output pixels, along len contiguous channels:
  //   sums[t][o] += sum_{j < pixels} x[off[t] + j*x_stride + o] * dy[j*dy_stride + o], t < n,
  // the run's sum formed in registers (pixels in order) and then added to sums[t].
  void (*nhwc_tap_sums)(int64_t n, int64_t pixels, int64_t len, const T* dy, int64_t dy_stride,
                        const T* x, int64_t x_stride, const int64_t* off, T* const* sums);
  // A flat run whose weights repeat with a period (the nhwc_spread path, spread_nhwc.cpp):
  //   out[f] = init[f % period] + x[off[0] + f]*w[f % period] + ...
  //            + x[off[n-1] + f]*w[(n-1)*period + f % period],   f < len,
  // blocks of vectors kept in registers over all taps, the sum's order fixed by f's place in len
  // (blocks of few vectors split the taps among partial sums). period is a multiple
  // of dot_lanes; x holds dot_lanes - 1 readable values past each tap's run (their values unused).
  void (*flat_taps)(int64_t n, int64_t len, const T* x, const int64_t* off, const T* w,
                    int64_t period, const T* init, T* out);
  // One kernel row's taps added into dx rows (col2im's gather with stride 1 across,
  // igemm/col2im_rows.hpp): for each row q < k.rows and x < k.len,
  //   out[q*k.out_rows + x] = (add ? that : 0) + the sum over taps s < k.taps with
  //       0 <= x - off(s) < k.ow of src[q*k.src_rows + s*k.tap_stride + x - off(s)],
  //   off(s) = k.off0 + s*k.doff,
  // added in s order, the rows held in vector registers over all taps. Each tap's run of ow
  // values is read in whole vectors, the lanes outside it cleared: up to dot_lanes - 1 values
  // before a run and after it must be readable (their values unused).
  void (*col2im_row)(const Col2imRun& k, const T* src, bool add, T* out);
};

namespace {

template <class T, int N>
void dw_fused_pass(int64_t len, const T* x, const int64_t* off, const T* a, bool add,
                   T* __restrict out) {
  const T* __restrict xs[N];
  T as[N];
  for (int t = 0; t < N; ++t) {
    xs[t] = x + off[t];
    as[t] = a[t];
  }
  if (add) {
    for (int64_t p = 0; p < len; ++p) {
      T s = out[p];
      for (int t = 0; t < N; ++t) s += as[t] * xs[t][p];
      out[p] = s;
    }
  } else {
    for (int64_t p = 0; p < len; ++p) {
      T s = as[0] * xs[0][p];
      for (int t = 1; t < N; ++t) s += as[t] * xs[t][p];
      out[p] = s;
    }
  }
}

template <class T>
void dw_fused_pass_n(int n, int64_t len, const T* x, const int64_t* off, const T* a, bool add,
                     T* out) {
  switch (n) {
    case 1: return dw_fused_pass<T, 1>(len, x, off, a, add, out);
    case 2: return dw_fused_pass<T, 2>(len, x, off, a, add, out);
    case 3: return dw_fused_pass<T, 3>(len, x, off, a, add, out);
    case 4: return dw_fused_pass<T, 4>(len, x, off, a, add, out);
    case 5: return dw_fused_pass<T, 5>(len, x, off, a, add, out);
    case 6: return dw_fused_pass<T, 6>(len, x, off, a, add, out);
    case 7: return dw_fused_pass<T, 7>(len, x, off, a, add, out);
    case 8: return dw_fused_pass<T, 8>(len, x, off, a, add, out);
    default: return dw_fused_pass<T, kMaxFused>(len, x, off, a, add, out);
  }
}

template <class T>
struct IntOf;  // the signed integer of T's width (vector lane masks)
template <>
struct IntOf<float> {
  using type = int32_t;
};
template <>
struct IntOf<double> {
  using type = int64_t;
};

// A vector of VB bytes of T, with the GCC/Clang vector extension, so that every tap keeps its
// partial sums in a register (left to itself, the vectoriser interleaves the taps across j).
template <class T, int VB>
struct DotVecOf {
  typedef T type __attribute__((vector_size(VB)));
};

template <class T, int VB, int N>
void dw_tap_dots(int64_t rows, int64_t len, const T* __restrict dy, int64_t dy_stride,
                 const T* x, int64_t x_stride, const int64_t* off,
                 T (*__restrict lanes)[kMaxDotLanes<T>]) {
  using V = typename DotVecOf<T, VB>::type;
  using M = typename DotVecOf<typename IntOf<T>::type, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  const T* __restrict xs[N];
  V l[N];
  for (int t = 0; t < N; ++t) {
    xs[t] = x + off[t];
    __builtin_memcpy(&l[t], lanes[t], sizeof(V));
  }
  // The last rest = len % L columns of a row, one more vector: dy's and x's read whole, the
  // lanes past the row cleared in both, so that nothing there (an infinity) reaches the sums.
  const int64_t body = len / L * L, rest = len - body;
  M keep;
  for (int k = 0; k < L; ++k) keep[k] = k < rest ? -1 : 0;
  for (int64_t r = 0; r < rows; ++r, dy += dy_stride) {
    for (int64_t j = 0; j < body; j += L) {
      V d;
      __builtin_memcpy(&d, dy + j, sizeof(V));
      for (int t = 0; t < N; ++t) {
        V v;
        __builtin_memcpy(&v, xs[t] + j, sizeof(V));
        l[t] += d * v;
      }
    }
    if (rest > 0) {
      V d;
      __builtin_memcpy(&d, dy + body, sizeof(V));
      d = keep != 0 ? d : V{};
      for (int t = 0; t < N; ++t) {
        V v;
        __builtin_memcpy(&v, xs[t] + body, sizeof(V));
        l[t] += d * (keep != 0 ? v : V{});
      }
    }
    for (int t = 0; t < N; ++t) xs[t] += x_stride;
  }
  for (int t = 0; t < N; ++t) __builtin_memcpy(lanes[t], &l[t], sizeof(V));
}

template <class T, int VB>
void dw_tap_dots_n(int n, int64_t rows, int64_t len, const T* dy, int64_t dy_stride, const T* x,
                   int64_t x_stride, const int64_t* off, T (*lanes)[kMaxDotLanes<T>]) {
  switch (n) {
    case 1: return dw_tap_dots<T, VB, 1>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 2: return dw_tap_dots<T, VB, 2>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 3: return dw_tap_dots<T, VB, 3>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 4: return dw_tap_dots<T, VB, 4>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 5: return dw_tap_dots<T, VB, 5>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 6: return dw_tap_dots<T, VB, 6>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 7: return dw_tap_dots<T, VB, 7>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    case 8: return dw_tap_dots<T, VB, 8>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
    default:
      return dw_tap_dots<T, VB, kMaxFused>(rows, len, dy, dy_stride, x, x_stride, off, lanes);
  }
}

template <class T, int VB>
void dw_nhwc_taps(int64_t n, int64_t len, const T* const* xs, const T* const* ws, const T* init,
                  T* __restrict out) {
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  constexpr int kBlock = 4;  // vectors of channels accumulated together
  int64_t o = 0;
  for (; o + kBlock * L <= len; o += kBlock * L) {
    V acc[kBlock];
    for (int a = 0; a < kBlock; ++a) __builtin_memcpy(&acc[a], init + o + a * L, sizeof(V));
    for (int64_t t = 0; t < n; ++t)
      for (int a = 0; a < kBlock; ++a) {
        V x, w;
        __builtin_memcpy(&x, xs[t] + o + a * L, sizeof(V));
        __builtin_memcpy(&w, ws[t] + o + a * L, sizeof(V));
        acc[a] += x * w;
      }
    for (int a = 0; a < kBlock; ++a) __builtin_memcpy(out + o + a * L, &acc[a], sizeof(V));
  }
  for (; o + L <= len; o += L) {
    V acc;
    __builtin_memcpy(&acc, init + o, sizeof(V));
    for (int64_t t = 0; t < n; ++t) {
      V x, w;
      __builtin_memcpy(&x, xs[t] + o, sizeof(V));
      __builtin_memcpy(&w, ws[t] + o, sizeof(V));
      acc += x * w;
    }
    __builtin_memcpy(out + o, &acc, sizeof(V));
  }
  for (; o < len; ++o) {
    T acc = init[o];
    for (int64_t t = 0; t < n; ++t) acc += xs[t][o] * ws[t][o];
    out[o] = acc;
  }
}

// P pixels of a run (dw_nhwc_taps_run) over all len channels: blocks of 2 vectors, then single
// vectors, then single channels, each channel's taps added in order as in dw_nhwc_taps.
template <class T, int VB, int P>
__attribute__((always_inline)) inline void dw_nhwc_run_pixels(int64_t n, int64_t len, const T* x,
                                                              int64_t x_stride, const int64_t* off,
                                                              const T* const* ws, const T* init,
                                                              T* __restrict out) {
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  constexpr int kVec = 2;
  int64_t o = 0;
  for (; o + kVec * L <= len; o += kVec * L) {
    V acc[P][kVec];
    for (int q = 0; q < P; ++q)
      for (int v = 0; v < kVec; ++v) __builtin_memcpy(&acc[q][v], init + o + v * L, sizeof(V));
    for (int64_t t = 0; t < n; ++t) {
      const T* xt = x + off[t] + o;
      V w[kVec];
      for (int v = 0; v < kVec; ++v) __builtin_memcpy(&w[v], ws[t] + o + v * L, sizeof(V));
      for (int q = 0; q < P; ++q)
        for (int v = 0; v < kVec; ++v) {
          V xv;
          __builtin_memcpy(&xv, xt + q * x_stride + v * L, sizeof(V));
          acc[q][v] += xv * w[v];
        }
    }
    for (int q = 0; q < P; ++q)
      for (int v = 0; v < kVec; ++v) __builtin_memcpy(out + q * len + o + v * L, &acc[q][v], sizeof(V));
  }
  for (; o + L <= len; o += L) {
    V acc[P];
    for (int q = 0; q < P; ++q) __builtin_memcpy(&acc[q], init + o, sizeof(V));
    for (int64_t t = 0; t < n; ++t) {
      V w;
      __builtin_memcpy(&w, ws[t] + o, sizeof(V));
      for (int q = 0; q < P; ++q) {
        V xv;
        __builtin_memcpy(&xv, x + off[t] + q * x_stride + o, sizeof(V));
        acc[q] += xv * w;
      }
    }
    for (int q = 0; q < P; ++q) __builtin_memcpy(out + q * len + o, &acc[q], sizeof(V));
  }
  for (; o < len; ++o)
    for (int q = 0; q < P; ++q) {
      T acc = init[o];
      for (int64_t t = 0; t < n; ++t) acc += x[off[t] + q * x_stride + o] * ws[t][o];
      out[q * len + o] = acc;
    }
}

template <class T, int VB>
void dw_nhwc_taps_run(int64_t n, int64_t pixels, int64_t len, const T* x, int64_t x_stride,
                      const int64_t* off, const T* const* ws, const T* init, T* __restrict out) {
  constexpr int kPixels = 4;  // 4 x 2 vector accumulators: 8 of the 16 registers
  int64_t p = 0;
  for (; p + kPixels <= pixels; p += kPixels)
    dw_nhwc_run_pixels<T, VB, kPixels>(n, len, x + p * x_stride, x_stride, off, ws, init,
                                       out + p * len);
  for (; p < pixels; ++p)
    dw_nhwc_run_pixels<T, VB, 1>(n, len, x + p * x_stride, x_stride, off, ws, init, out + p * len);
}

// NT taps of dw_nhwc_tap_sums (NT known at compile time, so that the accumulators stay in
// registers), each channel vector's sum over the pixels formed in order, then added to sums[t].
template <class T, int VB, int NT>
void dw_nhwc_tap_sums_n(int64_t pixels, int64_t len, const T* dy, int64_t dy_stride, const T* x,
                        int64_t x_stride, const int64_t* off, T* const* sums) {
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  const T* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = x + off[t];
  int64_t o = 0;
  for (; o + L <= len; o += L) {
    V acc[NT] = {};
    for (int64_t j = 0; j < pixels; ++j) {
      V d;
      __builtin_memcpy(&d, dy + j * dy_stride + o, sizeof(V));
      for (int t = 0; t < NT; ++t) {
        V v;
        __builtin_memcpy(&v, xs[t] + j * x_stride + o, sizeof(V));
        acc[t] += v * d;
      }
    }
    for (int t = 0; t < NT; ++t) {
      V s;
      __builtin_memcpy(&s, sums[t] + o, sizeof(V));
      s += acc[t];
      __builtin_memcpy(sums[t] + o, &s, sizeof(V));
    }
  }
  for (; o < len; ++o)
    for (int t = 0; t < NT; ++t) {
      T acc = 0;
      for (int64_t j = 0; j < pixels; ++j) acc += xs[t][j * x_stride + o] * dy[j * dy_stride + o];
      sums[t][o] += acc;
    }
}

template <class T, int VB>
void dw_nhwc_tap_sums(int64_t n, int64_t pixels, int64_t len, const T* dy, int64_t dy_stride,
                      const T* x, int64_t x_stride, const int64_t* off, T* const* sums) {
  // Up to kMaxFused taps per pass (a 3x3 filter in one): kMaxFused accumulators, one vector each.
  for (int64_t t0 = 0; t0 < n; t0 += kMaxFused) {
    const int64_t nt = n - t0 < kMaxFused ? n - t0 : kMaxFused;
    const int64_t* o = off + t0;
    T* const* su = sums + t0;
    switch (nt) {
      case 1: dw_nhwc_tap_sums_n<T, VB, 1>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 2: dw_nhwc_tap_sums_n<T, VB, 2>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 3: dw_nhwc_tap_sums_n<T, VB, 3>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 4: dw_nhwc_tap_sums_n<T, VB, 4>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 5: dw_nhwc_tap_sums_n<T, VB, 5>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 6: dw_nhwc_tap_sums_n<T, VB, 6>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 7: dw_nhwc_tap_sums_n<T, VB, 7>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      case 8: dw_nhwc_tap_sums_n<T, VB, 8>(pixels, len, dy, dy_stride, x, x_stride, o, su); break;
      default:
        dw_nhwc_tap_sums_n<T, VB, kMaxFused>(pixels, len, dy, dy_stride, x, x_stride, o, su);
    }
  }
}

// B vectors of a flat_taps run from f0, into out. The taps go round C partial sums per vector
// (tap t into sum t mod C, then ((s0 + s1) + (s2 + s3))), so that a block of few vectors still has
// enough independent FMA chains to cover the FMA's latency.
template <class T, int VB, int B, int C>
__attribute__((always_inline)) inline void dw_flat_block(int64_t n, int64_t f0, const T* x,
                                                         const int64_t* off, const T* w,
                                                         int64_t period, const T* init,
                                                         T* __restrict out) {
  static_assert(C == 1 || C == 2 || C == 4, "partial sums: 1, 2 or 4");
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  V acc[C][B];
  int64_t at[B];  // each vector's place in the period
#pragma GCC unroll 16
  for (int v = 0; v < B; ++v) {
    at[v] = (f0 + v * L) % period;
    __builtin_memcpy(&acc[0][v], init + at[v], sizeof(V));
    for (int c = 1; c < C; ++c) acc[c][v] = V{};
  }
  // Tap t into partial sum c.
  const auto add_tap = [&](int c, int64_t t) __attribute__((always_inline)) {
    const T* xt = x + off[t] + f0;
    const T* wt = w + t * period;
#pragma GCC unroll 16
    for (int v = 0; v < B; ++v) {
      V a, b;
      __builtin_memcpy(&a, xt + v * L, sizeof(V));
      __builtin_memcpy(&b, wt + at[v], sizeof(V));
      acc[c][v] += a * b;
    }
  };
  int64_t t = 0;
  for (; t + C <= n; t += C)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) add_tap(c, t + c);
  for (int c = 0; t < n; ++t, ++c) add_tap(c, t);
#pragma GCC unroll 16
  for (int v = 0; v < B; ++v) {
    if constexpr (C == 4) acc[0][v] = (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v]);
    if constexpr (C == 2) acc[0][v] += acc[1][v];
    __builtin_memcpy(out + v * L, &acc[0][v], sizeof(V));
  }
}

// PV*R vectors of a flat_taps run from f0 whose period is PV vectors: each tap's PV weight
// vectors are loaded once and serve R vectors each (what makes a few channels cheaper than
// dw_flat_block's load per vector). The same sums in the same order as dw_flat_block<.., 1>.
template <class T, int VB, int PV, int R>
__attribute__((always_inline)) inline void dw_flat_periodic(int64_t n, int64_t f0, const T* x,
                                                            const int64_t* off, const T* w,
                                                            const T* init, T* __restrict out) {
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  constexpr int64_t period = int64_t{PV} * L;
  int64_t at[PV];  // the place in the period of vectors k, k + PV, k + 2 PV, ...
  for (int k = 0; k < PV; ++k) at[k] = (f0 + k * L) % period;
  V acc[PV * R];
#pragma GCC unroll 16
  for (int v = 0; v < PV * R; ++v) __builtin_memcpy(&acc[v], init + at[v % PV], sizeof(V));
  for (int64_t t = 0; t < n; ++t) {
    const T* xt = x + off[t] + f0;
    V wv[PV];
#pragma GCC unroll 16
    for (int k = 0; k < PV; ++k) __builtin_memcpy(&wv[k], w + t * period + at[k], sizeof(V));
#pragma GCC unroll 16
    for (int v = 0; v < PV * R; ++v) {
      V a;
      __builtin_memcpy(&a, xt + v * L, sizeof(V));
      acc[v] += a * wv[v % PV];
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < PV * R; ++v) __builtin_memcpy(out + v * L, &acc[v], sizeof(V));
}

template <class T, int VB, int PV, int R>
int64_t dw_flat_periodic_run(int64_t n, int64_t len, const T* x, const int64_t* off, const T* w,
                             const T* init, T* out) {
  constexpr int64_t step = int64_t{PV} * R * (VB / int(sizeof(T)));
  int64_t f = 0;
  for (; f + step <= len; f += step)
    dw_flat_periodic<T, VB, PV, R>(n, f, x, off, w, init, out + f);
  return f;
}

template <class T, int VB>
void dw_flat_taps(int64_t n, int64_t len, const T* x, const int64_t* off, const T* w,
                  int64_t period, const T* init, T* __restrict out) {
  constexpr int L = VB / int(sizeof(T));
  int64_t f = 0;
  // Periods of up to four vectors: blocks of 8 or 9 vectors sharing each tap's weight vectors.
  switch (period / L) {
    case 1: f = dw_flat_periodic_run<T, VB, 1, 8>(n, len, x, off, w, init, out); break;
    case 2: f = dw_flat_periodic_run<T, VB, 2, 4>(n, len, x, off, w, init, out); break;
    case 3: f = dw_flat_periodic_run<T, VB, 3, 3>(n, len, x, off, w, init, out); break;
    case 4: f = dw_flat_periodic_run<T, VB, 4, 2>(n, len, x, off, w, init, out); break;
    default: break;
  }
  for (; f + 8 * L <= len; f += 8 * L)
    dw_flat_block<T, VB, 8, 1>(n, f, x, off, w, period, init, out + f);
  if (f + 4 * L <= len) {
    dw_flat_block<T, VB, 4, 2>(n, f, x, off, w, period, init, out + f);
    f += 4 * L;
  }
  if (f + 2 * L <= len) {
    dw_flat_block<T, VB, 2, 4>(n, f, x, off, w, period, init, out + f);
    f += 2 * L;
  }
  if (f + L <= len) {
    dw_flat_block<T, VB, 1, 4>(n, f, x, off, w, period, init, out + f);
    f += L;
  }
  if (f < len) {  // the last len % L values: one vector through a buffer
    T last[L];
    dw_flat_block<T, VB, 1, 4>(n, f, x, off, w, period, init, last);
    for (int64_t k = 0; f + k < len; ++k) out[f + k] = last[k];
  }
}

// The first n (1 <= n <= L) lanes of a vector of VB bytes: read from p, the rest zero, and
// written to p, nothing past them touched. Masked moves where the file is built for AVX2 or
// AVX-512, else lane by lane.
// Each lane's index, in integers of T's width.
template <class T, int VB>
__attribute__((always_inline)) inline typename DotVecOf<typename IntOf<T>::type, VB>::type
lane_index() {
  typename DotVecOf<typename IntOf<T>::type, VB>::type lane;
  for (int k = 0; k < VB / int(sizeof(T)); ++k) lane[k] = k;
  return lane;
}
#if defined(__AVX2__)
template <class T, int VB>
__attribute__((always_inline)) inline __m256i first_lanes_mask(int n) {  // -1 in lanes < n
  return (__m256i)(lane_index<T, VB>() < n);
}
#endif
template <class T, int VB>
__attribute__((always_inline)) inline typename DotVecOf<T, VB>::type first_lanes_load(const T* p,
                                                                                       int n) {
  using V = typename DotVecOf<T, VB>::type;
  constexpr int L = VB / int(sizeof(T));
#if defined(__AVX512F__)
  if constexpr (VB == 64) {
    const unsigned m = (1u << n) - 1;
    if constexpr (sizeof(T) == 4)
      return (V)_mm512_maskz_loadu_ps(__mmask16(m), p);
    else
      return (V)_mm512_maskz_loadu_pd(__mmask8(m), p);
  }
#endif
#if defined(__AVX2__)
  if constexpr (VB == 32) {
    const __m256i m = first_lanes_mask<T, VB>(n);
    if constexpr (sizeof(T) == 4)
      return (V)_mm256_maskload_ps(p, m);
    else
      return (V)_mm256_maskload_pd(p, m);
  }
#endif
  V v{};
  for (int k = 0; k < L; ++k)
    if (k < n) v[k] = p[k];
  return v;
}
template <class T, int VB>
__attribute__((always_inline)) inline void first_lanes_store(T* p, typename DotVecOf<T, VB>::type v,
                                                            int n) {
  constexpr int L = VB / int(sizeof(T));
#if defined(__AVX512F__)
  if constexpr (VB == 64) {
    const unsigned m = (1u << n) - 1;
    if constexpr (sizeof(T) == 4)
      _mm512_mask_storeu_ps(p, __mmask16(m), (__m512)v);
    else
      _mm512_mask_storeu_pd(p, __mmask8(m), (__m512d)v);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (VB == 32) {
    const __m256i m = first_lanes_mask<T, VB>(n);
    if constexpr (sizeof(T) == 4)
      _mm256_maskstore_ps(p, m, (__m256)v);
    else
      _mm256_maskstore_pd(p, m, (__m256d)v);
    return;
  }
#endif
#pragma GCC unroll 16
  for (int k = 0; k < L; ++k)
    if (k < n) p[k] = v[k];
}

// NV vectors from x on of P rows of a col2im_row call (row q: src + q*src_rows, out +
// q*out_rows), the last vector of each row holding last_lanes (1..L) of it. The lanes of a
// vector that a tap's run covers, [a, b), depend on the tap and the vector only: found once for
// the P rows. Whole vectors are added as loaded, partial ones through a lane mask; vectors the
// run misses are skipped. P*NV sums in flight.
template <class T, int VB, int P, int NV>
__attribute__((always_inline)) inline void c2i_block(const Col2imRun& k, int64_t x,
                                                     int last_lanes, const T* src, bool add,
                                                     T* __restrict out) {
  using V = typename DotVecOf<T, VB>::type;
  using I = typename IntOf<T>::type;
  using M = typename DotVecOf<I, VB>::type;
  constexpr int L = VB / int(sizeof(T));
  const M lane = lane_index<T, VB>();
  V acc[P][NV];
#pragma GCC unroll 8
  for (int q = 0; q < P; ++q)
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) {
      const T* o = out + q * k.out_rows + x + u * L;
      if (!add)
        acc[q][u] = V{};
      else if (u < NV - 1 || last_lanes == L)
        __builtin_memcpy(&acc[q][u], o, sizeof(V));
      else
        acc[q][u] = first_lanes_load<T, VB>(o, last_lanes);
    }
  for (int64_t s = 0; s < k.taps; ++s) {
    const int64_t off = k.off0 + s * k.doff;
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) {
      const int64_t a = off - (x + u * L), b = a + k.ow;  // lanes [a, b) are in the run
      if (b <= 0 || a >= L) continue;
      const T* v0 = src + (s * k.tap_stride - a);
      if (a <= 0 && b >= L) {
#pragma GCC unroll 8
        for (int q = 0; q < P; ++q) {
          V v;
          __builtin_memcpy(&v, v0 + q * k.src_rows, sizeof(V));
          acc[q][u] += v;
        }
      } else {
        const I lo = a > 0 ? I(a) : 0, hi = b < L ? I(b) : I(L);
        const M keep = (lane >= lo) & (lane < hi);
#pragma GCC unroll 8
        for (int q = 0; q < P; ++q) {
          V v;
          __builtin_memcpy(&v, v0 + q * k.src_rows, sizeof(V));
          acc[q][u] += keep ? v : V{};
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < P; ++q)
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) {
      T* o = out + q * k.out_rows + x + u * L;
      if (u < NV - 1 || last_lanes == L)
        __builtin_memcpy(o, &acc[q][u], sizeof(V));
      else
        first_lanes_store<T, VB>(o, acc[q][u], last_lanes);
    }
}

// c2i_block with nv (1 <= nv <= NV) vectors.
template <class T, int VB, int P, int NV>
__attribute__((always_inline)) inline void c2i_vectors(const Col2imRun& k, int64_t x, int64_t nv,
                                                       int last, const T* src, bool add, T* out) {
  if constexpr (NV > 1)
    if (nv < NV) return c2i_vectors<T, VB, P, NV - 1>(k, x, nv, last, src, add, out);
  c2i_block<T, VB, P, NV>(k, x, last, src, add, out);
}

template <class T, int VB>
void c2i_row(const Col2imRun& k, const T* src, bool add, T* out) {
  constexpr int L = VB / int(sizeof(T));
  constexpr int kBlock = 4;  // vectors of one long row accumulated together
  const int64_t nv = (k.len + L - 1) / L;
  const int last = int(k.len - (nv - 1) * L);
  if (nv > 3) {  // long rows one at a time, in blocks of kBlock vectors
    for (int64_t q = 0; q < k.rows; ++q, src += k.src_rows, out += k.out_rows) {
      int64_t x = 0;
      for (; x + kBlock * L <= k.len; x += kBlock * L)
        c2i_block<T, VB, 1, kBlock>(k, x, L, src, add, out);
      const int64_t rest = k.len - x;
      if (rest == 0) continue;
      const int tail = int(rest - (rest - 1) / L * L);
      c2i_vectors<T, VB, 1, kBlock>(k, x, (rest + L - 1) / L, tail, src, add, out);
    }
    return;
  }
  // Short rows (nv <= 3): several rows together, so that 4 to 6 sums are in flight.
  const int64_t p = nv == 1 ? 4 : 2;
  int64_t q = 0;
  for (; q + p <= k.rows; q += p) {
    if (p == 4)
      c2i_vectors<T, VB, 4, 3>(k, 0, nv, last, src + q * k.src_rows, add, out + q * k.out_rows);
    else
      c2i_vectors<T, VB, 2, 3>(k, 0, nv, last, src + q * k.src_rows, add, out + q * k.out_rows);
  }
  for (; q < k.rows; ++q)
    c2i_vectors<T, VB, 1, 3>(k, 0, nv, last, src + q * k.src_rows, add, out + q * k.out_rows);
}

// The table with vectors of DB bytes in tap_dots and the NHWC loops.
template <class T, int DB>
constexpr DirectLoops<T> direct_loops_for() {
  return {&dw_fused_pass_n<T>,          &dw_tap_dots_n<T, DB>,    DB / int(sizeof(T)),
          &dw_nhwc_taps<T, DB>,          &dw_nhwc_taps_run<T, DB>, &dw_nhwc_tap_sums<T, DB>,
          &dw_flat_taps<T, DB>,          &c2i_row<T, DB>};
}

}  // namespace

// The portable tables (conv2d_depthwise.cpp).
extern const DirectLoops<float> kDirectLoopsGenericF32;
extern const DirectLoops<double> kDirectLoopsGenericF64;
// The AVX2 + FMA tables (depthwise_avx2.cpp); defined only in x86 SIMD builds.
extern const DirectLoops<float> kDirectLoopsAvx2F32;
extern const DirectLoops<double> kDirectLoopsAvx2F64;
// The AVX-512F tables (depthwise_avx512.cpp); defined only in x86 SIMD builds.
extern const DirectLoops<float> kDirectLoopsAvx512F32;
extern const DirectLoops<double> kDirectLoopsAvx512F64;

}  // namespace convcore::detail
