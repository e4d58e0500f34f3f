// The depthwise path of the plan, forced, on every kernel row the CPU has, against the direct
// loops of the reference.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "convcore/plan.hpp"
#include "reference/conv2d_ref.hpp"
#include "test_util.hpp"

using check::all_close;
using check::same_bits;

using convcore::Activation;
using convcore::Conv2dGeometry;

namespace {

// mb, channels, ih, iw, multiplier (ocg), kh, kw, sh, sw, pt, pb, pl, pr, dh, dw
Conv2dGeometry dw_geom(int64_t mb, int64_t c, int64_t ih, int64_t iw, int64_t ocg, int64_t kh,
                       int64_t kw, int64_t sh = 1, int64_t sw = 1, int64_t pt = 0, int64_t pb = 0,
                       int64_t pl = 0, int64_t pr = 0, int64_t dh = 1, int64_t dw = 1) {
  return testutil::geom(mb, c, ih, iw, c * ocg, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, c);
}

// A plan with every op on the depthwise path and the given kernel row.
template <class T>
convcore::Conv2dPlan<T> depthwise_plan(const Conv2dGeometry& g, convcore::Isa isa,
                                       Activation act = Activation::identity) {
  convcore::PlanOptions opt;
  opt.activation = act;
  opt.forward = opt.backward_input = opt.backward_weight = "depthwise";
  opt.isa = convcore::isa_name(isa);
  return convcore::Conv2dPlan<T>(g, opt);
}

template <class T>
void check_geometry(const Conv2dGeometry& g, convcore::Isa isa, double tol) {
  const auto plan = depthwise_plan<T>(g, isa);
  const auto relu = depthwise_plan<T>(g, isa, Activation::relu);
  auto x = testutil::random_vector<T>(g.src_size(), 31);
  auto w = testutil::random_vector<T>(g.wei_size(), 32);
  auto b = testutil::random_vector<T>(g.oc, 33);
  auto dy = testutil::random_vector<T>(g.dst_size(), 34);

  std::vector<T> y_ref(g.dst_size()), y_nob(g.dst_size()), dx_ref(g.src_size()),
      dw_ref(g.wei_size());
  convcore::ref::conv2d_forward(g, x.data(), w.data(), b.data(), y_ref.data());
  convcore::ref::conv2d_forward(g, x.data(), w.data(), static_cast<const T*>(nullptr),
                                y_nob.data());
  convcore::ref::conv2d_backward_input(g, w.data(), dy.data(), dx_ref.data());
  convcore::ref::conv2d_backward_weight(g, x.data(), dy.data(), dw_ref.data());
  std::vector<T> y_relu(y_ref);
  for (auto& v : y_relu) v = v > T(0) ? v : T(0);
  std::vector<T> dw2(dw_ref);
  for (auto& v : dw2) v *= T(2);

  // A weight gradient sums mb*oh*ow products per tap, which largely cancel: its rounding grows
  // with that count (the large planes below sum over 10^5).
  const double wtol = tol * std::max(1.0, double(g.mb * g.oh() * g.ow()) / 1e3);
  std::vector<T> first_y, first_dx, first_dw;
  for (int threads : {1, 2, 3}) {
    convcore::set_num_threads(threads);
    // Outputs start as NaN: every element must be written.
    std::vector<T> y(g.dst_size(), T(NAN));
    plan.forward(x.data(), w.data(), b.data(), y.data());
    CHECK_MSG(all_close(y, y_ref, tol), "forward " << g << " threads=" << threads);

    std::vector<T> y0(g.dst_size(), T(NAN));
    plan.forward(x.data(), w.data(), static_cast<const T*>(nullptr), y0.data());
    CHECK_MSG(all_close(y0, y_nob, tol), "forward no bias " << g << " threads=" << threads);

    std::vector<T> yr(g.dst_size(), T(NAN));
    relu.forward(x.data(), w.data(), b.data(), yr.data());
    CHECK_MSG(all_close(yr, y_relu, tol), "forward relu " << g << " threads=" << threads);

    std::vector<T> dx(g.src_size(), T(NAN));
    plan.backward_input(w.data(), dy.data(), dx.data());
    CHECK_MSG(all_close(dx, dx_ref, tol), "backward_input " << g << " threads=" << threads);

    std::vector<T> dw(g.wei_size(), T(NAN));
    plan.backward_weight(x.data(), dy.data(), dw.data(), false);
    CHECK_MSG(all_close(dw, dw_ref, wtol), "backward_weight " << g << " threads=" << threads);
    const std::vector<T> dw_once(dw);
    // Accumulating a second time doubles the gradient.
    plan.backward_weight(x.data(), dy.data(), dw.data(), true);
    CHECK_MSG(all_close(dw, dw2, wtol), "accumulate weight " << g << " threads=" << threads);

    if (threads == 1) {
      first_y = y;
      first_dx = dx;
      first_dw = dw_once;
    }
    CHECK_MSG(same_bits(y, first_y), "forward bits " << g << " threads=" << threads);
    CHECK_MSG(same_bits(dx, first_dx), "backward_input bits " << g << " threads=" << threads);
    CHECK_MSG(same_bits(dw_once, first_dw), "weight bits " << g << " threads=" << threads);
  }
  convcore::set_num_threads(2);
}

constexpr int64_t kHuge = int64_t{1} << 48, kBig = int64_t{1} << 20;

template <class T>
void run(double tol) {
  const Conv2dGeometry cases[] = {
      dw_geom(1, 2, 5, 5, 1, 3, 3),                               // no padding
      dw_geom(2, 3, 7, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1),             // "same", stride 1
      dw_geom(3, 4, 28, 28, 1, 3, 3, 1, 1, 1, 1, 1, 1),           // the benchmark's plane
      dw_geom(2, 3, 7, 7, 1, 3, 3, 2, 2),                         // stride 2, divides
      dw_geom(3, 2, 8, 9, 1, 3, 3, 2, 2, 1, 1, 1, 1),             // stride 2, does not
      dw_geom(2, 3, 10, 11, 1, 3, 2, 3, 3),                       // stride 3, kh != kw
      dw_geom(2, 2, 11, 10, 1, 2, 3, 3, 2, 1, 0, 2, 1),           // sh != sw, asymmetric
      dw_geom(2, 2, 5, 5, 1, 3, 3, 1, 1, 3, 3, 3, 3),             // padding > k-1
      dw_geom(2, 2, 6, 5, 1, 3, 3, 2, 2, 4, 3, 3, 4),             // padding > k-1, strided
      dw_geom(2, 2, 6, 7, 1, 3, 3, 1, 1, 0, 1, 2, 0),             // asymmetric, stride 1
      dw_geom(2, 2, 6, 7, 1, 3, 3, 2, 2, 0, 1, 1, 1),             // asymmetric, stride 2
      dw_geom(2, 2, 9, 9, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),       // dilation 2
      dw_geom(2, 2, 9, 10, 1, 3, 2, 2, 1, 1, 2, 1, 0, 2, 3),      // dilation, stride, kh != kw
      dw_geom(2, 5, 6, 7, 1, 1, 1),                               // 1x1
      dw_geom(2, 3, 7, 6, 1, 1, 1, 2, 3, 1, 0, 0, 1),             // 1x1 strided, padded
      dw_geom(3, 4, 8, 8, 2, 3, 3, 2, 2, 1, 1, 1, 1),             // multiplier 2, strided
      dw_geom(2, 3, 9, 8, 2, 3, 3, 1, 1, 1, 1, 1, 1),             // multiplier 2, stride 1
      dw_geom(1, 3, 9, 8, 2, 5, 5, 1, 1, 2, 2, 2, 2),             // 5x5 (two fused passes)
      dw_geom(3, 2, 7, 7, 1, 7, 7, 1, 1, 3, 3, 3, 3),             // 7x7
      dw_geom(2, 3, 5, 6, 1, 5, 6),                               // kernel covers the input
      dw_geom(2, 3, 5, 6, 2, 5, 6, 1, 1, 1, 1, 2, 0),             // ... with padding
      dw_geom(1, 2, 4, 4, 1, 3, 3, 1, 1, 4, 4, 4, 4),             // mostly padding
      dw_geom(9, 3, 12, 12, 1, 3, 3, 1, 1, 1, 1, 1, 1),           // more images than the group
      dw_geom(5, 3, 1, 40, 1, 1, 3, 1, 1, 0, 0, 1, 1),            // one row
      dw_geom(2, 2, 40, 1, 1, 3, 1, 2, 1, 1, 1, 0, 0),            // one column
      // Planes wide enough to be worked in bands of rows (kBandElems / wp rows each), and single
      // input channels (groups == 1, ic == 1) with several outputs.
      dw_geom(2, 1, 37, 2100, 3, 3, 3, 1, 1, 1, 1, 1, 1),         // 2 bands, 1 -> 3 channels
      dw_geom(1, 2, 70, 1500, 1, 5, 5, 1, 1, 2, 2, 2, 2),         // 2 bands, two fused passes
      dw_geom(1, 1, 50, 3000, 2, 3, 3, 1, 1, 0, 1, 2, 0, 2, 2),   // 3 bands, dilated, asymmetric
      dw_geom(3, 1, 9, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1),             // single channel, chunked sums
      // Padding and dilation far beyond any buffer, small outputs (found by the fuzz target):
      // the per-plane loops, never a padded copy of 2^48 rows (or of 2^40 elements).
      dw_geom(1, 2, 5, 4, 3, 2, 3, 1, 1, kHuge, 2, 0, 1, kHuge, 1),
      dw_geom(2, 2, 4, 5, 1, 3, 2, 1, 1, 1, 0, kHuge, 1, 1, kHuge),
      dw_geom(1, 3, 3, 3, 1, 2, 2, 1, 1, kBig, 1, kBig, 0, kBig, kBig),
  };
  for (convcore::Isa isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512}) {
    if (!convcore::isa_supported(isa)) continue;
    for (const auto& g : cases) check_geometry<T>(g, isa, tol);

    // An empty batch writes zero weight gradients, or leaves them alone when accumulating.
    const Conv2dGeometry e = dw_geom(0, 2, 5, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1);
    std::vector<T> dw(e.wei_size(), T(5));
    const auto plan = depthwise_plan<T>(e, isa);
    plan.backward_weight(nullptr, nullptr, dw.data(), true);
    CHECK(dw[0] == T(5) && dw.back() == T(5));
    plan.backward_weight(nullptr, nullptr, dw.data(), false);
    CHECK(dw[0] == T(0) && dw.back() == T(0));
  }
}

}  // namespace

int main() {
  // The path supports one input channel per group (a depthwise layer, or a single-channel input
  // with groups == 1), nothing else.
  for (const Conv2dGeometry& g : {testutil::geom(1, 4, 5, 5, 4, 3, 3),
                                  testutil::geom(1, 8, 5, 5, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 4)})
    CHECK_THROWS(depthwise_plan<float>(g, convcore::Isa::generic), std::invalid_argument);
  depthwise_plan<float>(testutil::geom(1, 1, 5, 5, 4, 3, 3), convcore::Isa::generic);  // accepted
  // The model keeps the benchmark's depthwise layer (multiplier 1) on this path.
  CHECK(convcore::Conv2dPlan<float>(dw_geom(8, 128, 28, 28, 1, 3, 3, 1, 1, 1, 1, 1, 1))
            .describe()
            .forward.path == "depthwise");
  run<float>(2e-5);
  run<double>(1e-12);
  return check::report("depthwise");
}
