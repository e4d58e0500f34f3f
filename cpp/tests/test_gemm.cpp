// gemm: every supported path (set_isa) and every kernel row of it (its wide and narrow tiles)
// against a direct triple loop, float and double.
//
//   - the XNNPACK-style edge matrix: m in {1, MR-1, MR, MR+1}, n in {1, NR-1, NR, 2NR+1},
//     k in {0, 1, KC-1, KC+1}, all four transpose combinations, beta in {0, 1, 0.5},
//     alpha in {1, -0.5};
//   - larger products crossing MC, KC and NC blocks, each run with 1, 2 and 3 threads and
//     required to be bitwise identical;
//   - prime leading dimensions, NaN in the padding of A and B and in C when beta == 0, and a
//     sentinel in C outside the m x n window that must survive;
//   - the driver with a caller-supplied pack_b (the implicit-GEMM contract), with a B read in
//     place (DirectB) or A read in place (DirectA, RowsA), and with an epilogue that must see every block of C once, when final;
//   - weights packed through a table of their places, block by block and rows across all panels;
//   - ISA selection and argument errors.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "convcore/gemm.hpp"
#include "convcore/parallel.hpp"
#include "gemm/gemm_driver.hpp"

using convcore::Isa;
template <class T>
using Row = convcore::detail::GemmKernel<T>;

namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  double alpha, beta;
};

std::string id(const Problem& p) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%c%c m%lld n%lld k%lld alpha%g beta%g", p.ta ? 'T' : 'N',
                p.tb ? 'T' : 'N', static_cast<long long>(p.m), static_cast<long long>(p.n),
                static_cast<long long>(p.k), p.alpha, p.beta);
  return buf;
}

bool is_prime(int64_t x) {
  if (x < 2) return false;
  for (int64_t d = 2; d * d <= x; ++d)
    if (x % d == 0) return false;
  return true;
}

// A prime leading dimension larger than needed.
int64_t prime_ld(int64_t cols) {
  int64_t ld = cols + 2;
  while (!is_prime(ld)) ++ld;
  return ld;
}

// A rows x ld matrix: the rows x cols window holds values in [-1, 1], the padding holds NaN.
template <class T>
std::vector<T> operand(int64_t rows, int64_t cols, int64_t ld, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(static_cast<size_t>((rows > 0 ? rows : 1) * ld),
                   std::numeric_limits<T>::quiet_NaN());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) v[i * ld + j] = T(dist(rng));
  return v;
}

template <class T>
struct Case {
  Problem p;
  int64_t lda, ldb, ldc;
  std::vector<T> a, b, c0;  // c0: C before the call (one extra row of sentinel below)
};

constexpr double kSentinel = 12345.0;

template <class T>
Case<T> make_case(const Problem& p, std::mt19937& rng) {
  Case<T> cs{p, 0, 0, 0, {}, {}, {}};
  const int64_t a_rows = p.ta ? p.k : p.m, a_cols = p.ta ? p.m : p.k;
  const int64_t b_rows = p.tb ? p.n : p.k, b_cols = p.tb ? p.k : p.n;
  cs.lda = prime_ld(a_cols);
  cs.ldb = prime_ld(b_cols);
  cs.ldc = prime_ld(p.n);
  cs.a = operand<T>(a_rows, a_cols, cs.lda, rng);
  cs.b = operand<T>(b_rows, b_cols, cs.ldb, rng);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  cs.c0.assign(static_cast<size_t>((p.m + 1) * cs.ldc), T(kSentinel));
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j)
      cs.c0[i * cs.ldc + j] = p.beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));
  return cs;
}

