// The plan binding: _core.Conv2dPlan, one class for both dtypes (the plan inside is float or
// double). A call checks its buffers here (dtype, shape, contiguity, writeable, overlap), releases
// the GIL and runs the plan: no geometry work per call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "buffers.hpp"
#include "convcore/plan.hpp"

namespace py = pybind11;
using convcore::Conv2dGeometry;

convcore::Activation parse_activation(const std::string& s);  // bind_conv.cpp

namespace {

using convcore::bindings::Shape;
using convcore::bindings::same_shape;
using convcore::bindings::shape_of;
using convcore::bindings::shape_str;

template <class T>
struct Typed {
  convcore::Conv2dPlan<T> plan;
};

class PlanBinding {
 public:
  PlanBinding(const Conv2dGeometry& g, const std::string& dtype, bool single,
              const std::string& activation, bool bias, const std::string& forward,
              const std::string& backward_input, const std::string& backward_weight,
              const std::string& isa, const std::string& tile)
      : bias_(bias) {
    convcore::PlanOptions opt;
    opt.activation = parse_activation(activation);
    opt.bias = bias;
    opt.forward = forward;
    opt.backward_input = backward_input;
    opt.backward_weight = backward_weight;
    opt.isa = isa;
    opt.tile = tile;
    if (dtype == "float32")
      plan_.emplace<Typed<float>>(Typed<float>{convcore::Conv2dPlan<float>(g, opt)});
    else if (dtype == "float64")
      plan_.emplace<Typed<double>>(Typed<double>{convcore::Conv2dPlan<double>(g, opt)});
    else
      throw py::type_error("dtype: expected float32 or float64, got " + dtype);
    dtype_ = py::dtype(dtype);
    const py::ssize_t lead = single ? 0 : 1;
    // Activations in the geometry's layout: (N, C, H, W) or (N, H, W, C).
    if (g.layout == convcore::Layout::nhwc) {
      x_shape_ = {g.mb, g.ih, g.iw, g.ic};
      y_shape_ = {g.mb, g.oh(), g.ow(), g.oc};
    } else {
      x_shape_ = {g.mb, g.ic, g.ih, g.iw};
      y_shape_ = {g.mb, g.oc, g.oh(), g.ow()};
    }
    x_shape_.erase(x_shape_.begin(), x_shape_.begin() + (1 - lead));
    y_shape_.erase(y_shape_.begin(), y_shape_.begin() + (1 - lead));
    w_shape_ = {g.oc, g.icg(), g.kh, g.kw};
    b_shape_ = {g.oc};
  }

  const Shape& input_shape() const { return x_shape_; }
  const Shape& output_shape() const { return y_shape_; }
  const Shape& weight_shape() const { return w_shape_; }
  py::dtype dtype() const { return dtype_; }

  py::array forward(const py::object& x, const py::object& w, const py::object& b,
                    const py::object& out) const {
    const py::array xa = input(x, x_shape_, "input"), wa = input(w, w_shape_, "weight");
    std::optional<py::array> ba;
    if (!b.is_none()) {
      if (!bias_) throw py::value_error("bias: given to a plan made with bias=False");
      ba = input(b, b_shape_, "bias");
    }
    py::array y = output(out, y_shape_, "out", {&xa, &wa, ba ? &*ba : nullptr});
    dispatch([&](const auto& p, auto tag) {
      using T = decltype(tag);
      const T* bp = ba ? static_cast<const T*>(ba->data()) : nullptr;
      py::gil_scoped_release nogil;
      p.forward(ptr<T>(xa), ptr<T>(wa), bp, mut<T>(y));
    });
    return y;
  }

  py::array backward_input(const py::object& w, const py::object& dy, const py::object& out) const {
    const py::array wa = input(w, w_shape_, "weight"), dya = input(dy, y_shape_, "grad_output");
    py::array dx = output(out, x_shape_, "out", {&wa, &dya});
    dispatch([&](const auto& p, auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      p.backward_input(ptr<T>(wa), ptr<T>(dya), mut<T>(dx));
    });
    return dx;
  }

