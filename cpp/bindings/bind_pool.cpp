// Thin bindings of max pooling: check buffers, release the GIL, call. No maths here.
// The geometry is a Conv2dGeometry with oc == ic and groups == ic (see convcore/pool.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "buffers.hpp"
#include "convcore/pool.hpp"

namespace py = pybind11;
using convcore::Conv2dGeometry;
using convcore::bindings::output_buffer;
using convcore::bindings::Shape;

namespace {

template <class T>
using In = py::array_t<T, py::array::c_style>;

void require_size(const py::array& a, int64_t n, const char* name) {
  if (a.size() != n)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                          " elements for the geometry, got " + std::to_string(a.size()));
}

template <class T>
void bind_pool_ops(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](const Conv2dGeometry& g, In<T> x, const py::object& out, const py::object& indices_out) {
        convcore::validate_pool(g, "max_pool2d_forward");
        require_size(x, g.src_size(), "input");
        const Shape shape{g.mb, g.ic, g.oh(), g.ow()};
        py::array y = output_buffer(out, py::dtype::of<T>(), shape, "out", {&x});
        py::array idx = output_buffer(indices_out, py::dtype::of<int64_t>(), shape, "indices_out",
                                      {&x, &y});
        T* yp = static_cast<T*>(y.mutable_data());
        auto* ip = static_cast<int64_t*>(idx.mutable_data());
        {
          py::gil_scoped_release nogil;
          convcore::max_pool2d_forward(g, x.data(), yp, ip);
        }
        return py::make_tuple(y, idx);
      },
      py::arg("geometry"), py::arg("input"), py::arg("out") = py::none(),
      py::arg("indices_out") = py::none(),
      "Max pooling: (output, indices), indices flat into each input plane (int64).");

  m.def(
      "max_pool2d_backward",
      [](const Conv2dGeometry& g, In<int64_t> idx, In<T> dy, const py::object& out) {
        convcore::validate_pool(g, "max_pool2d_backward");
        require_size(idx, g.dst_size(), "indices");
        require_size(dy, g.dst_size(), "grad_output");
        py::array dx = output_buffer(out, py::dtype::of<T>(), {g.mb, g.ic, g.ih, g.iw}, "out",
                                     {&idx, &dy});
        T* dxp = static_cast<T*>(dx.mutable_data());
        py::gil_scoped_release nogil;
        convcore::max_pool2d_backward(g, idx.data(), dy.data(), dxp);
        return dx;
      },
      py::arg("geometry"), py::arg("indices"), py::arg("grad_output"), py::arg("out") = py::none(),
      "Gradient of max pooling: grad_output added into the cells the indices name.");
}

}  // namespace

void bind_pool(py::module_& m) {
  bind_pool_ops<float>(m);
  bind_pool_ops<double>(m);
}
