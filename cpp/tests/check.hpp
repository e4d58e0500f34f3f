#pragma once
// A minimal test harness: CHECK records a failure and goes on; main returns check::report().
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

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

// Element-wise close(); prints the first mismatch.
template <class T>
bool all_close(const std::vector<T>& got, const std::vector<T>& want, double tol) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (!close(double(got[i]), double(want[i]), tol, tol)) {
      std::fprintf(stderr, "  at %zu: got %.10g want %.10g\n", i, double(got[i]), double(want[i]));
      return false;
    }
  return true;
}

// Bitwise equality (what "the same result for any thread count" means).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
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