template <class T>
std::vector<T> run_gemm(const Case<T>& cs, const Row<T>* row = nullptr) {
  std::vector<T> c = cs.c0;
  const Problem& p = cs.p;
  if (row == nullptr || p.m == 0 || p.n == 0)  // the public entry (the active path's wide row)
    convcore::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, T(p.alpha), cs.a.data(), cs.lda, cs.b.data(),
                      cs.ldb, T(p.beta), c.data(), cs.ldc);
  else  // the driver on one row of the table, as a plan runs it
    convcore::detail::gemm_driver<T>(*row, p.m, p.n, p.k, T(p.alpha),
                                     convcore::detail::MatrixPackA<T>(p.ta, cs.a.data(), cs.lda),
                                     convcore::detail::MatrixPackB<T>(p.tb, cs.b.data(), cs.ldb),
                                     T(p.beta), c.data(), cs.ldc);
  return c;
}

// "avx512 24x16": the row's path and tile.
template <class T>
std::string row_name(const Row<T>& row) {
  return std::string(convcore::isa_name(row.isa)) + " " + std::to_string(row.mr) + "x" +
         std::to_string(row.nr);
}

// Compares c with a long double triple loop; returns the number of wrong elements.
// Tolerance: 16 eps sqrt(k+1) times the sum of the magnitudes of the terms.
template <class T>
int64_t count_wrong(const Case<T>& cs, const std::vector<T>& c, std::string& first) {
  const Problem& p = cs.p;
  const double eps = std::numeric_limits<T>::epsilon();
  const double rtol = 16 * eps * std::sqrt(double(p.k + 1));
  int64_t wrong = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      long double sum = 0, mag = 0;
      for (int64_t q = 0; q < p.k; ++q) {
        const long double av = p.ta ? cs.a[q * cs.lda + i] : cs.a[i * cs.lda + q];
        const long double bv = p.tb ? cs.b[j * cs.ldb + q] : cs.b[q * cs.ldb + j];
        sum += av * bv;
        mag += std::fabs(av * bv);
      }
      long double want = p.alpha * sum;
      mag = std::fabs(p.alpha) * mag;
      if (p.beta != 0) {
        const long double cb = (long double)p.beta * cs.c0[i * cs.ldc + j];
        want += cb;
        mag += std::fabs(cb);
      }
      const double got = c[i * cs.ldc + j];
      const double err = std::fabs(double(got - want));
      if (!(err <= rtol * double(mag) + std::numeric_limits<T>::min())) {
        if (wrong++ == 0) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "C[%lld][%lld] = %.9g, want %.9g",
                        static_cast<long long>(i), static_cast<long long>(j), got, double(want));
          first = buf;
        }
      }
    }
  }
  return wrong;
}

// Elements outside the m x n window (the ldc padding and the row below) must be untouched.
template <class T>
bool outside_untouched(const Case<T>& cs, const std::vector<T>& c) {
  for (int64_t i = 0; i <= cs.p.m; ++i)
    for (int64_t j = 0; j < cs.ldc; ++j) {
      if (i < cs.p.m && j < cs.p.n) continue;
      if (c[i * cs.ldc + j] != T(kSentinel)) return false;
    }
  return true;
}

template <class T>
void check_case(const Case<T>& cs, const std::vector<T>& c, const char* isa) {
  std::string first;
  const int64_t wrong = count_wrong(cs, c, first);
  CHECK_MSG(wrong == 0, isa << " " << sizeof(T) * 8 << "-bit " << id(cs.p) << ": " << wrong
                            << " wrong, first " << first);
  CHECK_MSG(outside_untouched(cs, c), isa << " " << id(cs.p) << ": C written outside m x n");
}

template <class T>
void test_edges(const Row<T>& kern, std::mt19937& rng) {
  const std::string name = row_name(kern);
  const int64_t mr = kern.mr, nr = kern.nr, kc = kern.kc;
  convcore::set_num_threads(1);
  for (int64_t m : {int64_t{1}, mr - 1, mr, mr + 1})
    for (int64_t n : {int64_t{1}, nr - 1, nr, 2 * nr + 1})
      for (int64_t k : {int64_t{0}, int64_t{1}, kc - 1, kc + 1})
        for (int t = 0; t < 4; ++t)
          for (double beta : {0.0, 1.0, 0.5})
            for (double alpha : {1.0, -0.5}) {
              const Case<T> cs = make_case<T>({t / 2 == 1, t % 2 == 1, m, n, k, alpha, beta}, rng);
              check_case(cs, run_gemm(cs, &kern), name.c_str());
            }
}

