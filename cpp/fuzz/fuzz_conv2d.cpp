// Fuzz target for the geometry/validation entry point and the ops behind it.
// The input bytes become a Conv2dGeometry (mostly small fields, sometimes extreme ones). The
// geometry must either be refused with std::invalid_argument / std::overflow_error, or be valid;
// a valid, small geometry is then run through every op on random data, under the sanitizers, and
// checked against the direct-loop reference.
//
// Built two ways (cpp/fuzz/CMakeLists.txt): with clang's -fsanitize=fuzzer as a libFuzzer target,
// or, with any compiler, linked to standalone_main.cpp, which feeds it seeded pseudo-random inputs.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <vector>

#include "convcore/conv2d.hpp"
#include "convcore/geometry.hpp"
#include "reference/conv2d_ref.hpp"

namespace {

struct Reader {
  const uint8_t* data;
  size_t size;
  uint8_t byte() {
    if (size == 0) return 0;
    --size;
    return *data++;
  }
  // A field: usually small, now and then an edge value that must be refused cleanly.
  int64_t field(int64_t lo, int64_t hi) {
    const uint8_t b = byte();
    switch (b >> 5) {
      case 0: return -int64_t(b & 3);                              // zero or negative
      case 1: return std::numeric_limits<int64_t>::max() - (b & 1);  // overflow bait
      case 2: return int64_t{1} << (20 + (b & 31));                 // huge
      default: return lo + int64_t(b) % (hi - lo + 1);
    }
  }
};

// Reports the failing op and geometry, then aborts (which the fuzzer or ctest records).
[[noreturn]] void fail(const char* op, const convcore::Conv2dGeometry& g) {
  std::cerr << "fuzz_conv2d: " << op << " disagrees with the reference for " << g << "\n";
  std::abort();
}

bool close(const std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= 1e-9 * (1 + std::fabs(b[i])))) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  convcore::Conv2dGeometry g;
  g.mb = r.field(0, 3);
  g.groups = r.field(1, 3);
  // Mostly multiples of groups, so that valid grouped problems come up often.
  const auto per_group = [&](int64_t c) { return c > 0 && c < 8 && g.groups > 0 && g.groups < 8 ? c * g.groups : c; };
  g.ic = per_group(r.field(1, 3));
  g.oc = per_group(r.field(1, 3));
  g.ih = r.field(1, 9);
  g.iw = r.field(1, 9);
  g.kh = r.field(1, 4);
  g.kw = r.field(1, 4);
  g.sh = r.field(1, 3);
  g.sw = r.field(1, 3);
  g.pt = r.field(0, 3);
  g.pb = r.field(0, 3);
  g.pl = r.field(0, 3);
  g.pr = r.field(0, 3);
  g.dh = r.field(1, 2);
  g.dw = r.field(1, 2);
  try {
    g.validate("fuzz");
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const std::overflow_error&) {
    return 0;
  }
  // Valid: run the ops when the problem is small enough to check against direct loops.
  if (g.src_size() > 4096 || g.dst_size() > 4096 || g.wei_size() > 4096) return 0;
  std::vector<double> x(g.src_size()), w(g.wei_size()), b(g.oc), dy(g.dst_size());
  uint32_t state = 12345u + uint32_t(size);
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return double(state >> 8) / double(1u << 24) - 0.5;
  };
  for (auto* v : {&x, &w, &b, &dy})
    for (double& e : *v) e = next();

  std::vector<double> y(g.dst_size()), y_ref(g.dst_size());
  convcore::conv2d_forward(g, x.data(), w.data(), b.data(), y.data());
  convcore::ref::conv2d_forward(g, x.data(), w.data(), b.data(), y_ref.data());
  if (!close(y, y_ref)) fail("conv2d_forward", g);

  std::vector<double> dx(g.src_size()), dx_ref(g.src_size());
  convcore::ref::conv2d_backward_input(g, w.data(), dy.data(), dx_ref.data());
  for (auto m : {convcore::BackwardInputMethod::flip, convcore::BackwardInputMethod::col2im}) {
    // The flipped-kernel method materialises the zero-inserted delta of one image per thread;
    // with a huge stride that buffer is huge (std::bad_alloc, MemoryError in Python): skip it.
    if (m == convcore::BackwardInputMethod::flip && g.oc * g.eh() * g.ew() > (int64_t{1} << 20))
      continue;
    convcore::conv2d_backward_input(g, w.data(), dy.data(), dx.data(), m);
    if (!close(dx, dx_ref))
      fail(m == convcore::BackwardInputMethod::flip ? "backward_input(flip)" : "backward_input(col2im)", g);
  }
  std::vector<double> dw(g.wei_size()), dw_ref(g.wei_size()), db(g.oc), db_ref(g.oc);
  convcore::conv2d_backward_weight(g, x.data(), dy.data(), dw.data(), false);
  convcore::ref::conv2d_backward_weight(g, x.data(), dy.data(), dw_ref.data());
  if (!close(dw, dw_ref)) fail("conv2d_backward_weight", g);
  convcore::conv2d_backward_bias(g, dy.data(), db.data(), false);
  convcore::ref::conv2d_backward_bias(g, dy.data(), db_ref.data());
  if (!close(db, db_ref)) fail("conv2d_backward_bias", g);
  return 0;
}