  py::array backward_weight(const py::object& x, const py::object& dy, const py::object& out,
                            bool accumulate) const {
    const py::array xa = input(x, x_shape_, "input"), dya = input(dy, y_shape_, "grad_output");
    if (accumulate && out.is_none()) throw py::value_error("accumulate=True needs an out buffer");
    py::array dw = output(out, w_shape_, "out", {&xa, &dya});
    dispatch([&](const auto& p, auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      p.backward_weight(ptr<T>(xa), ptr<T>(dya), mut<T>(dw), accumulate);
    });
    return dw;
  }

  py::tuple backward(const py::object& x, const py::object& w, const py::object& dy,
                     const py::object& weight_out, const py::object& bias_out,
                     bool accumulate, const py::object& input_out, bool input_grad) const {
    const py::array xa = input(x, x_shape_, "input"), wa = input(w, w_shape_, "weight");
    const py::array dya = input(dy, y_shape_, "grad_output");
    if (!bias_ && !bias_out.is_none())
      throw py::value_error("bias_out: given to a plan made with bias=False");
    if (accumulate && (weight_out.is_none() || (bias_ && bias_out.is_none())))
      throw py::value_error("accumulate=True needs weight_out (and bias_out when bias=True)");
    // Every buffer is checked before anything is written.
    py::array dw = output(weight_out, w_shape_, "weight_out", {&xa, &wa, &dya});
    std::optional<py::array> db;
    if (bias_) db = output(bias_out, b_shape_, "bias_out", {&xa, &wa, &dya, &dw});
    if (!input_grad && !input_out.is_none())
      throw py::value_error("input_out: given with input_grad=False");
    std::optional<py::array> dx;
    if (input_grad)
      dx = output(input_out, x_shape_, "input_out", {&xa, &wa, &dya, &dw, db ? &*db : nullptr});
    dispatch([&](const auto& p, auto tag) {
      using T = decltype(tag);
      py::gil_scoped_release nogil;
      p.backward_weight(ptr<T>(xa), ptr<T>(dya), mut<T>(dw), accumulate);
      if (db) p.backward_bias(ptr<T>(dya), mut<T>(*db), accumulate);
      if (dx) p.backward_input(ptr<T>(wa), ptr<T>(dya), mut<T>(*dx));
    });
    const auto or_none = [](const std::optional<py::array>& a) {
      return a ? py::object(*a) : py::object(py::none());
    };
    return py::make_tuple(or_none(dx), dw, or_none(db));
  }

  py::dict describe() const {
    convcore::PlanDescription d;
    dispatch([&](const auto& p, auto) { d = p.describe(); });
    py::dict out;
    const auto op = [](const convcore::OpChoice& c) {
      py::dict e;
      e["path"] = c.path;
      e["isa"] = c.isa;
      if (!c.tile.empty()) e["tile"] = c.tile;
      e["forced"] = c.forced;
      if (!c.detail.empty()) e["detail"] = c.detail;
      py::list cands;
      for (const auto& k : c.candidates) {
        py::dict cd;
        cd["path"] = k.path;
        cd["isa"] = k.isa;
        if (!k.tile.empty()) cd["tile"] = k.tile;
        cd["supported"] = k.supported;
        cd["cost"] = k.supported ? py::object(py::float_(k.cost)) : py::object(py::none());
        cands.append(cd);
      }
      e["candidates"] = cands;
      return e;
    };
    out["geometry"] = d.geometry;
    out["dtype"] = d.dtype;
    out["forward"] = op(d.forward);
    out["backward_input"] = op(d.backward_input);
    out["backward_weight"] = op(d.backward_weight);
    out["backward_bias"] = op(d.backward_bias);
    return out;
  }

