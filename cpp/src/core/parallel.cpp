#include "convcore/parallel.hpp"

#include <atomic>

#include "convcore/error.hpp"

#if defined(CONVCORE_HAS_OPENMP) && defined(_LIBGOMP_OMP_LOCK_DEFINED) && \
    (defined(__unix__) || defined(__APPLE__))
#define CONVCORE_FORK_GUARD 1
#include <pthread.h>
#endif

namespace convcore {
namespace {

// 0: no override, OpenMP's setting applies (read per call; omp_get_max_threads reads a
// thread-local value, no system call).
std::atomic<int> fixed_threads{0};
// Set in the child of a fork that happened after threads_started (GNU libgomp only).
std::atomic<bool> forked_child{false};

#ifdef CONVCORE_FORK_GUARD
// GNU libgomp keeps its thread pool across fork() although the threads are gone: the child's first
// parallel region waits for them forever. LLVM's and Intel's runtimes rebuild their pool in the
// child themselves; libgomp offers no way to, so a child forked after the library started its
// threads runs on one thread (Python's convcore module warns once, at the fork). A child
// forked before any parallel region keeps its threads.
void on_fork_child() {
  if (detail::threads_started.load(std::memory_order_relaxed))
    forked_child.store(true, std::memory_order_relaxed);
}

[[maybe_unused]] const int fork_handler_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
#endif

}  // namespace

int get_num_threads() {
#ifdef CONVCORE_HAS_OPENMP
  if (forked_child.load(std::memory_order_relaxed)) return 1;
  const int n = fixed_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  CONVCORE_CHECK(n >= 0, "set_num_threads: n must be >= 1 (or 0 to follow OpenMP's setting), got ", n);
  fixed_threads.store(n, std::memory_order_relaxed);
}

bool num_threads_fixed() { return fixed_threads.load(std::memory_order_relaxed) > 0; }

bool forked_single_threaded() { return forked_child.load(std::memory_order_relaxed); }

}  // namespace convcore