// Products crossing the MC, KC and NC blocks; 1, 2 and 3 threads give the same bits.
template <class T>
void test_blocks_and_threads(const Row<T>& kern, std::mt19937& rng) {
  const std::string name = row_name(kern);
  const int64_t mr = kern.mr, nr = kern.nr, mc = kern.mc, kc = kern.kc, nc = kern.nc;
  const std::vector<Problem> problems = {
      {false, false, 2 * mc + 3, 2 * nr + 1, kc + 1, -0.5, 0.5},
      {false, true, 2 * mc + 3, 2 * nr + 1, kc + 1, 1.0, 0.0},
      {true, false, 2 * mc + 3, 2 * nr + 1, kc + 1, 1.0, 1.0},
      {true, true, 2 * mc + 3, 2 * nr + 1, kc + 1, -0.5, 0.0},
      {false, false, mc + mr + 1, 3 * nr + 5, 2 * kc + 3, 1.0, 0.0},
      {true, true, mr + 1, nc + nr + 3, kc - 1, 1.0, 1.0},
      {false, true, 2 * mc + 3, nc + 2, 3, -0.5, 0.0},
      {true, false, 4 * mr, 8 * nr, 40, 1.0, 0.5},
  };
  for (const Problem& p : problems) {
    const Case<T> cs = make_case<T>(p, rng);
    convcore::set_num_threads(1);
    const std::vector<T> c1 = run_gemm(cs, &kern);
    check_case(cs, c1, name.c_str());
    for (int nthr : {2, 3}) {
      convcore::set_num_threads(nthr);
      const std::vector<T> cn = run_gemm(cs, &kern);
      CHECK_MSG(std::memcmp(c1.data(), cn.data(), c1.size() * sizeof(T)) == 0,
                name << " " << id(p) << ": " << nthr << " threads differ from 1 thread");
    }
    // Every tile sums k in the same order: the public gemm (the wide row) gives the same bits.
    CHECK_MSG(std::memcmp(c1.data(), run_gemm(cs).data(), c1.size() * sizeof(T)) == 0,
              name << " " << id(p) << ": differs from the wide row");
  }
  convcore::set_num_threads(1);
}

// Degenerate sizes and alpha == 0: C = beta * C (beta == 0 writes zeros), or C untouched.
template <class T>
void test_degenerate(std::mt19937& rng) {
  for (const Problem& p : {Problem{false, false, 0, 5, 7, 1.0, 0.0},
                           Problem{false, false, 5, 0, 7, 1.0, 0.0},
                           Problem{true, false, 9, 17, 0, 1.0, 0.0},
                           Problem{false, true, 9, 17, 0, 1.0, 0.5},
                           Problem{false, false, 9, 17, 5, 0.0, 0.5},
                           Problem{false, false, 9, 17, 5, 0.0, 0.0}}) {
    const Case<T> cs = make_case<T>(p, rng);
    check_case(cs, run_gemm(cs), "any");
  }
}

// gemm_driver with a pack_b that builds op(B)[p][j] = f(p, j) on the fly must match gemm on the
// materialised matrix bit for bit: the packing contract of gemm_driver.hpp.
template <class T>
void test_custom_pack_b(const Row<T>& kern) {
  const std::string isa = row_name(kern);
  const int64_t m = 2 * kern.mr + 1, n = 3 * kern.nr + 2, k = kern.kc + 7;
  const auto f = [](int64_t p, int64_t j) { return T(((p * 7 + j * 3) % 11) - 5) / T(4); };
  std::vector<T> a(m * k), b(k * n), c_ref(m * n), c(m * n);
  for (int64_t i = 0; i < m * k; ++i) a[i] = T((i * 5) % 13 - 6) / T(8);
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) b[p * n + j] = f(p, j);
  convcore::gemm<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c_ref.data(), n);
  bool contract_ok = true;
  const auto pack_b = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, T* dst) {
    if (reinterpret_cast<uintptr_t>(dst) % 64 != 0) contract_ok = false;
    for (int64_t j = 0; j < (nc + nr - 1) / nr * nr; ++j)
      for (int64_t p = 0; p < kc; ++p)
        dst[(j / nr) * kc * nr + p * nr + j % nr] = j < nc ? f(p0 + p, j0 + j) : T(0);
  };
  convcore::detail::gemm_driver<T>(kern, m, n, k, T(1), convcore::detail::MatrixPackA<T>(false, a.data(), k),
                                   pack_b, T(0), c.data(), n);
  CHECK_MSG(contract_ok, isa << ": packing buffer not 64-byte aligned");
  CHECK_MSG(std::memcmp(c.data(), c_ref.data(), c.size() * sizeof(T)) == 0,
            isa << ": custom pack_b differs from gemm");
}

