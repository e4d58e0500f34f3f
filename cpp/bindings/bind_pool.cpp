// Thin bindings of max pooling: check buffers, release the GIL, call. No maths here.
// The geometry is a Conv2dGeometry with oc == ic and groups == ic (see convcore/pool.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "convcore/pool.hpp"

namespace py = pybind11;
using convcore::Conv2dGeometry;

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
      [](const Conv2dGeometry& g, In<T> x) {
        convcore::validate_pool(g, "max_pool2d_forward");
        require_size(x, g.src_size(), "input");
        py::array_t<T> y({g.mb, g.ic, g.oh(), g.ow()});
        py::array_t<int64_t> idx({g.mb, g.ic, g.oh(), g.ow()});
        T* yp = y.mutable_data();
        int64_t* ip = idx.mutable_data();
        {
          py::gil_scoped_release nogil;
          convcore::max_pool2d_forward(g, x.data(), yp, ip);
        }
        return py::make_tuple(y, idx);
      },
      py::arg("geometry"), py::arg("input"),
      "Max pooling: (output, indices), indices flat into each input plane (int64).");

  m.def(
      "max_pool2d_backward",
      [](const Conv2dGeometry& g, In<int64_t> idx, In<T> dy) {
        convcore::validate_pool(g, "max_pool2d_backward");
        require_size(idx, g.dst_size(), "indices");
        require_size(dy, g.dst_size(), "grad_output");
        py::array_t<T> dx({g.mb, g.ic, g.ih, g.iw});
        T* dxp = dx.mutable_data();
        py::gil_scoped_release nogil;
        convcore::max_pool2d_backward(g, idx.data(), dy.data(), dxp);
        return dx;
      },
      py::arg("geometry"), py::arg("indices"), py::arg("grad_output"),
      "Gradient of max pooling: grad_output added into the cells the indices name.");
}

}  // namespace

void bind_pool(py::module_& m) {
  bind_pool_ops<float>(m);
  bind_pool_ops<double>(m);
}
