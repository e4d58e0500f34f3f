#pragma once
// Threads. The only file that mentions OpenMP. Work is split statically, so which thread computes
// an element never changes what is computed: results are bitwise identical for any thread count.
#include <atomic>
#include <climits>
#include <cstdint>
#include <exception>

#ifdef CONVCORE_HAS_OPENMP
#include <omp.h>
#endif

namespace convcore {

// Number of threads the library's parallel regions use, read at each call: the count fixed by
// set_num_threads when there is one, else OpenMP's omp_get_max_threads() of the calling thread,
// so OMP_NUM_THREADS, omp_set_num_threads and threadpoolctl's limits apply to every later call
// and end with them. 1 without OpenMP, and 1 in a process forked (with GNU libgomp) after the
// library had started its threads: libgomp's thread pool does not survive fork, and a parallel
// region there would wait forever for threads that no longer exist.
int get_num_threads();
// n >= 1 fixes the count for this library (it overrides OpenMP's setting, which it leaves
// alone); n == 0 lifts the override, so OpenMP's setting applies again.
void set_num_threads(int n);
// Whether the count was fixed by set_num_threads.
bool num_threads_fixed();
// Whether this process was forked after the library had started its threads and therefore
// runs on one thread (see get_num_threads).
bool forked_single_threaded();
// Whether the library was built with OpenMP.
constexpr bool has_openmp() {
#ifdef CONVCORE_HAS_OPENMP
  return true;
#else
  return false;
#endif
}

namespace detail {

// Set once the library has started a team of more than one thread: what makes a later fork's
// child unable to run parallel regions (read by the fork handler in parallel.cpp).
inline std::atomic<bool> threads_started{false};

inline bool in_parallel() {
#ifdef CONVCORE_HAS_OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

// Runs f(tid, nthr) on min(nthr_max, get_num_threads()) threads; once, serially, when already
// inside a parallel region or when one thread is asked for. An exception thrown by f is
// rethrown on the calling thread after the region.
template <class F>
void parallel(int64_t nthr_max, F&& f) {
  int64_t nthr = get_num_threads();
  if (nthr_max < nthr) nthr = nthr_max;
  if (nthr <= 1 || in_parallel()) {
    f(int64_t{0}, int64_t{1});
    return;
  }
#ifdef CONVCORE_HAS_OPENMP
  if (!threads_started.load(std::memory_order_relaxed))
    threads_started.store(true, std::memory_order_relaxed);
  // An exception must not leave an OpenMP region (the process would terminate): each thread
  // catches its own, the first is kept and rethrown once the region has ended. Callers validate
  // before parallel work, so this only carries failures such as std::bad_alloc of a buffer.
  std::exception_ptr error;
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(static_cast<int>(nthr))
  {
    try {
      f(int64_t{omp_get_thread_num()}, int64_t{omp_get_num_threads()});
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
#else
  f(int64_t{0}, int64_t{1});
#endif
}

// Work (about one multiply-add or element update per unit) below which waking another thread
// costs more than it saves.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 16;

// a * b for a, b >= 0, saturated at INT64_MAX: the work estimates below multiply sizes that each
// fit in 64 bits while their product, for a valid but huge geometry, need not.
inline int64_t work_mul(int64_t a, int64_t b) {
  return a > 0 && b > INT64_MAX / a ? INT64_MAX : a * b;
}

// Threads worth using for `items` independent items of `work_per_item` units each (>= 1).
inline int64_t threads_for_work(int64_t items, int64_t work_per_item) {
  const int64_t total = work_per_item > 0 && items > INT64_MAX / work_per_item ? INT64_MAX
                                                                                : items * work_per_item;
  const int64_t by_work = total / kMinWorkPerThread;
  const int64_t n = by_work < items ? by_work : items;
  return n < 1 ? 1 : n;
}

// Static balanced split of [0, n) into nthr parts: part tid is [begin, end).
inline void balance(int64_t n, int64_t nthr, int64_t tid, int64_t& begin, int64_t& end) {
  const int64_t q = n / nthr, r = n % nthr;
  begin = tid * q + (tid < r ? tid : r);
  end = begin + q + (tid < r ? 1 : 0);
}

// f(i) for i in [0, n), split statically over the threads; each f(i) is about work_per_item
// units of work, which decides how many threads are worth waking.
template <class F>
void parallel_for(int64_t n, int64_t work_per_item, F&& f) {
  parallel(threads_for_work(n, work_per_item), [&](int64_t tid, int64_t nthr) {
    int64_t begin, end;
    balance(n, nthr, tid, begin, end);
    for (int64_t i = begin; i < end; ++i) f(i);
  });
}

}  // namespace detail
}  // namespace convcore