// gemm_driver with B read in place, op(B)[p][j] = base[off[p] + j] with overlapping rows (as a
// stride-1 convolution's), must match gemm on the materialised matrix bit for bit, over blocks
// of m, n and k with edge tiles, on 1 and 3 threads. The epilogue must cover each element of C
// exactly once and only after it is final.
template <class T>
void test_direct_b(const Row<T>& kern) {
  const std::string isa = row_name(kern);
  using convcore::detail::DirectB;
  for (const int64_t threads : {1, 3}) {
    const int prev = convcore::get_num_threads();
    convcore::set_num_threads(int(threads));
    const int64_t m = kern.mc + kern.mr + 1, n = 5 * kern.nr + 3, k = 2 * kern.kc + 5;
    std::vector<int64_t> off(k);
    for (int64_t p = 0; p < k; ++p) off[p] = (p / 3) * (n + 2) + p % 3;  // rows share values
    std::vector<T> base(off[k - 1] + n + convcore::detail::kMaxNR);
    for (size_t i = 0; i < base.size(); ++i) base[i] = T(int64_t(i * 7) % 17 - 8) / T(8);
    std::vector<T> a(m * k), b(k * n), c_ref(m * n), c(m * n, T(NAN));
    for (int64_t i = 0; i < m * k; ++i) a[i] = T((i * 5) % 13 - 6) / T(8);
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) b[p * n + j] = base[off[p] + j];
    convcore::gemm<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c_ref.data(),
                      n);
    std::vector<int> seen(m * n, 0);
    bool final_when_seen = true;
    const auto epilogue = [&](int64_t i0, int64_t mc, int64_t j0, int64_t nc) {
      for (int64_t i = i0; i < i0 + mc; ++i)
        for (int64_t j = j0; j < j0 + nc; ++j) {
          ++seen[i * n + j];  // blocks of different threads never overlap
          if (std::memcmp(&c[i * n + j], &c_ref[i * n + j], sizeof(T)) != 0)
            final_when_seen = false;
        }
    };
    convcore::detail::gemm_driver<T>(kern, m, n, k, T(1),
                                     convcore::detail::MatrixPackA<T>(false, a.data(), k),
                                     DirectB<T>{base.data(), off.data()}, T(0), c.data(), n,
                                     epilogue);
    convcore::set_num_threads(prev);
    CHECK_MSG(std::memcmp(c.data(), c_ref.data(), c.size() * sizeof(T)) == 0,
              isa << ": B in place differs from gemm, threads " << threads);
    int64_t bad = 0;
    for (int v : seen) bad += v != 1;
    CHECK_MSG(bad == 0, isa << ": epilogue coverage wrong for " << bad
                                                << " elements, threads " << threads);
    CHECK_MSG(final_when_seen, isa << ": epilogue saw an unfinished block");
  }
}

