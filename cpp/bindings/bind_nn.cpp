// Thin bindings of the network toolkit's native steps: the Adam/AdamW update and batch
// normalisation. Shapes, dtypes and buffers are checked here; the maths is in cpp/src/ops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "buffers.hpp"
#include "convcore/adam.hpp"
#include "convcore/batchnorm.hpp"

namespace py = pybind11;
using convcore::bindings::output_buffer;
using convcore::bindings::Shape;
using convcore::bindings::shape_of;
using convcore::bindings::shape_str;

namespace {

template <class T>
using In = py::array_t<T, py::array::c_style>;

// An input that must already have exactly dtype T, C order and `shape` (no silent conversion).
template <class T>
const T* exact_input(const py::array& a, const Shape& shape, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": dtype must be " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!convcore::bindings::same_shape(a, shape))
    throw py::value_error(std::string(name) + ": shape must be " + shape_str(shape) + ", got " +
                          shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": must be C-contiguous");
  return static_cast<const T*>(a.data());
}

template <class T>
void adam(py::array param, py::array grad, py::array exp_avg, py::array exp_avg_sq, int64_t step,
          const convcore::AdamOptions& opt) {
  const auto dt = py::dtype::of<T>();
  const Shape shape = shape_of(param);
  py::array p = output_buffer(param, dt, shape, "param", {});
  const T* g = exact_input<T>(grad, shape, "grad");
  if (grad.data() != param.data() && convcore::bindings::overlap(grad, param))
    throw py::value_error("grad: must not share memory with param");
  py::array m = output_buffer(exp_avg, dt, shape, "exp_avg", {&p, &grad});
  py::array v = output_buffer(exp_avg_sq, dt, shape, "exp_avg_sq", {&p, &grad, &m});
  T* pp = static_cast<T*>(p.mutable_data());
  T* mp = static_cast<T*>(m.mutable_data());
  T* vp = static_cast<T*>(v.mutable_data());
  py::gil_scoped_release nogil;
  convcore::adam_update<T>(int64_t(p.size()), pp, g, mp, vp, step, opt);
}

// (N, C, H, W), or (N, H, W, C) with layout "NHWC" -> the kernel's (n, c, hw, layout).
convcore::BatchNormShape bn_shape(const py::array& x, const std::string& layout) {
  convcore::Layout l;
  if (!convcore::parse_layout(layout, l))
    throw py::value_error("layout: expected 'NCHW' or 'NHWC', got '" + layout + "'");
  const bool nhwc = l == convcore::Layout::nhwc;
  if (x.ndim() != 4)
    throw py::value_error(std::string("input: expected shape ") + (nhwc ? "(N, H, W, C)" : "(N, C, H, W)") +
                          ", got " + shape_str(shape_of(x)));
  const int64_t c = int64_t(x.shape(nhwc ? 3 : 1));
  const int64_t hw = nhwc ? int64_t(x.shape(1)) * int64_t(x.shape(2)) : int64_t(x.shape(2)) * int64_t(x.shape(3));
  return {int64_t(x.shape(0)), c, hw, l};
}

template <class T>
T* optional_out(const py::object& obj, const Shape& shape, const char* name,
                std::initializer_list<const py::array*> inputs, std::optional<py::array>& keep) {
  if (obj.is_none()) return nullptr;
  keep = output_buffer(obj, py::dtype::of<T>(), shape, name, inputs);
  return static_cast<T*>(keep->mutable_data());
}

py::object or_none(const std::optional<py::array>& a) { return a ? py::object(*a) : py::object(py::none()); }

