// gemm(): argument checks, then the driver with the plain-matrix packers. Also the driver's
// out-of-line helpers: per-thread workspace, thread partition, C scaling.
#include "gemm/gemm_driver.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>
#include <memory>
#include <new>

#include "convcore/error.hpp"
#include "convcore/gemm.hpp"
#include "gemm/pack.hpp"

namespace convcore {
namespace detail {

namespace {

struct AlignedFree {
  void operator()(void* p) const { ::operator delete(p, std::align_val_t{64}); }
};

// Below this many multiply-adds per thread, starting threads costs more than it saves.
constexpr int64_t kMinFmaPerThread = int64_t{1} << 18;

}  // namespace

void* gemm_workspace(std::size_t bytes) {
  thread_local std::unique_ptr<void, AlignedFree> buf;
  thread_local std::size_t capacity = 0;
  if (bytes > capacity) {
    // Grow by at least half, so a sequence of slightly larger calls does not reallocate each time.
    std::size_t want = capacity + capacity / 2;
    if (want < bytes) want = bytes;
    want = (want + 4095) / 4096 * 4096;
    buf.reset();
    capacity = 0;
    buf.reset(::operator new(want, std::align_val_t{64}));
    capacity = want;
  }
  return buf.get();
}

int64_t gemm_max_threads(int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr) {
  const int64_t tiles = ((m + mr - 1) / mr) * ((n + nr - 1) / nr);
  const double by_work = double(m) * double(n) * double(k) / double(kMinFmaPerThread);
  if (by_work < 2) return 1;
  return by_work < double(tiles) ? static_cast<int64_t>(by_work) : tiles;
}

GemmPartition gemm_partition(int64_t m, int64_t n, int64_t k, int64_t mr, int64_t nr, int64_t nc,
                             int64_t nthr) {
  // Estimated time of the slowest thread: its tiles (edge waste included) plus packing, where
  // A is packed once per NC block of its columns and B once. Ties go to splitting n.
  const int64_t mt = (m + mr - 1) / mr, nt = (n + nr - 1) / nr;
  GemmPartition best{1, nthr};
  double best_cost = -1;
  for (int64_t nthr_m = 1; nthr_m <= nthr; ++nthr_m) {
    if (nthr % nthr_m != 0) continue;
    const int64_t nthr_n = nthr / nthr_m;
    const double rows = double((mt + nthr_m - 1) / nthr_m * mr);
    const double cols = double((nt + nthr_n - 1) / nthr_n * nr);
    const double kk = double(k);
    const double n_blocks = double((int64_t(cols) + nc - 1) / nc);
    const double compute = rows * cols * kk;
    const double packing = 4.0 * (rows * kk * n_blocks + cols * kk);
    const double cost = compute + packing;
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = {nthr_m, nthr_n};
    }
  }
  return best;
}

template <class T>
void gemm_scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      for (int64_t j = 0; j < n; ++j) row[j] = T(0);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

template void gemm_scale_c<float>(int64_t, int64_t, float, float*, int64_t);
template void gemm_scale_c<double>(int64_t, int64_t, double, double*, int64_t);

}  // namespace detail

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  CONVCORE_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: sizes m=", m, " n=", n, " k=", k,
                 " must be non-negative");
  const int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  CONVCORE_CHECK(lda >= (a_cols > 1 ? a_cols : 1), "gemm: lda=", lda, " is less than the ",
                 a_cols, " columns of ", trans_a ? "A^T" : "A");
  CONVCORE_CHECK(ldb >= (b_cols > 1 ? b_cols : 1), "gemm: ldb=", ldb, " is less than the ",
                 b_cols, " columns of ", trans_b ? "B^T" : "B");
  CONVCORE_CHECK(ldc >= (n > 1 ? n : 1), "gemm: ldc=", ldc, " is less than n=", n);
  detail::gemm_driver<T>(detail::gemm_kernel<T>(active_isa()), m, n, k, alpha, detail::MatrixPackA<T>(trans_a, a, lda),
                         detail::MatrixPackB<T>(trans_b, b, ldb), beta, c, ldc);
}

template <class T>
double kernel_peak_gflops(double seconds) {
  const detail::GemmKernel<T>& kern = detail::gemm_kernel<T>(active_isa());
  constexpr int64_t kc = 128;  // A (MR x kc) and B (kc x NR) panels stay in L1
  const int64_t nthr = get_num_threads();
  std::vector<double> rate(static_cast<std::size_t>(nthr), 0.0);
  detail::parallel(nthr, [&](int64_t tid, int64_t) {
    alignas(64) T a[detail::kMaxMR * kc], b[kc * detail::kMaxNR], c[detail::kMaxMR * detail::kMaxNR];
    std::fill(a, a + detail::kMaxMR * kc, T(1e-3));
    std::fill(b, b + kc * detail::kMaxNR, T(1e-3));
    std::fill(c, c + detail::kMaxMR * detail::kMaxNR, T(0));
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int64_t calls = 0;
    double elapsed = 0;
    do {
      for (int i = 0; i < 1000; ++i) kern.ukernel(kc, T(1), a, b, T(1), c, kern.nr);
      calls += 1000;
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < seconds);
    rate[static_cast<std::size_t>(tid)] = 2.0 * double(kern.mr * kern.nr * kc) * double(calls) / elapsed;
  });
  double total = 0;
  for (double r : rate) total += r;
  return total / 1e9;
}

template <class T>
double register_peak_gflops(double seconds) {
  const detail::GemmKernel<T>& kern = detail::gemm_kernel<T>(active_isa());
  if (kern.fma_chains == nullptr) return 0.0;
  constexpr int64_t kIters = int64_t{1} << 14;
  const double flops_per_call = 2.0 * double(detail::kFmaChains * kern.lanes * kIters);
  const int64_t nthr = get_num_threads();
  std::vector<double> rate(static_cast<std::size_t>(nthr), 0.0);
  detail::parallel(nthr, [&](int64_t tid, int64_t) {
    // acc -> acc * a + b settles at b / (1 - a): no overflow, no subnormals.
    T io[2] = {T(0.999), T(1e-3)};
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int64_t calls = 0;
    double elapsed = 0;
    do {
      io[0] = T(0.999);
      kern.fma_chains(kIters, io);
      ++calls;
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < seconds);
    rate[static_cast<std::size_t>(tid)] = flops_per_call * double(calls) / elapsed;
  });
  double total = 0;
  for (double r : rate) total += r;
  return total / 1e9;
}

template double register_peak_gflops<float>(double);
template double register_peak_gflops<double>(double);
template double kernel_peak_gflops<float>(double);
template double kernel_peak_gflops<double>(double);

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace convcore