// gemm_driver with A read in place, op(A)[i][p] = base[row_off[i] + k_off[p]] (a convolution's
// col read pixel by pixel, k_off jumping at row ends), must match gemm on the materialised
// matrix bit for bit, with edge rows and columns, on 1 and 3 threads.
template <class T>
void test_direct_a(const Row<T>& kern) {
  const std::string isa = row_name(kern);
  using convcore::detail::DirectA;
  for (const int64_t threads : {1, 3}) {
    const int prev = convcore::get_num_threads();
    convcore::set_num_threads(int(threads));
    const int64_t m = kern.mc + kern.mr + 1, n = 3 * kern.nr + 5, k = 2 * kern.kc + 5;
    std::vector<int64_t> row_off(m), k_off(k);
    for (int64_t i = 0; i < m; ++i) row_off[i] = (i / 9) * 400 + (i % 9 / 3) * 20 + i % 3;
    for (int64_t p = 0; p < k; ++p) k_off[p] = (p / 7) * 20 + (p % 7) * 2;  // stride 2, rows
    std::vector<T> base(row_off[m - 1] + k_off[k - 1] + 1);
    for (size_t i = 0; i < base.size(); ++i) base[i] = T(int64_t(i * 7) % 17 - 8) / T(8);
    std::vector<T> a(m * k), b(k * n), c_ref(m * n), c(m * n, T(NAN));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) a[i * k + p] = base[row_off[i] + k_off[p]];
    for (int64_t i = 0; i < k * n; ++i) b[i] = T((i * 5) % 13 - 6) / T(8);
    convcore::gemm<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c_ref.data(),
                      n);
    convcore::detail::gemm_driver<T>(kern, m, n, k, T(1),
                                     DirectA<T>{base.data(), row_off.data(), k_off.data()},
                                     convcore::detail::MatrixPackB<T>(false, b.data(), n), T(0),
                                     c.data(), n);
    convcore::set_num_threads(prev);
    CHECK_MSG(std::memcmp(c.data(), c_ref.data(), c.size() * sizeof(T)) == 0,
              isa << ": A in place differs from gemm, threads " << threads);
  }
}

// gemm_driver with A's rows consecutive in memory, op(A)[i][p] = base[i + k_off[p]] (a stride-1
// convolution's col^T over wide rows), must match gemm on the materialised matrix bit for bit,
// with edge rows (read past m, discarded) and columns, on 1 and 3 threads.
template <class T>
void test_rows_a(const Row<T>& kern) {
  using convcore::detail::RowsA;
  const std::string isa = row_name(kern);
  for (const int64_t threads : {1, 3}) {
    const int prev = convcore::get_num_threads();
    convcore::set_num_threads(int(threads));
    const int64_t m = kern.mc + kern.mr + 1, n = 3 * kern.nr + 5, k = 2 * kern.kc + 5;
    std::vector<int64_t> k_off(k);
    for (int64_t p = 0; p < k; ++p) k_off[p] = (p / 3) * 37 + (p % 3);  // taps of a 3-wide kernel
    // Readable up to m rounded up to MR rows past the last offset.
    std::vector<T> base(k_off[k - 1] + (m + kern.mr - 1) / kern.mr * kern.mr);
    for (size_t i = 0; i < base.size(); ++i) base[i] = T(int64_t(i * 7) % 17 - 8) / T(8);
    std::vector<T> a(m * k), b(k * n), c_ref(m * n), c(m * n, T(NAN));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) a[i * k + p] = base[i + k_off[p]];
    for (int64_t i = 0; i < k * n; ++i) b[i] = T((i * 5) % 13 - 6) / T(8);
    convcore::gemm<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c_ref.data(),
                      n);
    convcore::detail::gemm_driver<T>(kern, m, n, k, T(1), RowsA<T>{base.data(), k_off.data()},
                                     convcore::detail::MatrixPackB<T>(false, b.data(), n), T(0),
                                     c.data(), n);
    convcore::set_num_threads(prev);
    CHECK_MSG(std::memcmp(c.data(), c_ref.data(), c.size() * sizeof(T)) == 0,
              isa << ": A rows in place differ from gemm, threads " << threads);
  }
}

