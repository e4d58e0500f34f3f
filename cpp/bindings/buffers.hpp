#pragma once
// Buffer checks shared by the bindings: shapes, overlap, and the one rule for an output buffer a
// caller passes in (exact dtype and shape, C order, writeable, no memory shared with an input).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace convcore::bindings {

namespace py = pybind11;
using Shape = std::vector<py::ssize_t>;

inline std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

inline Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

inline bool same_shape(const py::array& a, const Shape& s) {
  if (a.ndim() != py::ssize_t(s.size())) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (a.shape(py::ssize_t(i)) != s[i]) return false;
  return true;
}

// The byte range an array's elements span.
inline std::pair<uintptr_t, uintptr_t> extent(const py::array& a) {
  auto lo = reinterpret_cast<uintptr_t>(a.data()), hi = lo;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) == 0) return {lo, lo};
    const py::ssize_t step = a.strides(d) * (a.shape(d) - 1);
    (step < 0 ? lo : hi) += uintptr_t(step);
  }
  return {lo, hi + uintptr_t(a.itemsize())};
}

inline bool overlap(const py::array& a, const py::array& b) {
  const auto [a0, a1] = extent(a);
  const auto [b0, b1] = extent(b);
  return a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
}

// obj as an ndarray of exactly `dtype`, else TypeError naming the argument (`whose` qualifies
// the expected dtype in the message, e.g. " (the plan's)").
inline py::array of_dtype(const py::object& obj, const py::dtype& dtype, const char* name,
                          const char* whose = "") {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(dtype))
    throw py::type_error(std::string(name) + ": dtype must be " + std::string(py::str(dtype)) +
                         whose + ", got " + std::string(py::str(a.dtype())));
  return a;
}

// An output: a new array when obj is None, else the caller's buffer checked for exact dtype,
// shape, C order, writeability and overlap with the inputs (ValueError / TypeError naming it).
inline py::array output_buffer(const py::object& obj, const py::dtype& dtype, const Shape& shape,
                               const char* name,
                               std::initializer_list<const py::array*> inputs) {
  if (obj.is_none()) return py::array(dtype, shape);
  py::array a = of_dtype(obj, dtype, name);
  if (!same_shape(a, shape))
    throw py::value_error(std::string(name) + ": shape must be " + shape_str(shape) + ", got " +
                          shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (!a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  for (const py::array* in : inputs)
    if (in && overlap(a, *in))
      throw py::value_error(std::string(name) + ": must not share memory with an input");
  return a;
}

}  // namespace convcore::bindings
