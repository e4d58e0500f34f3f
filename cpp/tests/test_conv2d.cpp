#include "convcore/conv2d.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "convcore/plan.hpp"
#include "gemm/ukernel.hpp"
#include "reference/conv2d_ref.hpp"
#include "test_util.hpp"

using check::all_close;
using check::same_bits;

using convcore::Conv2dGeometry;
using testutil::geom;

// The activations of g as the ops see them (in g.layout) from NCHW data, and their results back
// in NCHW, where the direct loops compute the references.
struct Act {
  const Conv2dGeometry& g;
  template <class T>
  std::vector<T> x_in(const std::vector<T>& v) const {
    return testutil::from_nchw(v, g.mb, g.ic, g.ih, g.iw, g.layout);
  }
  template <class T>
  std::vector<T> y_in(const std::vector<T>& v) const {
    return testutil::from_nchw(v, g.mb, g.oc, g.oh(), g.ow(), g.layout);
  }
  template <class T>
  std::vector<T> x_out(const std::vector<T>& v) const {
    return testutil::to_nchw(v, g.mb, g.ic, g.ih, g.iw, g.layout);
  }
  template <class T>
  std::vector<T> y_out(const std::vector<T>& v) const {
    return testutil::to_nchw(v, g.mb, g.oc, g.oh(), g.ow(), g.layout);
  }
};

Conv2dGeometry as_nchw(Conv2dGeometry g) {
  g.layout = convcore::Layout::nchw;
  return g;
}

template <class T>
void check_geometry(const Conv2dGeometry& g, double tol) {
  using convcore::BackwardInputMethod;
  const Act act{g};
  const Conv2dGeometry gr = as_nchw(g);  // the references' geometry
  auto x_nchw = testutil::random_vector<T>(g.src_size(), 11);
  auto w = testutil::random_vector<T>(g.wei_size(), 12);
  auto b = testutil::random_vector<T>(g.oc, 13);
  auto dy_nchw = testutil::random_vector<T>(g.dst_size(), 14);
  const auto x = act.x_in(x_nchw), dy = act.y_in(dy_nchw);

  std::vector<T> y_ref(g.dst_size()), dx_ref(g.src_size()), dw_ref(g.wei_size()), db_ref(g.oc);
  convcore::ref::conv2d_forward(gr, x_nchw.data(), w.data(), b.data(), y_ref.data());
  convcore::ref::conv2d_backward_input(gr, w.data(), dy_nchw.data(), dx_ref.data());
  convcore::ref::conv2d_backward_weight(gr, x_nchw.data(), dy_nchw.data(), dw_ref.data());
  convcore::ref::conv2d_backward_bias(gr, dy_nchw.data(), db_ref.data());

  std::vector<T> first_y, first_dx, first_dw, first_db;
  for (int threads : {1, 2, 3}) {
    convcore::set_num_threads(threads);
    std::vector<T> y(g.dst_size(), T(NAN));
    convcore::conv2d_forward(g, x.data(), w.data(), b.data(), y.data());
    CHECK_MSG(all_close(act.y_out(y), y_ref, tol), "forward " << g << " threads=" << threads);

    for (auto m : {BackwardInputMethod::flip, BackwardInputMethod::col2im,
                   BackwardInputMethod::automatic}) {
      std::vector<T> dx(g.src_size(), T(NAN));
      convcore::conv2d_backward_input(g, w.data(), dy.data(), dx.data(), m);
      CHECK_MSG(all_close(act.x_out(dx), dx_ref, tol),
                "backward_input " << g << " method=" << int(m) << " threads=" << threads);
      if (m == BackwardInputMethod::flip) {
        if (threads == 1) first_dx = dx;
        CHECK_MSG(same_bits(dx, first_dx), "backward_input bits " << g << " threads=" << threads);
      }
    }

    std::vector<T> dw(g.wei_size(), T(NAN)), db(g.oc, T(NAN));
    convcore::conv2d_backward_weight(g, x.data(), dy.data(), dw.data(), false);
    convcore::conv2d_backward_bias(g, dy.data(), db.data(), false);
    CHECK_MSG(all_close(dw, dw_ref, tol), "backward_weight " << g << " threads=" << threads);
    CHECK_MSG(all_close(db, db_ref, tol), "backward_bias " << g << " threads=" << threads);

    // Accumulating a second time doubles the gradient.
    convcore::conv2d_backward_weight(g, x.data(), dy.data(), dw.data(), true);
    convcore::conv2d_backward_bias(g, dy.data(), db.data(), true);
    std::vector<T> dw2(dw_ref), db2(db_ref);
    for (auto& v : dw2) v *= T(2);
    for (auto& v : db2) v *= T(2);
    CHECK_MSG(all_close(dw, dw2, tol), "accumulate weight " << g);
    CHECK_MSG(all_close(db, db2, tol), "accumulate bias " << g);

    if (threads == 1) {
      first_y = y;
      first_dw = dw;
      first_db = db;
    }
    CHECK_MSG(same_bits(y, first_y), "forward bits " << g << " threads=" << threads);
    CHECK_MSG(same_bits(dw, first_dw), "weight bits " << g << " threads=" << threads);
    CHECK_MSG(same_bits(db, first_db), "bias bits " << g << " threads=" << threads);
  }
  convcore::set_num_threads(2);
}

