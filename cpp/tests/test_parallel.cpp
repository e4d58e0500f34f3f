#include "convcore/parallel.hpp"

#include <atomic>
#include <new>
#include <stdexcept>
#include <vector>

#include "check.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#include <unistd.h>
#endif

using namespace convcore;

// The count follows OpenMP's setting at each call unless set_num_threads fixed it; 0 lifts the fix.
void test_follows_openmp() {
  set_num_threads(0);
  CHECK(!num_threads_fixed());
#ifdef CONVCORE_HAS_OPENMP
  const int initial = omp_get_max_threads();
  CHECK(get_num_threads() == initial);
  omp_set_num_threads(3);
  CHECK(get_num_threads() == 3);
  std::atomic<int> team{0};
  detail::parallel(8, [&](int64_t, int64_t nthr) { team = int(nthr); });
  CHECK_MSG(team == 3, "team of " << team.load() << " after omp_set_num_threads(3)");
  set_num_threads(2);  // the override wins over OpenMP's setting...
  CHECK(num_threads_fixed() && get_num_threads() == 2);
  omp_set_num_threads(1);
  CHECK(get_num_threads() == 2);
  set_num_threads(0);  // ...until it is lifted
  CHECK(get_num_threads() == 1);
  omp_set_num_threads(initial);
  CHECK(get_num_threads() == initial);
#else
  CHECK(get_num_threads() == 1);
  set_num_threads(4);
  CHECK(get_num_threads() == 1);
  set_num_threads(0);
#endif
}

// A child forked after the library ran a team computes correctly (on one thread with GNU
// libgomp, whose pool does not survive fork) instead of hanging; the child is killed after 30 s.
void test_fork_child() {
#if defined(CONVCORE_HAS_OPENMP) && (defined(__unix__) || defined(__APPLE__))
  set_num_threads(2);
  std::atomic<int64_t> sum{0};
  detail::parallel(2, [&](int64_t tid, int64_t) { sum += tid + 1; });  // starts the pool
  CHECK(detail::threads_started.load());
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(30);  // a hang becomes a failure (SIGALRM)
    std::vector<std::atomic<int>> seen(100000);
    detail::parallel_for(int64_t(seen.size()), detail::kMinWorkPerThread,
                         [&](int64_t i) { seen[i].fetch_add(1); });
    bool once = true;
    for (auto& s : seen) once = once && s.load() == 1;
#ifdef _LIBGOMP_OMP_LOCK_DEFINED
    once = once && forked_single_threaded() && get_num_threads() == 1;
#endif
    _exit(once ? 0 : 3);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "forked child: " << (WIFEXITED(status) ? "exit " : "signal ")
                             << (WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)));
  CHECK(!forked_single_threaded());  // the parent keeps its threads
  set_num_threads(0);
#endif
}

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
  CHECK_THROWS(set_num_threads(-1), std::invalid_argument);
  test_follows_openmp();
  test_fork_child();
  return check::report("parallel");
}