void test_isa_selection() {
  CHECK(isa_supported(Isa::generic));
  CHECK(isa_supported(convcore::active_isa()));
  CHECK(std::string(convcore::isa_name(Isa::avx2)) == "avx2");
  const Isa best = isa_supported(Isa::avx512) ? Isa::avx512
                   : isa_supported(Isa::avx2) ? Isa::avx2
                                              : Isa::generic;
  CHECK(convcore::detail::choose_isa(nullptr) == best);
  CHECK(convcore::detail::choose_isa("bogus") == best);
  CHECK(convcore::detail::choose_isa("generic") == Isa::generic);
  // Names in any case; an unknown name is reported with the valid ones and the path used.
  CHECK(convcore::detail::choose_isa("GENERIC") == Isa::generic);
  CHECK(convcore::detail::choose_isa("Generic") == Isa::generic);
  {
    std::string problem;
    CHECK(convcore::detail::choose_isa("generic", &problem) == Isa::generic);
    CHECK_MSG(problem.empty(), problem);
    CHECK(convcore::detail::choose_isa("bogus", &problem) == best);
    CHECK_MSG(problem.find("'bogus'") != std::string::npos &&
                  problem.find("'generic', 'avx2' or 'avx512'") != std::string::npos &&
                  problem.find(std::string("using '") + isa_name(best) + "'") != std::string::npos,
              problem);
    problem.clear();
    CHECK(convcore::detail::choose_isa("avx", &problem) == best);
    CHECK_MSG(!problem.empty(), "a prefix of a name is not a name");
  }
  Isa parsed = Isa::generic;
  CHECK(convcore::parse_isa("AvX512", parsed) && parsed == Isa::avx512);
  CHECK(!convcore::parse_isa("avx2 ", parsed));
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const Isa want = isa_supported(isa) ? isa : best;
    CHECK_MSG(convcore::detail::choose_isa(convcore::isa_name(isa)) == want, isa_name(isa));
    std::string upper = convcore::isa_name(isa), problem;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK_MSG(convcore::detail::choose_isa(upper.c_str(), &problem) == want, upper);
    // An unsupported path is reported with the supported ones.
    CHECK_MSG(problem.empty() == isa_supported(isa), problem);
    if (!isa_supported(isa)) CHECK_MSG(problem.find("cannot run") != std::string::npos, problem);
    if (!isa_supported(isa)) {
      CHECK_THROWS(convcore::set_isa(isa), std::invalid_argument);
      try {
        convcore::set_isa(isa);
      } catch (const std::invalid_argument& e) {
        CHECK_MSG(std::string(e.what()).find(isa_name(isa)) != std::string::npos, e.what());
      }
    }
  }
}

void test_errors() {
  float x[64] = {};
  using convcore::gemm;
  CHECK_THROWS(gemm<float>(false, false, -1, 2, 2, 1.f, x, 2, x, 2, 0.f, x, 2), std::invalid_argument);
  CHECK_THROWS(gemm<float>(false, false, 2, 3, 4, 1.f, x, 3, x, 3, 0.f, x, 3), std::invalid_argument);
  CHECK_THROWS(gemm<float>(true, false, 5, 3, 2, 1.f, x, 4, x, 3, 0.f, x, 3), std::invalid_argument);
  CHECK_THROWS(gemm<float>(false, true, 2, 3, 4, 1.f, x, 4, x, 3, 0.f, x, 3), std::invalid_argument);
  CHECK_THROWS(gemm<float>(false, false, 2, 3, 4, 1.f, x, 4, x, 3, 0.f, x, 2), std::invalid_argument);
}