// Every path of every op, forced, on every kernel row the CPU has: either the plan refuses it
// (the path does not support g) or its result matches the direct loops.
template <class T>
void check_paths(const Conv2dGeometry& g, double tol) {
  using convcore::PlanOp;
  const Act act{g};
  const Conv2dGeometry gr = as_nchw(g);
  auto x_nchw = testutil::random_vector<T>(g.src_size(), 41);
  auto w = testutil::random_vector<T>(g.wei_size(), 42);
  auto b = testutil::random_vector<T>(g.oc, 43);
  auto dy_nchw = testutil::random_vector<T>(g.dst_size(), 44);
  const auto x = act.x_in(x_nchw), dy = act.y_in(dy_nchw);
  std::vector<T> y_ref(g.dst_size()), dx_ref(g.src_size()), dw_ref(g.wei_size());
  convcore::ref::conv2d_forward(gr, x_nchw.data(), w.data(), b.data(), y_ref.data());
  convcore::ref::conv2d_backward_input(gr, w.data(), dy_nchw.data(), dx_ref.data());
  convcore::ref::conv2d_backward_weight(gr, x_nchw.data(), dy_nchw.data(), dw_ref.data());
  for (convcore::Isa isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512}) {
    if (!convcore::isa_supported(isa)) continue;
    const auto rows = convcore::detail::kernel_rows<T>(isa);
    for (int r = 0; r < rows.count; ++r) {
      for (PlanOp op : {PlanOp::forward, PlanOp::backward_input, PlanOp::backward_weight}) {
        int supported = 0;
        const std::string tile =
            std::to_string(rows.rows[r].mr) + "x" + std::to_string(rows.rows[r].nr);
        for (const std::string& path : convcore::Conv2dPlan<T>::path_names(op)) {
          convcore::PlanOptions opt;
          opt.isa = convcore::isa_name(isa);
          opt.tile = tile;
          (op == PlanOp::forward ? opt.forward
           : op == PlanOp::backward_input ? opt.backward_input
                                          : opt.backward_weight) = path;
          std::unique_ptr<convcore::Conv2dPlan<T>> plan;
          try {
            plan = std::make_unique<convcore::Conv2dPlan<T>>(g, opt);
          } catch (const std::invalid_argument& e) {
            CHECK_MSG(std::string(e.what()).find("does not support") != std::string::npos, e.what());
            continue;
          }
          ++supported;
          const std::string where = std::string(convcore::plan_op_name(op)) + " " + path + "/" +
                                    convcore::isa_name(isa) + " " + tile;
          CHECK_MSG(plan->describe().forward.tile == tile, where);
          if (op == PlanOp::forward) {
            std::vector<T> y(g.dst_size(), T(NAN));
            plan->forward(x.data(), w.data(), b.data(), y.data());
            CHECK_MSG(all_close(act.y_out(y), y_ref, tol), where << " " << g);
          } else if (op == PlanOp::backward_input) {
            std::vector<T> dx(g.src_size(), T(NAN));
            plan->backward_input(w.data(), dy.data(), dx.data());
            CHECK_MSG(all_close(act.x_out(dx), dx_ref, tol), where << " " << g);
          } else {
            std::vector<T> dw(g.wei_size(), T(NAN));
            plan->backward_weight(x.data(), dy.data(), dw.data(), false);
            CHECK_MSG(all_close(dw, dw_ref, tol), where << " " << g);
          }
        }
        CHECK_MSG(supported >= 1, "no path for " << g);
      }
    }
  }
}

