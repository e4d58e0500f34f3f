#pragma once
// The one matrix product of the library, used by the forward pass and both backward passes.
//
//   C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C        (row-major)
//   op(A) = A  (a[i*lda + p])  or  A^T  (a[p*lda + i]);  op(B) likewise with ldb.
//
// With beta == 0, C is written and never read (it may hold NaN).
// BLIS structure: a driver (cache blocking MC/KC/NC, OpenMP over the m and n loops), packing of
// A into MR-row panels and B into NR-column panels (transposition and edge zero-fill happen there),
// and an MR x NR micro-kernel per ISA chosen once at run time.
// The k dimension is never split across threads, so every element of C is summed in the same order
// whatever the thread count: results are bitwise reproducible.
// Called from inside a parallel region, the product runs on the calling thread only.
#include <cstdint>
#include <string>

namespace convcore {

enum class Isa { generic, avx2, avx512 };

const char* isa_name(Isa isa);
// The path named `name` ("generic", "avx2" or "avx512", in any case); false when unknown.
bool parse_isa(const std::string& name, Isa& isa);
// Whether this CPU (and this build) can run the path.
bool isa_supported(Isa isa);
// The path in use: the best supported one, or the one named by CONVCORE_ISA
// (generic|avx2|avx512, any case) when that is supported and not better than the best.
Isa active_isa();
// Why CONVCORE_ISA was not followed — an unknown name, or a path this CPU or build cannot run —
// with the valid names and the path used instead; empty when it is unset or followed. The
// Python module turns a non-empty message into a RuntimeWarning at import.
const std::string& isa_env_problem();
// Forces a path (tests and benchmarks). Throws std::invalid_argument when it is not supported.
void set_isa(Isa isa);

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// The FMA throughput of the active micro-kernel, in GFLOP/s, on get_num_threads() threads with
// its panels in L1 (about `seconds` of work): the peak this machine reaches in practice, what the
// benchmark quotes its percentages of.
template <class T>
double kernel_peak_gflops(double seconds);

// The FMA ceiling of the active instruction set, in GFLOP/s, on get_num_threads() threads:
// independent chains of register-only vector FMAs (no memory operands), about `seconds` of them.
// 0 where the active path has no probe (the portable one).
template <class T>
double register_peak_gflops(double seconds);

extern template double register_peak_gflops<float>(double);
extern template double register_peak_gflops<double>(double);
extern template double kernel_peak_gflops<float>(double);
extern template double kernel_peak_gflops<double>(double);
extern template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                 int64_t, const float*, int64_t, float, float*, int64_t);
extern template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                  int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace convcore