 private:
  template <class F>
  void dispatch(F f) const {
    if (auto* p = std::get_if<Typed<float>>(&plan_)) return f(p->plan, float());
    f(std::get<Typed<double>>(plan_).plan, double());
  }

  template <class T>
  static const T* ptr(const py::array& a) { return static_cast<const T*>(a.data()); }
  template <class T>
  static T* mut(py::array& a) { return static_cast<T*>(a.mutable_data()); }


  // An input: an ndarray of the plan's dtype and shape; a non-contiguous one is copied (values
  // unchanged), a different dtype is refused (no silent conversion).
  py::array input(const py::object& obj, const Shape& shape, const char* name) const {
    py::array a = convcore::bindings::of_dtype(obj, dtype_, name, " (the plan's)");
    if (!same_shape(a, shape))
      throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) +
                            " for this plan, got " +
                            shape_str(shape_of(a)));
    if (!(a.flags() & py::array::c_style))
      a = py::array::ensure(a, py::array::c_style);
    return a;
  }

  py::array output(const py::object& obj, const Shape& shape, const char* name,
                   std::initializer_list<const py::array*> inputs) const {
    return convcore::bindings::output_buffer(obj, dtype_, shape, name, inputs);
  }

  bool bias_;
  py::dtype dtype_;
  Shape x_shape_, y_shape_, w_shape_, b_shape_;
  std::variant<std::monostate, Typed<float>, Typed<double>> plan_;
};

std::vector<std::string> path_names(const std::string& op) {
  for (auto o : {convcore::PlanOp::forward, convcore::PlanOp::backward_input,
                 convcore::PlanOp::backward_weight, convcore::PlanOp::backward_bias})
    if (op == convcore::plan_op_name(o)) return convcore::Conv2dPlan<float>::path_names(o);
  throw py::value_error("op: expected 'forward', 'backward_input', 'backward_weight' or "
                        "'backward_bias', got '" + op + "'");
}

}  // namespace

void bind_plan(py::module_& m) {
  py::class_<PlanBinding>(m, "Conv2dPlan", py::dynamic_attr(),
                          "A convolution planned once: paths chosen, geometry validated.")
      .def(py::init<const Conv2dGeometry&, const std::string&, bool, const std::string&, bool,
                    const std::string&, const std::string&, const std::string&,
                    const std::string&, const std::string&>(),
           py::arg("geometry"), py::arg("dtype"), py::arg("single"), py::arg("activation"),
           py::arg("bias"), py::arg("forward"), py::arg("backward_input"),
           py::arg("backward_weight"), py::arg("isa"), py::arg("tile") = "")
      .def_property_readonly("input_shape",
                             [](const PlanBinding& p) { return py::tuple(py::cast(p.input_shape())); })
      .def_property_readonly("output_shape",
                             [](const PlanBinding& p) { return py::tuple(py::cast(p.output_shape())); })
      .def_property_readonly("weight_shape",
                             [](const PlanBinding& p) { return py::tuple(py::cast(p.weight_shape())); })
      .def_property_readonly("dtype", &PlanBinding::dtype)
      .def("forward", &PlanBinding::forward, py::arg("input"), py::arg("weight"),
           py::arg("bias") = py::none(), py::arg("out") = py::none())
      .def("backward_input", &PlanBinding::backward_input, py::arg("weight"),
           py::arg("grad_output"), py::arg("out") = py::none())
      .def("backward_weight", &PlanBinding::backward_weight, py::arg("input"),
           py::arg("grad_output"), py::arg("out") = py::none(), py::arg("accumulate") = false)
      .def("backward", &PlanBinding::backward, py::arg("input"), py::arg("weight"),
           py::arg("grad_output"), py::kw_only(), py::arg("weight_out") = py::none(),
           py::arg("bias_out") = py::none(), py::arg("accumulate") = false,
           py::arg("input_out") = py::none(), py::arg("input_grad") = true)
      .def("describe", &PlanBinding::describe);
  m.def("plan_path_names", &path_names, py::arg("op"));
}