// The nhwc_ paths serve NHWC only and the others NCHW only (flip and col2im both); large images
// run in several bands of output rows.
template <class T>
void check_nhwc_paths(double tol) {
  Conv2dGeometry g = geom(2, 3, 9, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1);
  for (auto layout : {convcore::Layout::nchw, convcore::Layout::nhwc}) {
    g.layout = layout;
    const bool nhwc = layout == convcore::Layout::nhwc;
    for (const char* path : {"packed", "a_in_place", "b_in_place", "nhwc_in_place"}) {
      convcore::PlanOptions opt;
      opt.forward = path;
      const bool nhwc_path = std::string(path).rfind("nhwc_", 0) == 0;
      bool made = true;
      try {
        convcore::Conv2dPlan<T> plan(g, opt);
      } catch (const std::invalid_argument&) {
        made = false;
      }
      CHECK_MSG(made == (nhwc_path == nhwc), "forward " << path << " on " << g);
    }
    convcore::PlanOptions opt;
    opt.backward_weight = "nhwc_in_place";
    bool made = true;
    try {
      convcore::Conv2dPlan<T> plan(g, opt);
    } catch (const std::invalid_argument&) {
      made = false;
    }
    CHECK_MSG(made == nhwc, "backward_weight nhwc_in_place on " << g);
  }
  // Padded rows of 64-96 channels x 260-300 columns: a band of the padded copy holds a few
  // output rows only (a wide stride keeps the sums short enough for the float tolerance).
  for (const Conv2dGeometry& b : {geom(2, 64, 20, 300, 8, 3, 3, 2, 8, 1, 2, 1, 1),
                                  geom(1, 96, 17, 257, 5, 3, 2, 1, 6, 1, 0, 2, 1, 2, 1)}) {
    Conv2dGeometry h = b;
    h.layout = convcore::Layout::nhwc;
    check_geometry<T>(h, tol);
  }
  // Depthwise, multiplier 1 (the channel-vectorised loops' common case), strided, asymmetric.
  Conv2dGeometry d = geom(2, 12, 9, 8, 12, 3, 3, 2, 1, 1, 0, 1, 2, 1, 1, 12);
  d.layout = convcore::Layout::nhwc;
  check_geometry<T>(d, tol);
  check_paths<T>(d, tol);
}

