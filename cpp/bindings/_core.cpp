// The extension module convcore._core: geometry, threads, ISA, and the ops (bind_conv.cpp,
// bind_plan.cpp, bind_pool.cpp, bind_linear.cpp, bind_nn.cpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <sstream>

#include "convcore/gemm.hpp"
#include "convcore/geometry.hpp"
#include "convcore/parallel.hpp"

namespace py = pybind11;

void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_plan(py::module_& m);
void bind_linear(py::module_& m);
void bind_nn(py::module_& m);

namespace {

convcore::Layout layout_of(const std::string& name) {
  convcore::Layout layout;
  if (!convcore::parse_layout(name, layout))
    throw std::invalid_argument("layout: expected 'NCHW' or 'NHWC', got '" + name + "'");
  return layout;
}

// A rate probe (GFLOP/s) for dtype, run for about `seconds` without the GIL.
double run_probe(const std::string& dtype, double seconds, double (*f32)(double),
                 double (*f64)(double)) {
  if (!(seconds > 0 && seconds <= 60))
    throw std::invalid_argument("seconds: expected a duration in (0, 60], got " +
                                std::to_string(seconds));
  if (dtype != "float32" && dtype != "float64")
    throw std::invalid_argument("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
  py::gil_scoped_release nogil;
  return dtype == "float32" ? f32(seconds) : f64(seconds);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "convcore native core: 2-D convolution forward, backward and SGD in C++.";
  using convcore::Conv2dGeometry;
  py::class_<Conv2dGeometry>(m, "Geometry",
                             "Sizes of a 2-D convolution; per-side padding pt pb pl pr; activations "
                             "in `layout` ('NCHW' or 'NHWC').")
      .def(py::init<>())
      .def(py::init([](int64_t mb, int64_t ic, int64_t ih, int64_t iw, int64_t oc, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                       int64_t pr, int64_t dh, int64_t dw, int64_t groups, const std::string& layout) {
             Conv2dGeometry g{mb, ic, ih, iw, oc, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, groups};
             g.layout = layout_of(layout);
             return g;
           }),
           py::arg("mb"), py::arg("ic"), py::arg("ih"), py::arg("iw"), py::arg("oc"), py::arg("kh"),
           py::arg("kw"), py::arg("sh") = 1, py::arg("sw") = 1, py::arg("pt") = 0,
           py::arg("pb") = 0, py::arg("pl") = 0, py::arg("pr") = 0, py::arg("dh") = 1,
           py::arg("dw") = 1, py::arg("groups") = 1, py::arg("layout") = "NCHW")
#define CONVCORE_FIELD(name) .def_readwrite(#name, &Conv2dGeometry::name)
      CONVCORE_FIELD(mb) CONVCORE_FIELD(ic) CONVCORE_FIELD(ih) CONVCORE_FIELD(iw)
      CONVCORE_FIELD(oc) CONVCORE_FIELD(kh) CONVCORE_FIELD(kw) CONVCORE_FIELD(sh)
      CONVCORE_FIELD(sw) CONVCORE_FIELD(pt) CONVCORE_FIELD(pb) CONVCORE_FIELD(pl)
      CONVCORE_FIELD(pr) CONVCORE_FIELD(dh) CONVCORE_FIELD(dw) CONVCORE_FIELD(groups)
#undef CONVCORE_FIELD
      .def_property(
          "layout", [](const Conv2dGeometry& g) { return std::string(convcore::layout_name(g.layout)); },
          [](Conv2dGeometry& g, const std::string& name) { g.layout = layout_of(name); },
          "'NCHW' or 'NHWC': how activations lie in memory (weights are OIHW in both).")
      .def_property_readonly("oh", &Conv2dGeometry::oh)
      .def_property_readonly("ow", &Conv2dGeometry::ow)
      .def_property_readonly("eh", &Conv2dGeometry::eh)
      .def_property_readonly("ew", &Conv2dGeometry::ew)
      .def("validate", &Conv2dGeometry::validate, py::arg("op") = "conv2d",
           "Raises ValueError (or OverflowError) when the geometry is not a valid convolution.")
      .def("__repr__", [](const Conv2dGeometry& g) {
        std::ostringstream os;
        os << g;
        return os.str();
      });

  m.def(
      "set_num_threads",
      [](std::optional<int> n) { convcore::set_num_threads(n.value_or(0)); },
      py::arg("n"),
      "Fixes the number of threads convcore uses (n >= 1), overriding OpenMP's setting; "
      "None or 0 lifts the override, so OMP_NUM_THREADS, omp_set_num_threads and threadpoolctl "
      "apply again. Without OpenMP convcore runs on one thread whatever n is.");
  m.def("get_num_threads", &convcore::get_num_threads,
        "Number of threads convcore's next call on this thread will use: set_num_threads' count, "
        "else OpenMP's current setting (1 without OpenMP, 1 in a child forked after convcore "
        "had started its threads).");
  m.def(
      "_num_threads_override", [] { return convcore::num_threads_fixed() ? convcore::get_num_threads() : 0; },
      "The count set_num_threads fixed, or 0 when none is (what a caller restores it to).");
  m.def("_forked_single_threaded", &convcore::forked_single_threaded,
        "Whether this process was forked after convcore had started its threads, and so runs "
        "on one thread.");
  m.attr("has_openmp") = convcore::has_openmp();

  m.def("isa", [] { return std::string(convcore::isa_name(convcore::active_isa())); },
        "Name of the GEMM kernel path in use: 'avx512', 'avx2' or 'generic'.");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> out;
        for (auto isa : {convcore::Isa::generic, convcore::Isa::avx2, convcore::Isa::avx512})
          if (convcore::isa_supported(isa)) out.emplace_back(convcore::isa_name(isa));
        return out;
      },
      "Kernel paths this CPU and build can run.");
  m.def(
      "kernel_peak_gflops",
      [](const std::string& dtype, double seconds) {
        return run_probe(dtype, seconds, &convcore::kernel_peak_gflops<float>,
                         &convcore::kernel_peak_gflops<double>);
      },
      py::arg("dtype"), py::arg("seconds") = 0.2,
      "FMA throughput (GFLOP/s) of the active micro-kernel on L1-resident panels, on all "
      "threads: the machine's practical peak.");
  m.def(
      "register_peak_gflops",
      [](const std::string& dtype, double seconds) {
        return run_probe(dtype, seconds, &convcore::register_peak_gflops<float>,
                         &convcore::register_peak_gflops<double>);
      },
      py::arg("dtype"), py::arg("seconds") = 0.2,
      "FMA ceiling (GFLOP/s) of the active instruction set on all threads: independent chains "
      "of register-only vector FMAs. 0.0 on the portable path, which has no probe.");
  m.def(
      "set_isa",
      [](const std::string& name) {
        convcore::Isa isa;
        if (convcore::parse_isa(name, isa)) return convcore::set_isa(isa);
        throw std::invalid_argument("set_isa: unknown path '" + name +
                                    "', expected 'generic', 'avx2' or 'avx512'");
      },
      py::arg("name"), "Forces a kernel path (any case; it must be supported).");
  m.def(
      "isa_env_problem",
      []() -> std::optional<std::string> {
        const std::string& problem = convcore::isa_env_problem();
        if (problem.empty()) return std::nullopt;
        return problem;
      },
      "Why CONVCORE_ISA was not followed (unknown or unsupported name), or None.");
#ifdef CONVCORE_VERSION
  m.attr("__version__") = CONVCORE_VERSION;
#endif
  bind_conv(m);
  bind_pool(m);
  bind_plan(m);
  bind_linear(m);
  bind_nn(m);
}
