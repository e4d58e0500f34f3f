// Thin bindings of max and average pooling: check buffers, release the GIL, call. No maths here.
// The geometry is a Conv2dGeometry with oc == ic and groups == ic (see convcore/pool.hpp); its
// layout says whether activations are (N, C, H, W) or (N, H, W, C).
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

// An activation shape in the geometry's layout.
Shape activation_shape(const Conv2dGeometry& g, int64_t h, int64_t w) {
  if (g.layout == convcore::Layout::nhwc) return {g.mb, h, w, g.ic};
  return {g.mb, g.ic, h, w};
}

template <class T>
void bind_pool_ops(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](const Conv2dGeometry& g, In<T> x, const py::object& out, const py::object& indices_out) {
        convcore::validate_pool(g, "max_pool2d_forward");
        require_size(x, g.src_size(), "input");
        const Shape shape = activation_shape(g, g.oh(), g.ow());
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
      "Max pooling: (output, indices) in the geometry's layout, indices flat (h * iw + w) into "
      "each H x W input plane (int64) in either layout.");

  m.def(
      "max_pool2d_backward",
      [](const Conv2dGeometry& g, In<int64_t> idx, In<T> dy, const py::object& out) {
        convcore::validate_pool(g, "max_pool2d_backward");
        require_size(idx, g.dst_size(), "indices");
        require_size(dy, g.dst_size(), "grad_output");
        py::array dx = output_buffer(out, py::dtype::of<T>(), activation_shape(g, g.ih, g.iw),
                                     "out", {&idx, &dy});
        T* dxp = static_cast<T*>(dx.mutable_data());
        py::gil_scoped_release nogil;
        convcore::max_pool2d_backward(g, idx.data(), dy.data(), dxp);
        return dx;
      },
      py::arg("geometry"), py::arg("indices"), py::arg("grad_output"), py::arg("out") = py::none(),
      "Gradient of max pooling: grad_output added into the cells the indices name.");

  m.def(
      "avg_pool2d_forward",
      [](const Conv2dGeometry& g, In<T> x, bool count_include_pad, const py::object& out) {
        convcore::validate_pool(g, "avg_pool2d_forward");
        require_size(x, g.src_size(), "input");
        py::array y = output_buffer(out, py::dtype::of<T>(), activation_shape(g, g.oh(), g.ow()),
                                    "out", {&x});
        T* yp = static_cast<T*>(y.mutable_data());
        py::gil_scoped_release nogil;
        convcore::avg_pool2d_forward(g, count_include_pad, x.data(), yp);
        return y;
      },
      py::arg("geometry"), py::arg("input"), py::arg("count_include_pad"),
      py::arg("out") = py::none(), "Average pooling in the geometry's layout (no dilation).");

  m.def(
      "avg_pool2d_backward",
      [](const Conv2dGeometry& g, In<T> dy, bool count_include_pad, const py::object& out) {
        convcore::validate_pool(g, "avg_pool2d_backward");
        require_size(dy, g.dst_size(), "grad_output");
        py::array dx = output_buffer(out, py::dtype::of<T>(), activation_shape(g, g.ih, g.iw),
                                     "out", {&dy});
        T* dxp = static_cast<T*>(dx.mutable_data());
        py::gil_scoped_release nogil;
        convcore::avg_pool2d_backward(g, count_include_pad, dy.data(), dxp);
        return dx;
      },
      py::arg("geometry"), py::arg("grad_output"), py::arg("count_include_pad"),
      py::arg("out") = py::none(),
      "Gradient of average pooling: each grad_output / divisor added to its window's cells.");
}

}  // namespace

void bind_pool(py::module_& m) {
  bind_pool_ops<float>(m);
  bind_pool_ops<double>(m);
}