// A row's transposed block (the transposed forward's epilogue) against its definition,
// d[c*ld + r] = s[r*ls + c] + add[c], clamped at 0 with relu (NaN and -0 to +0): padded leading
// dimensions, and sentinels around the block in d that must survive.
template <class T>
void test_transpose_block(const Row<T>& row, std::mt19937& rng) {
  if (row.transpose_block == nullptr) {
    CHECK(row.isa == Isa::generic);  // every SIMD row has one
    return;
  }
  const int64_t B = row.lanes, ls = B + 3, ld = B + 5;
  std::uniform_real_distribution<T> dist(-1, 1);
  std::vector<T> s(static_cast<size_t>(B * ls)), add(static_cast<size_t>(B));
  for (T& v : s) v = dist(rng);
  for (T& v : add) v = dist(rng);
  s[1] = std::numeric_limits<T>::quiet_NaN();  // s[0][1]
  s[size_t(ls + 2)] = T(-0.0);                 // s[1][2], and add[2] = 0 below
  add[2] = T(0);
  const T sentinel = T(-777);
  for (bool relu : {false, true}) {
    std::vector<T> d(static_cast<size_t>(B * ld), sentinel);
    row.transpose_block(s.data(), ls, add.data(), relu, d.data(), ld);
    for (int64_t c = 0; c < B; ++c)
      for (int64_t r = 0; r < ld; ++r) {
        const T got = d[size_t(c * ld + r)];
        if (r >= B) {
          CHECK_MSG(got == sentinel, "transpose_block wrote past the block at " << c << "," << r);
          continue;
        }
        T want = s[size_t(r * ls + c)] + add[size_t(c)];
        if (relu) want = want > T(0) ? want : T(0);
        const bool same = std::isnan(want) ? std::isnan(got)
                                           : got == want && std::signbit(got) == std::signbit(want);
        CHECK_MSG(same, "transpose_block relu=" << relu << " at " << c << "," << r << ": " << got
                                                << " want " << want);
      }
  }
}

// Weights packed through a table of their places against the packed layout written out by direct
// loops: W^T a run of rows across all panels at a time (WeightsTInOrder, prepack_b_whole,
// panel_rows) through the NHWC forward's (r, s, c) table (runs of consecutive places three long)
// and the flipped forward's (runs backwards), K across two kc blocks and more, an edge panel,
// filters wider than their K;
// and W block by block (WeightsInOrder, prepack_b) through the same tables along its columns.
template <class T>
void test_weights_in_order(const Row<T>& kern) {
  using convcore::detail::WeightsInOrder;
  using convcore::detail::WeightsTInOrder;
  const std::string isa = row_name(kern);
  const int64_t c = kern.kc / 2 + 5, taps = 3, k = c * taps, n = 2 * kern.nr + 3, ld = k + 7;
  std::vector<T> w(static_cast<size_t>(n * ld));
  for (size_t i = 0; i < w.size(); ++i) w[i] = T(int64_t(i % 1009) - 500) / T(64);
  std::vector<int64_t> nhwc(static_cast<size_t>(k)), flipped(static_cast<size_t>(k));
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t ch = 0; ch < c; ++ch) nhwc[size_t(t * c + ch)] = ch * taps + t;
  for (int64_t q = 0; q < k; ++q) flipped[size_t(q)] = q / taps * taps + (taps - 1 - q % taps);
  const int64_t kc_step = convcore::detail::gemm_kc_step(k, kern.kc);
  CHECK(kc_step < k);
  // The packed layout of a kk x nn operand whose op(B)[p][j] is at(p, j).
  const auto layout = [&](int64_t kk, int64_t nn, auto at) {
    const int64_t step = convcore::detail::gemm_kc_step(kk, kern.kc);
    const int64_t rounded = (nn + kern.nr - 1) / kern.nr * kern.nr;
    std::vector<T> out(static_cast<size_t>(kk * rounded));
    for (int64_t pc = 0; pc < kk; pc += step) {
      const int64_t kcb = std::min(step, kk - pc);
      for (int64_t j = 0; j < rounded; ++j)
        for (int64_t p = 0; p < kcb; ++p)
          out[size_t(pc * rounded + j / kern.nr * kern.nr * kcb + p * kern.nr + j % kern.nr)] =
              j < nn ? at(pc + p, j) : T(0);
    }
    return out;
  };
  for (const std::vector<int64_t>* col : {&nhwc, &flipped}) {
    const std::vector<T> want_t =
        layout(k, n, [&](int64_t p, int64_t j) { return w[size_t(j * ld + (*col)[size_t(p)])]; });
    const std::vector<convcore::detail::PanelRow> rows = convcore::detail::panel_rows(kern, *col, n);
    std::vector<T> got_t(want_t.size());
    convcore::detail::prepack_b_whole(kern, k, n, WeightsTInOrder<T>{w.data(), ld, rows.data()},
                                      got_t.data());
    CHECK_MSG(std::memcmp(got_t.data(), want_t.data(), want_t.size() * sizeof(T)) == 0,
              isa << ": WeightsTInOrder rows across all panels differ from the layout");
    // W itself: n rows of w as k, the table's k places as columns.
    const std::vector<T> want =
        layout(n, k, [&](int64_t p, int64_t j) { return w[size_t(p * ld + (*col)[size_t(j)])]; });
    std::vector<T> got(want.size());
    convcore::detail::prepack_b(kern, n, k, WeightsInOrder<T>{w.data(), ld, col->data()}, got.data());
    CHECK_MSG(std::memcmp(got.data(), want.data(), want.size() * sizeof(T)) == 0,
              isa << ": WeightsInOrder block by block differs from the layout");
  }
}

}  // namespace

