#include "convcore/im2col.hpp"

#include <limits>
#include <vector>

#include "check.hpp"
#include "convcore/gemm.hpp"
#include "gemm/ukernel.hpp"
#include "igemm/col2im_rows.hpp"
#include "test_util.hpp"

using convcore::Conv2dGeometry;
using testutil::geom;

template <class T>
void check_im2col(const Conv2dGeometry& g) {
  const int64_t oh = g.oh(), ow = g.ow(), K = g.col_rows(), N = g.col_cols();
  auto x = testutil::random_vector<T>(g.icg() * g.ih * g.iw, 3);
  std::vector<T> col(K * N, T(-7));
  convcore::im2col(g, x.data(), col.data());
  bool ok = true;
  for (int64_t c = 0; c < g.icg(); ++c)
    for (int64_t r = 0; r < g.kh; ++r)
      for (int64_t s = 0; s < g.kw; ++s)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t y = i * g.sh + r * g.dh - g.pt, xx = j * g.sw + s * g.dw - g.pl;
            const T want = (y >= 0 && y < g.ih && xx >= 0 && xx < g.iw)
                               ? x[(c * g.ih + y) * g.iw + xx] : T(0);
            ok = ok && col[(((c * g.kh + r) * g.kw + s) * oh + i) * ow + j] == want;
          }
  CHECK_MSG(ok, "im2col " << g);

  // col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>.
  auto cvec = testutil::random_vector<T>(K * N, 4);
  std::vector<T> back(x.size(), T(0));
  convcore::col2im(g, cvec.data(), back.data());
  double lhs = 0, rhs = 0;
  for (int64_t k = 0; k < K * N; ++k) lhs += double(col[k]) * double(cvec[k]);
  for (size_t k = 0; k < x.size(); ++k) rhs += double(x[k]) * double(back[k]);
  CHECK_MSG(check::close(lhs, rhs, 1e-5, 1e-6), "adjoint " << g << " " << lhs << " vs " << rhs);
}

template <class T>
void check_expand_pad_flip() {
  // expand_stride: stride 3 on a 2x2 delta of an input whose size does not divide (trailing zeros).
  const Conv2dGeometry g = geom(1, 1, 8, 7, 2, 3, 2, 3, 2);  // oh=2, ow=3, eh=6, ew=6
  CHECK(g.oh() == 2 && g.ow() == 3 && g.eh() == 6 && g.ew() == 6);
  auto d = testutil::random_vector<T>(2 * 2 * 3, 5);
  std::vector<T> e(2 * 6 * 6, T(-1));
  convcore::expand_stride(g, 2, d.data(), e.data());
  bool ok = true;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 6; ++x) {
        const bool hit = y % 3 == 0 && x % 2 == 0 && y / 3 < 2 && x / 2 < 3;
        const T want = hit ? d[(c * 2 + y / 3) * 3 + x / 2] : T(0);
        ok = ok && e[(c * 6 + y) * 6 + x] == want;
      }
  CHECK_MSG(ok, "expand_stride");

  // pad
  auto s = testutil::random_vector<T>(2 * 3 * 4, 6);
  std::vector<T> p(2 * 6 * 5, T(-1));
  convcore::pad<T>(2, 3, 4, 1, 2, 0, 1, s.data(), p.data());
  ok = true;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 5; ++x) {
        const bool in = y >= 1 && y < 4 && x < 4;
        ok = ok && p[(c * 6 + y) * 5 + x] == (in ? s[(c * 3 + y - 1) * 4 + x] : T(0));
      }
  CHECK_MSG(ok, "pad");

  // flip_kernels with groups: wf[g*icg+c][o][r][s] = w[g*ocg+o][c][kh-1-r][kw-1-s]
  const Conv2dGeometry h = geom(1, 4, 5, 5, 6, 2, 3, 1, 1, 0, 0, 0, 0, 1, 1, 2);
  auto w = testutil::random_vector<T>(h.wei_size(), 7);
  std::vector<T> wf(w.size());
  convcore::flip_kernels(h, w.data(), wf.data());
  ok = true;
  for (int64_t gi = 0; gi < 2; ++gi)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t o = 0; o < 3; ++o)
        for (int64_t r = 0; r < 2; ++r)
          for (int64_t q = 0; q < 3; ++q)
            ok = ok && wf[(((gi * 2 + c) * 3 + o) * 2 + r) * 3 + q] ==
                           w[(((gi * 3 + o) * 2 + c) * 2 + (1 - r)) * 3 + (2 - q)];
  CHECK_MSG(ok, "flip_kernels");
}

