#include "convcore/parallel.hpp"

#include <atomic>

#include "convcore/error.hpp"

namespace convcore {
namespace {

int default_threads() {
#ifdef CONVCORE_HAS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::atomic<int>& thread_count() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

int get_num_threads() { return thread_count().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  CONVCORE_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  thread_count().store(has_openmp() ? n : 1, std::memory_order_relaxed);
}

}  // namespace convcore
