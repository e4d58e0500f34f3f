#pragma once
// A minimal test harness: CHECK records a failure and goes on; main returns check::report().
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>

namespace check {

inline int& failures() { static int n = 0; return n; }
inline int& checks() { static int n = 0; return n; }

inline void record(bool ok, const char* file, int line, const std::string& what) {
  ++checks();
  if (!ok) {
    ++failures();
    if (failures() <= 20) std::fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
  }
}

// |a - b| <= atol + rtol * |b|; NaN never passes.
template <class T>
bool close(T a, T b, double rtol, double atol) {
  const double d = std::fabs(double(a) - double(b));
  return d <= atol + rtol * std::fabs(double(b));
}

inline int report(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, checks(), failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace check

#define CHECK(cond) ::check::record(static_cast<bool>(cond), __FILE__, __LINE__, #cond)
#define CHECK_MSG(cond, msg)                                                   \
  do {                                                                         \
    std::ostringstream os_;                                                    \
    os_ << #cond << " [" << msg << "]";                                        \
    ::check::record(static_cast<bool>(cond), __FILE__, __LINE__, os_.str());   \
  } while (0)
#define CHECK_THROWS(expr, Exc)                                                \
  do {                                                                         \
    bool thrown_ = false;                                                      \
    try { expr; } catch (const Exc&) { thrown_ = true; }                       \
    ::check::record(thrown_, __FILE__, __LINE__, "throws " #Exc ": " #expr);   \
  } while (0)