// col2im_rows (stride 1 across) on every instruction set's table against col2im's scatter: the
// same bits, with NaN in col's slack and in im beforehand (neither may reach the result) and an
// infinity among col's values (which must reach it).
template <class T>
void check_col2im_rows(const Conv2dGeometry& g) {
  const int64_t K = g.col_rows(), N = g.col_cols(), slack = convcore::detail::kCol2imSlack<T>;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> buf(K * N + 2 * slack, nan);
  const auto c = testutil::random_vector<T>(K * N, 9);
  std::copy(c.begin(), c.end(), buf.begin() + slack);
  buf[slack + K * N / 2] = std::numeric_limits<T>::infinity();
  const T* col = buf.data() + slack;
  std::vector<T> want(g.icg() * g.ih * g.iw, T(0));
  convcore::col2im(g, col, want.data());
  for (convcore::Isa isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512}) {
    if (!convcore::isa_supported(isa)) continue;
    std::vector<T> got(want.size(), nan);
    convcore::detail::col2im_rows(*convcore::detail::gemm_kernel<T>(isa).loops, g, col,
                                  got.data());
    CHECK_MSG(check::same_bits(got, want), "col2im_rows " << convcore::isa_name(isa) << " " << g);
  }
}

template <class T>
void run() {
  for (const Conv2dGeometry& g :
       {geom(1, 1, 5, 5, 1, 3, 3), geom(1, 3, 7, 6, 1, 3, 2, 2, 3, 1, 2, 0, 1),
        geom(1, 2, 9, 9, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 3), geom(1, 2, 4, 4, 1, 1, 1),
        geom(1, 2, 6, 5, 1, 2, 2, 3, 3, 4, 4, 4, 4),
        geom(1, 2, 6, 6, 1, 3, 3, 1, 1, -1, -1, -1, 0) /* negative padding crops */})
    check_im2col<T>(g);
  // Rows around the vector widths (4, 8 and 16 lanes; blocks of 4 vectors), wider and narrower
  // than ow, dilated, strided down only, padded past the kernel, cropped.
  for (int64_t iw : {1, 3, 4, 5, 8, 9, 12, 15, 16, 17, 31, 33, 64, 70})
    for (int64_t kw : {1, 3, 5})
      check_col2im_rows<T>(geom(1, 2, 4, iw, 1, 2, kw, 1, 1, 1, 0, kw / 2, kw / 2));
  for (const Conv2dGeometry& g :
       {geom(1, 3, 9, 13, 1, 3, 3, 2, 1, 1, 2, 2, 1, 2, 2),
        geom(1, 1, 6, 10, 1, 3, 4, 1, 1, 4, 4, 6, 5),
        geom(1, 2, 8, 40, 1, 2, 3, 3, 1, 0, 0, 0, 0, 1, 7),
        geom(1, 2, 6, 20, 1, 3, 3, 1, 1, -1, 0, -2, -1),
        geom(1, 6, 12, 12, 1, 5, 5)})
    check_col2im_rows<T>(g);
  // Channels taken 4 or 2 at a time with short rows, and the ones left over.
  for (int64_t iw : {5, 12, 20, 40})
    for (int64_t ic : {5, 9, 11})
      check_col2im_rows<T>(geom(1, ic, 5, iw, 1, 3, 3, 1, 1, 1, 1, 1, 1));
  check_expand_pad_flip<T>();
}

int main() {
  run<float>();
  run<double>();
  return check::report("im2col");
}
