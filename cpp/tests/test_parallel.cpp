#include "convcore/parallel.hpp"

#include <atomic>
#include <new>
#include <stdexcept>
#include <vector>

#include "check.hpp"

using namespace convcore;

int main() {
  // balance: a partition of [0, n) into nthr contiguous, nearly equal parts.
  for (int64_t n : {0, 1, 7, 64, 1000})
    for (int64_t nthr : {1, 2, 3, 8}) {
      int64_t next = 0;
      bool ok = true;
      for (int64_t t = 0; t < nthr; ++t) {
        int64_t b, e;
        detail::balance(n, nthr, t, b, e);
        ok = ok && b == next && e >= b && e - b <= n / nthr + 1;
        next = e;
      }
      CHECK_MSG(ok && next == n, "balance n=" << n << " nthr=" << nthr);
    }

  // threads_for_work: at least 1, at most the number of items, grows with the work.
  CHECK(detail::threads_for_work(0, 100) == 1);
  CHECK(detail::threads_for_work(1000, 1) == 1);
  CHECK(detail::threads_for_work(8, detail::kMinWorkPerThread) == 8);
  CHECK(detail::threads_for_work(int64_t{1} << 40, int64_t{1} << 40) == int64_t{1} << 40);

  // parallel_for visits every index exactly once, whatever the thread count.
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<std::atomic<int>> seen(100000);
    detail::parallel_for(int64_t(seen.size()), detail::kMinWorkPerThread,
                         [&](int64_t i) { seen[i].fetch_add(1); });
    bool once = true;
    for (auto& s : seen) once = once && s.load() == 1;
    CHECK_MSG(once, "parallel_for threads=" << threads);

    // An exception inside a parallel region reaches the caller after the region (it would
    // otherwise terminate the process), and only one of several is rethrown.
    bool caught = false;
    try {
      detail::parallel(3, [](int64_t tid, int64_t) {
        if (tid == 0) throw std::bad_alloc();
        throw std::runtime_error("other thread");
      });
    } catch (const std::bad_alloc&) {
      caught = true;
    } catch (const std::runtime_error&) {
      caught = true;
    }
    CHECK_MSG(caught, "exception from a region, threads=" << threads);
  }
  CHECK_THROWS(set_num_threads(0), std::invalid_argument);
  return check::report("parallel");
}