template <class T>
void check_activations(double tol) {
  using convcore::Activation;
  const Conv2dGeometry g = geom(2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1);
  auto x = testutil::random_vector<T>(g.src_size(), 21);
  auto w = testutil::random_vector<T>(g.wei_size(), 22);
  auto b = testutil::random_vector<T>(g.oc, 23);
  std::vector<T> lin(g.dst_size());
  convcore::ref::conv2d_forward(g, x.data(), w.data(), b.data(), lin.data());
  for (Activation act : {Activation::relu, Activation::sigmoid, Activation::tanh}) {
    // NHWC first, with and without bias: the same values once back in NCHW.
    Conv2dGeometry h = g;
    h.layout = convcore::Layout::nhwc;
    const auto xh = testutil::from_nchw(x, g.mb, g.ic, g.ih, g.iw, h.layout);
    for (const T* bias : {static_cast<const T*>(b.data()), static_cast<const T*>(nullptr)}) {
      std::vector<T> yh(g.dst_size()), want(g.dst_size());
      convcore::conv2d_forward(h, xh.data(), w.data(), bias, yh.data(), act);
      yh = testutil::to_nchw(yh, g.mb, g.oc, g.oh(), g.ow(), h.layout);
      const int64_t hw = g.oh() * g.ow();
      for (size_t i = 0; i < want.size(); ++i) {
        const double v = double(lin[i]) - (bias ? 0.0 : double(b[(int64_t(i) / hw) % g.oc]));
        want[i] = T(act == Activation::relu      ? (v > 0 ? v : 0)
                    : act == Activation::sigmoid ? 1 / (1 + std::exp(-v))
                                                 : std::tanh(v));
      }
      CHECK_MSG(all_close(yh, want, tol), "nhwc activation " << int(act) << " bias=" << !!bias);
    }
    std::vector<T> y(g.dst_size()), want(g.dst_size());
    convcore::conv2d_forward(g, x.data(), w.data(), b.data(), y.data(), act);
    for (size_t i = 0; i < want.size(); ++i) {
      const double v = double(lin[i]);
      want[i] = T(act == Activation::relu      ? (v > 0 ? v : 0)
                  : act == Activation::sigmoid ? 1 / (1 + std::exp(-v))
                                               : std::tanh(v));
    }
    CHECK_MSG(all_close(y, want, tol), "activation " << int(act));
    // activation_backward: grad * f'(y) checked by a central difference of f.
    auto grad = testutil::random_vector<T>(g.dst_size(), 24);
    std::vector<T> delta(g.dst_size());
    convcore::activation_backward(act, int64_t(y.size()), grad.data(), y.data(), delta.data());
    bool ok = true;
    for (size_t i = 0; i < y.size(); ++i) {
      const double v = double(lin[i]), h = 1e-6;
      if (act == Activation::relu && std::fabs(v) < 1e-3) continue;  // kink
      auto f = [&](double t) {
        return act == Activation::relu ? (t > 0 ? t : 0)
               : act == Activation::sigmoid ? 1 / (1 + std::exp(-t)) : std::tanh(t);
      };
      const double d = (f(v + h) - f(v - h)) / (2 * h);
      ok = ok && check::close(double(delta[i]), double(grad[i]) * d, 1e-4, 1e-4);
    }
    CHECK_MSG(ok, "activation_backward " << int(act));
  }
}