int main() {
  std::mt19937 rng(20240611);
  test_isa_selection();
  test_errors();
  const Isa initial = convcore::active_isa();
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (!convcore::isa_supported(isa)) {
      std::printf("gemm: skipping the %s path (not supported here)\n", convcore::isa_name(isa));
      continue;
    }
    convcore::set_isa(isa);
    std::printf("gemm: testing the %s path\n", convcore::isa_name(isa));
    test_degenerate<float>(rng);
    test_degenerate<double>(rng);
    const auto rows32 = convcore::detail::kernel_rows<float>(isa);
    const auto rows64 = convcore::detail::kernel_rows<double>(isa);
    CHECK(rows32.count >= 1 && rows64.count >= 1);
    for (int r = 0; r < rows32.count; ++r) {
      const Row<float>& row = rows32.rows[r];
      CHECK(row.isa == isa && row.ukernel != nullptr && row.ukernel_direct_a != nullptr &&
            row.ukernel_direct_b != nullptr && row.ukernel_rows_a != nullptr);
      std::printf("gemm:   float row %s\n", row_name(row).c_str());
      test_edges<float>(row, rng);
      test_blocks_and_threads<float>(row, rng);
      test_custom_pack_b<float>(row);
      test_direct_b<float>(row);
      test_direct_a<float>(row);
      test_rows_a<float>(row);
      test_transpose_block<float>(row, rng);
      test_weights_in_order<float>(row);
    }
    for (int r = 0; r < rows64.count; ++r) {
      const Row<double>& row = rows64.rows[r];
      CHECK(row.isa == isa && row.ukernel != nullptr && row.ukernel_direct_a != nullptr &&
            row.ukernel_direct_b != nullptr && row.ukernel_rows_a != nullptr);
      std::printf("gemm:   double row %s\n", row_name(row).c_str());
      test_edges<double>(row, rng);
      test_blocks_and_threads<double>(row, rng);
      test_custom_pack_b<double>(row);
      test_direct_b<double>(row);
      test_direct_a<double>(row);
      test_rows_a<double>(row);
      test_transpose_block<double>(row, rng);
      test_weights_in_order<double>(row);
    }
    // The peak probe runs the path's kernel and reports a finite, positive rate.
    const double f32 = convcore::kernel_peak_gflops<float>(0.01);
    const double f64 = convcore::kernel_peak_gflops<double>(0.01);
    CHECK_MSG(std::isfinite(f32) && f32 > 0 && std::isfinite(f64) && f64 > 0,
              "kernel_peak_gflops " << f32 << " " << f64);
    std::printf("gemm: %s kernel peak %.1f GFLOP/s float32, %.1f float64\n",
                convcore::isa_name(isa), f32, f64);
  }
  convcore::set_isa(initial);
  if (!convcore::has_openmp()) std::printf("gemm: built without OpenMP, thread checks run serially\n");
  return check::report("gemm");
}
