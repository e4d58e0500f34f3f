#pragma once
// Error reporting for caller mistakes. Ops validate at entry, before any parallel region, and throw:
//   std::invalid_argument -> Python ValueError   (a rule about shapes or parameters is broken)
//   std::overflow_error   -> Python OverflowError (a size product does not fit in 64 bits)
// Kernels, packing and im2col only assert.
#include <sstream>
#include <stdexcept>
#include <string>

namespace convcore::detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace convcore::detail

#define CONVCORE_CHECK(cond, ...)                                          \
  do {                                                                     \
    if (!(cond)) throw std::invalid_argument(::convcore::detail::concat(__VA_ARGS__)); \
  } while (0)
