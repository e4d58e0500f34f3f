// Thin bindings of the helper ops (the convolution itself is bound through its plan,
// bind_plan.cpp): check buffers, release the GIL, call. No maths here.
// Inputs are C-contiguous arrays of exactly T (the Python layer converts); outputs are allocated
// here, or passed in by the caller and then checked for exact dtype, layout and size — never
// silently copied, which would lose an accumulated gradient.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "buffers.hpp"
#include "convcore/conv2d.hpp"
#include "convcore/im2col.hpp"
#include "convcore/sgd.hpp"

namespace py = pybind11;
using convcore::Conv2dGeometry;

convcore::Activation parse_activation(const std::string& s);

namespace {

template <class T>
using In = py::array_t<T, py::array::c_style>;

template <class T>
void require_size(const py::array& a, int64_t n, const char* name) {
  if (a.size() != n)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " elements for the geometry, got " + std::to_string(a.size()));
}

// An output buffer given by the caller: exact dtype, C-contiguous, writeable, the right shape.
template <class T>
T* output_buffer(py::array& out, const std::vector<int64_t>& shape, const char* name) {
  if (!out.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": dtype must be " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(out.dtype())));
  if (!(out.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (!out.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  bool same = out.ndim() == py::ssize_t(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = out.shape(i) == shape[i];
  if (!same) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw py::value_error(std::string(name) + ": shape must be " + want + ")");
  }
  return static_cast<T*>(out.mutable_data());
}


template <class T>
void bind_ops(py::module_& m) {
  m.def(
      "conv2d_backward_bias",
      [](const Conv2dGeometry& g, In<T> dy, std::optional<py::array> out, bool accumulate) {
        g.validate("conv2d_backward_bias");
        require_size<T>(dy, g.dst_size(), "grad_output");
        const std::vector<int64_t> shape{g.oc};
        if (accumulate && !out) throw py::value_error("accumulate=True needs an out buffer");
        py::array db = out ? *out : py::array(py::array_t<T>(shape));
        T* dbp = output_buffer<T>(db, shape, "out");
        py::gil_scoped_release nogil;
        convcore::conv2d_backward_bias(g, dy.data(), dbp, accumulate);
        return db;
      },
      py::arg("geometry"), py::arg("grad_output"), py::arg("out"), py::arg("accumulate"));

  m.def(
      "activation_forward",
      [](const std::string& activation, In<T> x, const py::object& out) {
        const auto act = parse_activation(activation);
        py::array y = convcore::bindings::output_buffer(
            out, py::dtype::of<T>(), convcore::bindings::shape_of(x), "out", {&x});
        T* yp = static_cast<T*>(y.mutable_data());
        py::gil_scoped_release nogil;
        convcore::activation_forward(act, int64_t(x.size()), x.data(), yp);
        return y;
      },
      py::arg("activation"), py::arg("input"), py::arg("out") = py::none(),
      "y = f(input) elementwise on convcore's threads (relu: 0 for NaN); out, if given, must "
      "not overlap input.");

  m.def(
      "activation_backward",
      [](const std::string& activation, In<T> grad, In<T> output, const py::object& out) {
        const auto act = parse_activation(activation);
        if (grad.size() != output.size())
          throw py::value_error("grad and output must have the same size");
        py::array delta = convcore::bindings::output_buffer(
            out, py::dtype::of<T>(), convcore::bindings::shape_of(grad), "out", {&grad, &output});
        T* d = static_cast<T*>(delta.mutable_data());
        py::gil_scoped_release nogil;
        convcore::activation_backward(act, int64_t(grad.size()), grad.data(), output.data(), d);
        return delta;
      },
      py::arg("activation"), py::arg("grad"), py::arg("output"), py::arg("out") = py::none());

  m.def(
      "im2col",
      [](const Conv2dGeometry& g, In<T> x) {
        g.validate("im2col");
        require_size<T>(x, g.src_size(), "input");
        const int64_t K = g.col_rows(), N = g.col_cols(), chw = g.ic * g.ih * g.iw;
        py::array_t<T> col({g.mb, K, N});
        T* cp = col.mutable_data();
        py::gil_scoped_release nogil;
        for (int64_t n = 0; n < g.mb; ++n) convcore::im2col(g, x.data() + n * chw, cp + n * K * N);
        return col;
      },
      py::arg("geometry"), py::arg("input"));

  m.def(
      "col2im",
      [](const Conv2dGeometry& g, In<T> col) {
        g.validate("col2im");
        const int64_t K = g.col_rows(), N = g.col_cols(), chw = g.ic * g.ih * g.iw;
        require_size<T>(col, g.mb * K * N, "col");
        py::array_t<T> x({g.mb, g.ic, g.ih, g.iw});
        T* xp = x.mutable_data();
        py::gil_scoped_release nogil;
        std::fill(xp, xp + g.mb * chw, T(0));
        for (int64_t n = 0; n < g.mb; ++n) convcore::col2im(g, col.data() + n * K * N, xp + n * chw);
        return x;
      },
      py::arg("geometry"), py::arg("col"));

  m.def(
      "expand_stride",
      [](const Conv2dGeometry& g, In<T> dy) {
        g.validate("expand_stride");
        require_size<T>(dy, g.dst_size(), "grad_output");
        const int64_t per_in = g.oc * g.oh() * g.ow(), per_out = g.oc * g.eh() * g.ew();
        py::array_t<T> e({g.mb, g.oc, g.eh(), g.ew()});
        T* ep = e.mutable_data();
        py::gil_scoped_release nogil;
        for (int64_t n = 0; n < g.mb; ++n)
          convcore::expand_stride(g, g.oc, dy.data() + n * per_in, ep + n * per_out);
        return e;
      },
      py::arg("geometry"), py::arg("grad_output"));

  m.def(
      "flip_kernels",
      [](const Conv2dGeometry& g, In<T> w) {
        g.validate("flip_kernels");
        require_size<T>(w, g.wei_size(), "weight");
        py::array_t<T> wf({g.ic, g.ocg(), g.kh, g.kw});
        T* wp = wf.mutable_data();
        py::gil_scoped_release nogil;
        convcore::flip_kernels(g, w.data(), wp);
        return wf;
      },
      py::arg("geometry"), py::arg("weight"));
}

// param and velocity are updated in place, so they are never converted: the dtype of param picks
// the instantiation and grad must match it.
template <class T>
void sgd_update(py::array& param, py::array& grad, std::optional<py::array>& velocity,
                const convcore::SgdOptions& opt) {
  const std::vector<int64_t> shape(param.shape(), param.shape() + param.ndim());
  T* p = output_buffer<T>(param, shape, "param");
  if (!grad.dtype().is(py::dtype::of<T>()) || !(grad.flags() & py::array::c_style))
    throw py::type_error("grad: must be a C-contiguous array of the dtype of param");
  require_size<T>(grad, int64_t(param.size()), "grad");
  T* v = velocity ? output_buffer<T>(*velocity, shape, "velocity") : nullptr;
  const T* gp = static_cast<const T*>(grad.data());
  py::gil_scoped_release nogil;
  convcore::sgd_update(int64_t(param.size()), p, gp, v, opt);
}

}  // namespace

// Also used by bind_plan.cpp.
convcore::Activation parse_activation(const std::string& s) {
  if (s == "identity") return convcore::Activation::identity;
  if (s == "relu") return convcore::Activation::relu;
  if (s == "sigmoid") return convcore::Activation::sigmoid;
  if (s == "tanh") return convcore::Activation::tanh;
  throw py::value_error("activation: expected 'identity', 'relu', 'sigmoid' or 'tanh', got '" +
                        s + "'");
}

void bind_conv(py::module_& m) {
  bind_ops<float>(m);
  bind_ops<double>(m);
  m.def(
      "sgd_update",
      [](py::array param, py::array grad, std::optional<py::array> velocity, double lr,
         double momentum, double weight_decay, bool nesterov) {
        const convcore::SgdOptions opt{lr, momentum, weight_decay, nesterov};
        if (param.dtype().is(py::dtype::of<float>()))
          sgd_update<float>(param, grad, velocity, opt);
        else if (param.dtype().is(py::dtype::of<double>()))
          sgd_update<double>(param, grad, velocity, opt);
        else
          throw py::type_error("param: dtype must be float32 or float64, got " +
                               std::string(py::str(param.dtype())));
      },
      py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("lr"), py::arg("momentum"),
      py::arg("weight_decay"), py::arg("nesterov") = false);
}
