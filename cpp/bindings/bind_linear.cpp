// Thin bindings of the fully connected layer: shapes and buffers checked, GIL released, call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "buffers.hpp"
#include "convcore/linear.hpp"

namespace py = pybind11;
using convcore::LinearShape;
using convcore::bindings::output_buffer;
using convcore::bindings::shape_of;
using convcore::bindings::shape_str;

namespace {

template <class T>
using In = py::array_t<T, py::array::c_style>;

void require_shape(const py::array& a, const convcore::bindings::Shape& want, const char* name) {
  if (!convcore::bindings::same_shape(a, want))
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " +
                          shape_str(shape_of(a)));
}

// (n, in) from x and out from w (out, in); x's columns must match w's.
LinearShape shape_from(const py::array& x, const py::array& w) {
  if (w.ndim() != 2)
    throw py::value_error("weight: expected shape (out_features, in_features), got " +
                          shape_str(shape_of(w)));
  if (x.ndim() != 2 || x.shape(1) != w.shape(1))
    throw py::value_error("input: expected shape (N, " + std::to_string(w.shape(1)) + "), got " +
                          shape_str(shape_of(x)));
  LinearShape s{x.shape(0), x.shape(1), w.shape(0)};
  convcore::validate_linear(s);
  return s;
}

template <class T>
void bind_linear_ops(py::module_& m) {
  m.def(
      "linear_forward",
      [](In<T> x, In<T> w, std::optional<In<T>> b, const py::object& out) {
        const LinearShape s = shape_from(x, w);
        if (b) require_shape(*b, {s.out}, "bias");
        py::array y = output_buffer(out, py::dtype::of<T>(), {s.n, s.out}, "out",
                                    {&x, &w, b ? &*b : nullptr});
        const T* bp = b ? b->data() : nullptr;
        T* yp = static_cast<T*>(y.mutable_data());
        py::gil_scoped_release nogil;
        convcore::linear_forward<T>(s, x.data(), w.data(), bp, yp);
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("out") = py::none(),
      "y = x W^T + b: input (N, in), weight (out, in), bias (out,) -> (N, out).");

  m.def(
      "linear_backward",
      [](In<T> x, In<T> w, In<T> dy, const py::object& weight_out, const py::object& bias_out,
         bool accumulate, bool input_grad, const py::object& input_out) {
        const LinearShape s = shape_from(x, w);
        require_shape(dy, {s.n, s.out}, "grad_output");
        if (accumulate && weight_out.is_none())
          throw py::value_error("accumulate=True needs weight_out");
        if (!input_grad && !input_out.is_none())
          throw py::value_error("input_out: given with input_grad=False");
        const auto dt = py::dtype::of<T>();
        py::array dw = output_buffer(weight_out, dt, {s.out, s.in}, "weight_out", {&x, &w, &dy});
        std::optional<py::array> db, dx;
        if (!bias_out.is_none()) db = output_buffer(bias_out, dt, {s.out}, "bias_out", {&x, &w, &dy, &dw});
        if (input_grad)
          dx = output_buffer(input_out, dt, {s.n, s.in}, "input_out",
                             {&x, &w, &dy, &dw, db ? &*db : nullptr});
        T* dxp = dx ? static_cast<T*>(dx->mutable_data()) : nullptr;
        T* dbp = db ? static_cast<T*>(db->mutable_data()) : nullptr;
        T* dwp = static_cast<T*>(dw.mutable_data());
        {
          py::gil_scoped_release nogil;
          convcore::linear_backward<T>(s, x.data(), w.data(), dy.data(), dxp, dwp, dbp, accumulate);
        }
        const auto or_none = [](const std::optional<py::array>& a) {
          return a ? py::object(*a) : py::object(py::none());
        };
        return py::make_tuple(or_none(dx), dw, or_none(db));
      },
      py::arg("input"), py::arg("weight"), py::arg("grad_output"), py::kw_only(),
      py::arg("weight_out") = py::none(), py::arg("bias_out") = py::none(),
      py::arg("accumulate") = false, py::arg("input_grad") = true, py::arg("input_out") = py::none(),
      "Gradients of linear_forward: (dx or None, dw, db or None); dw and db are added to "
      "weight_out / bias_out with accumulate=True. db is computed only when bias_out is given.");
}

}  // namespace

void bind_linear(py::module_& m) {
  bind_linear_ops<float>(m);
  bind_linear_ops<double>(m);
}