template <class T>
void bind_bn(py::module_& m) {
  m.def(
      "batchnorm_forward",
      [](In<T> x, std::optional<In<T>> gamma, std::optional<In<T>> beta, const py::object& running_mean,
         const py::object& running_var, bool batch_stats, double eps, double momentum,
         const py::object& out, const std::string& layout) {
        const auto s = bn_shape(x, layout);
        const Shape c{py::ssize_t(s.c)};
        if (gamma) exact_input<T>(*gamma, c, "weight");
        if (beta) exact_input<T>(*beta, c, "bias");
        std::optional<py::array> rm, rv;
        T* rmp = optional_out<T>(running_mean, c, "running_mean", {&x}, rm);
        T* rvp = optional_out<T>(running_var, c, "running_var", {&x, rm ? &*rm : nullptr}, rv);
        py::array y = output_buffer(out, py::dtype::of<T>(), shape_of(x), "out",
                                    {&x, gamma ? &*gamma : nullptr, beta ? &*beta : nullptr,
                                     rm ? &*rm : nullptr, rv ? &*rv : nullptr});
        py::array_t<T> mean(s.c), invstd(s.c);
        const T* gp = gamma ? gamma->data() : nullptr;
        const T* bp = beta ? beta->data() : nullptr;
        T* yp = static_cast<T*>(y.mutable_data());
        T* mp = mean.mutable_data();
        T* ip = invstd.mutable_data();
        {
          py::gil_scoped_release nogil;
          convcore::batchnorm_forward<T>(s, x.data(), gp, bp, batch_stats, eps, momentum, rmp, rvp, mp, ip, yp);
        }
        return py::make_tuple(y, mean, invstd);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::kw_only(), py::arg("batch_stats"), py::arg("eps"), py::arg("momentum"),
      py::arg("out") = py::none(), py::arg("layout") = "NCHW",
      "Batch normalisation of (N, C, H, W), or (N, H, W, C) with layout='NHWC': (y, saved mean, "
      "saved invstd). Running statistics are updated in place with batch statistics, used as they "
      "are otherwise.");

  m.def(
      "batchnorm_backward",
      [](In<T> x, In<T> dy, std::optional<In<T>> gamma, In<T> mean, In<T> invstd, bool batch_stats,
         const py::object& weight_out, const py::object& bias_out, bool accumulate, bool input_grad,
         const py::object& input_out, const std::string& layout) {
        const auto s = bn_shape(x, layout);
        const Shape c{py::ssize_t(s.c)};
        exact_input<T>(dy, shape_of(x), "grad_output");
        if (gamma) exact_input<T>(*gamma, c, "weight");
        exact_input<T>(mean, c, "save_mean");
        exact_input<T>(invstd, c, "save_invstd");
        if (accumulate && weight_out.is_none() && bias_out.is_none())
          throw py::value_error("accumulate=True needs weight_out or bias_out");
        if (!input_grad && !input_out.is_none())
          throw py::value_error("input_out: given with input_grad=False");
        std::optional<py::array> dg, db, dx;
        T* dgp = optional_out<T>(weight_out, c, "weight_out", {&x, &dy}, dg);
        T* dbp = optional_out<T>(bias_out, c, "bias_out", {&x, &dy, dg ? &*dg : nullptr}, db);
        if (input_grad)
          dx = output_buffer(input_out, py::dtype::of<T>(), shape_of(x), "input_out",
                             {&x, &dy, dg ? &*dg : nullptr, db ? &*db : nullptr});
        T* dxp = dx ? static_cast<T*>(dx->mutable_data()) : nullptr;
        const T* gp = gamma ? gamma->data() : nullptr;
        {
          py::gil_scoped_release nogil;
          convcore::batchnorm_backward<T>(s, x.data(), dy.data(), gp, mean.data(), invstd.data(), batch_stats,
                                          dxp, dgp, dbp, accumulate);
        }
        return py::make_tuple(or_none(dx), or_none(dg), or_none(db));
      },
      py::arg("input"), py::arg("grad_output"), py::arg("weight"), py::arg("save_mean"),
      py::arg("save_invstd"), py::kw_only(), py::arg("batch_stats"), py::arg("weight_out") = py::none(),
      py::arg("bias_out") = py::none(), py::arg("accumulate") = false, py::arg("input_grad") = true,
      py::arg("input_out") = py::none(), py::arg("layout") = "NCHW",
      "Gradients of batchnorm_forward: (dx or None, dweight or None, dbias or None); dweight and "
      "dbias only into weight_out / bias_out (added to with accumulate=True).");
}

}  // namespace

void bind_nn(py::module_& m) {
  m.def(
      "adam_update",
      [](py::array param, py::array grad, py::array exp_avg, py::array exp_avg_sq, int64_t step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay) {
        const convcore::AdamOptions opt{lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay};
        if (param.dtype().is(py::dtype::of<float>()))
          adam<float>(param, grad, exp_avg, exp_avg_sq, step, opt);
        else if (param.dtype().is(py::dtype::of<double>()))
          adam<double>(param, grad, exp_avg, exp_avg_sq, step, opt);
        else
          throw py::type_error("param: dtype must be float32 or float64, got " + std::string(py::str(param.dtype())));
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled_weight_decay"),
      "One Adam (or AdamW, decoupled_weight_decay=True) step in place; step is the count after it (>= 1).");
  bind_bn<float>(m);
  bind_bn<double>(m);
}