template <class T>
void run(double tol) {
  const Conv2dGeometry cases[] = {
      geom(1, 1, 5, 5, 1, 3, 3),                                     // the tutorial's
      geom(2, 3, 7, 7, 4, 3, 3, 2, 2),                               // stride 2, divides
      geom(3, 2, 8, 9, 3, 3, 3, 2, 2, 1, 1, 1, 1),                   // stride 2, does not
      geom(2, 3, 10, 11, 2, 3, 2, 3, 3, 0, 0, 0, 0),                 // stride 3, kh != kw
      geom(2, 2, 5, 5, 3, 3, 3, 1, 1, 3, 3, 3, 3),                   // padding > k-1
      geom(2, 2, 6, 7, 3, 3, 3, 2, 2, 0, 1, 1, 1),                   // asymmetric
      geom(2, 8, 6, 6, 5, 1, 1),                                     // 1x1 direct
      geom(2, 4, 7, 7, 6, 1, 1, 2, 2),                               // 1x1 strided
      geom(2, 2, 9, 9, 3, 3, 3, 1, 2, 2, 2, 1, 1, 2, 2),             // dilation
      geom(2, 4, 7, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2),          // groups
      geom(3, 4, 8, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4),          // depthwise, multiplier 2
      geom(2, 43, 5, 6, 43, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1, 43),      // depthwise, 43 channels, tapless border
      geom(9, 3, 12, 12, 16, 5, 5, 1, 1, 2, 2, 2, 2),                // more images than threads
      geom(1, 20, 14, 14, 24, 3, 3, 1, 1, 1, 1, 1, 1),               // larger K and N
      // Stride 1 reads B in place from a padded copy, unless the padded rows are too wide:
      geom(2, 3, 9, 11, 5, 2, 4, 1, 1, 0, 1, 3, 0, 2, 1),            // asymmetric, dilated
      geom(2, 3, 6, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3),             // too wide: packed
      geom(2, 2, 9, 7, 3, 3, 3, 1, 1, 3, 2, 4, 3),                   // crop in the flip pass
      // 16+ output channels: the forward reads col^T in place, any stride; 16+ input channels:
      // so does the flipped-kernel pass
      geom(2, 3, 13, 12, 16, 3, 3, 2, 2, 1, 1, 1, 1),                // strided
      geom(2, 16, 8, 7, 4, 3, 3, 1, 1, 2, 0, 1, 1),                  // flip pass, asymmetric
      // 8-64 output channels per group: the weight gradient reads col in place, any stride:
      geom(2, 3, 11, 10, 8, 3, 2, 2, 3, 1, 0, 2, 1, 1, 2),           // strided, dilated
      geom(3, 4, 9, 9, 16, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 2),         // groups
      // One input channel, six and eleven outputs (NHWC: nhwc_spread's repeated weights, rows
      // ending inside a vector, runs, and the input gradient's sums of m values)
      geom(2, 1, 9, 13, 6, 3, 3, 1, 1, 1, 0, 2, 1, 1, 2),            // dilated across
      geom(1, 1, 6, 40, 11, 3, 3, 1, 1, 1, 1, 1, 1),                 // two runs per row
  };
  for (const auto& g : cases) {
    check_geometry<T>(g, tol);
    check_paths<T>(g, tol);
    // The same convolution on NHWC activations: the same results, transposed.
    Conv2dGeometry h = g;
    h.layout = convcore::Layout::nhwc;
    check_geometry<T>(h, tol);
    check_paths<T>(h, tol);
  }
  check_nhwc_paths<T>(tol);
  // Empty batch: nothing happens, gradients are zero when not accumulating.
  const Conv2dGeometry e = geom(0, 2, 5, 5, 3, 3, 3);
  std::vector<T> dw(e.wei_size(), T(5));
  convcore::conv2d_backward_weight<T>(e, nullptr, nullptr, dw.data(), false);
  CHECK(dw[0] == T(0) && dw.back() == T(0));
  // An empty batch of a valid geometry whose work per image, oc*K*oh*ow, exceeds 64 bits (found by
  // the fuzz target; the sanitizer build fails on the overflow): the plan is made, the ops run.
  const Conv2dGeometry huge = geom(0, 6, 4, 3, 2, 1, 1, 1, 1, int64_t{1} << 40, 0, 0, int64_t{1} << 21,
                                   2, 1, 2);
  const convcore::Conv2dPlan<T> plan(huge);
  std::vector<T> dw_huge(huge.wei_size(), T(5));
  plan.forward(nullptr, dw_huge.data(), nullptr, nullptr);
  plan.backward_weight(nullptr, nullptr, dw_huge.data(), false);
  CHECK(dw_huge[0] == T(0) && dw_huge.back() == T(0));
  check_activations<T>(tol * 10);
}

int main() {
  run<float>(2e-5);
  run<double>(1e-12);
  return check::report("conv2d");
}
