#pragma once
// GEMM micro-kernels: the contract, the per-ISA block sizes and the kernel table.
//
// Declarations and constants only. This header is included by the files built with ISA flags
// (ukernel_avx2.cpp, ukernel_avx512.cpp), so it must not define any inline function: a function
// emitted there with AVX-512 instructions could be the copy the linker keeps for generic code.
//
// Micro-kernel contract (BLIS):
//
//   C[MR x NR] = alpha * Apanel[MR x kc] * Bpanel[kc x NR] + beta * C[MR x NR]
//
//     a: packed A micro-panel, a[p*MR + i]  (column p of the panel is MR consecutive values)
//     b: packed B micro-panel, b[p*NR + j]  (row p of the panel is NR consecutive values)
//     c: row-major tile, c[i*ldc + j], all MR x NR elements are written
//
//   - kc >= 0; the k loop is summed in order p = 0, 1, ..., kc-1 for every element.
//   - beta == 0: C is written and never read (it may hold NaN).
//   - There are no m/n edge cases inside a kernel: the driver sends edge tiles to a local
//     MR x NR buffer (beta = 0, ldc = NR) and copies the valid part.
//
// The direct-B kernel has the same contract with B read in place instead of packed: row p of
// the B panel is the NR consecutive values at b + boff[p] (any alignment). A stride-1
// convolution's col matrix is such a B: its rows are shifted windows of the padded image.
// The direct-A kernel reads A in place with a packed B: A[i][p] = arow[i][koff[p]] (MR row
// pointers, all readable; rows past the edge may repeat a valid one). col read pixel by pixel
// along its rows is such an A, for any stride. The rows-A kernel is the direct-A kernel for rows
// consecutive in memory, A[i][p] = a[i + koff[p]] (all MR rows readable): col^T of a stride-1
// convolution over rows as wide as the padded image.
#include <cstdint>

#include "convcore/activation.hpp"
#include "convcore/gemm.hpp"

namespace convcore::detail {

template <class T>
using Ukernel = void (*)(int64_t kc, T alpha, const T* a, const T* b, T beta, T* c, int64_t ldc);
template <class T>
using UkernelDirectB = void (*)(int64_t kc, T alpha, const T* a, const T* b, const int64_t* boff,
                                T beta, T* c, int64_t ldc);
template <class T>
using UkernelDirectA = void (*)(int64_t kc, T alpha, const T* const* arow, const int64_t* koff,
                                const T* b, T beta, T* c, int64_t ldc);

template <class T>
using UkernelRowsA = void (*)(int64_t kc, T alpha, const T* a, const int64_t* koff, const T* b,
                              T beta, T* c, int64_t ldc);

// Portable kernel, plain C++ left to the compiler's vectoriser (ukernel_ref.cpp).
template <class T, int MR, int NR>
void ukernel_ref(int64_t kc, T alpha, const T* a, const T* b, T beta, T* c, int64_t ldc);
template <class T, int MR, int NR>
void ukernel_ref_direct_b(int64_t kc, T alpha, const T* a, const T* b, const int64_t* boff,
                          T beta, T* c, int64_t ldc);
template <class T, int MR, int NR>
void ukernel_ref_direct_a(int64_t kc, T alpha, const T* const* arow, const int64_t* koff,
                          const T* b, T beta, T* c, int64_t ldc);
template <class T, int MR, int NR>
void ukernel_ref_rows_a(int64_t kc, T alpha, const T* a, const int64_t* koff, const T* b, T beta,
                        T* c, int64_t ldc);

// y[i] = act(y[i]) over a contiguous span, in place: the activation pass of the forward
// epilogues for sigmoid and tanh (identity and relu stay inline there). The portable row uses
// libm's expf / tanhf (activate_span_ref); the SIMD rows vectorise (gemm/activation_simd.hpp).
template <class T>
using ActivateSpan = void (*)(Activation act, T* y, int64_t n);
void activate_span_ref(Activation act, float* y, int64_t n);
void activate_span_ref(Activation act, double* y, int64_t n);
void activate_span__avx2_fma(Activation act, float* y, int64_t n);
void activate_span__avx2_fma(Activation act, double* y, int64_t n);
void activate_span__avx512f(Activation act, float* y, int64_t n);
void activate_span__avx512f(Activation act, double* y, int64_t n);

// d[c*ld + r] = s[r*ls + c] + add[c] for r, c < lanes, clamped at 0 when relu is set (NaN and -0
// give +0): a square block transposed through the path's vector registers, lanes on a side. The
// transposed forward's epilogue (ops/conv2d_forward.cpp) writes the product back through it.
// nullptr on the portable row.
template <class T>
using TransposeBlock = void (*)(const T* s, int64_t ls, const T* add, bool relu, T* d, int64_t ld);
void transpose_block__avx2_fma(const float* s, int64_t ls, const float* add, bool relu, float* d,
                               int64_t ld);
void transpose_block__avx2_fma(const double* s, int64_t ls, const double* add, bool relu,
                               double* d, int64_t ld);
void transpose_block__avx512f(const float* s, int64_t ls, const float* add, bool relu, float* d,
                              int64_t ld);
void transpose_block__avx512f(const double* s, int64_t ls, const double* add, bool relu,
                              double* d, int64_t ld);

// The register-only FMA probe: `iters` rounds of kFmaChains independent chains of vector FMAs
// (acc = acc * out[0] + out[1], no memory operand), the chains' sum written to out[0]. Its rate is
// the core's FMA ceiling, which the micro-kernels' own probe (kernel_peak_gflops) is measured
// against. nullptr on the portable row.
constexpr int kFmaChains = 12;
template <class T>
using FmaChains = void (*)(int64_t iters, T* out);
void fma_chains__avx2_fma(int64_t iters, float* out);
void fma_chains__avx2_fma(int64_t iters, double* out);
void fma_chains__avx512f(int64_t iters, float* out);
void fma_chains__avx512f(int64_t iters, double* out);

// The four micro-kernels of one tile of an ISA file (packed; B in place; A in place through row
// pointers; A rows consecutive), e.g. ukernel_12x32__avx512f, ukernel_12x32_direct_b__avx512f,
// ukernel_12x32_direct_a__avx512f, ukernel_12x32_rows_a__avx512f. Declared here, defined by
// CONVCORE_DEFINE_TILE (gemm/ukernel_simd.hpp) in x86 SIMD builds only; the kernel table
// (isa.cpp) takes their addresses.
#define CONVCORE_DECLARE_TILE(T, TILE, ISA)                                                       \
  void ukernel_##TILE##__##ISA(int64_t kc, T alpha, const T* a, const T* b, T beta, T* c,         \
                               int64_t ldc);                                                      \
  void ukernel_##TILE##_direct_b__##ISA(int64_t kc, T alpha, const T* a, const T* b,              \
                                        const int64_t* boff, T beta, T* c, int64_t ldc);          \
  void ukernel_##TILE##_direct_a__##ISA(int64_t kc, T alpha, const T* const* arow,                \
                                        const int64_t* koff, const T* b, T beta, T* c,            \
                                        int64_t ldc);                                             \
  void ukernel_##TILE##_rows_a__##ISA(int64_t kc, T alpha, const T* a, const int64_t* koff,       \
                                      const T* b, T beta, T* c, int64_t ldc);

// AVX2 + FMA (ukernel_avx2.cpp): 12 ymm accumulators; wide 6 rows of two vectors, narrow 12 rows
// of one.
CONVCORE_DECLARE_TILE(float, 6x16, avx2_fma)
CONVCORE_DECLARE_TILE(double, 6x8, avx2_fma)
CONVCORE_DECLARE_TILE(float, 12x8, avx2_fma)
CONVCORE_DECLARE_TILE(double, 12x4, avx2_fma)
// AVX-512F (ukernel_avx512.cpp): 24 zmm accumulators, wide 12 rows of two vectors, narrow 24 rows
// of one, broad 6 rows of four; and the flat tiles, 6 rows of two vectors (12 accumulators), for
// products only a few rows tall (a layer's few output channels in the Y = W col orientation).
CONVCORE_DECLARE_TILE(float, 12x32, avx512f)
CONVCORE_DECLARE_TILE(double, 12x16, avx512f)
CONVCORE_DECLARE_TILE(float, 24x16, avx512f)
CONVCORE_DECLARE_TILE(double, 24x8, avx512f)
CONVCORE_DECLARE_TILE(float, 6x32, avx512f)
CONVCORE_DECLARE_TILE(double, 6x16, avx512f)
CONVCORE_DECLARE_TILE(float, 6x64, avx512f)
CONVCORE_DECLARE_TILE(double, 6x32, avx512f)
#undef CONVCORE_DECLARE_TILE

// Block sizes (BLIS names). MR x NR is the micro-tile; an MC x KC block of packed A stays in L2,
// a KC x NR micro-panel of packed B in L1, a KC x NC block of packed B in L3.
// MC is a multiple of MR and NC a multiple of NR.
//
// Tuned on AMD Zen 3 (32 KiB L1d, 512 KiB L2 per core): KC = 256 keeps a float B micro-panel at
// 16 KiB (half of L1d); MC keeps the A block near a third of L2.
//
// Each SIMD instruction set has two rows: the wide tile (two vectors per row of C) and the narrow
// one (one vector per row, twice the rows), which wastes nothing where n is a single vector wide;
// AVX-512 has a third, flat (the wide tile's two vectors, half its rows), for m of a few rows, and
// a fourth, broad (four vectors, 6 rows: the wide tile's accumulators), whose k step reads fewer
// operands per FMA (4 vectors and 6 broadcasts for 24 FMAs, against 2 and 12), and needs 6 row
// pointers where A is read in place, not 12.
// The plan's cost models weigh them all; gemm() uses the wide one.
enum class Tile { wide, narrow, flat, broad };

template <class T, Isa I, Tile S = Tile::wide>
struct GemmBlocking;

// One row of block sizes: VB the vector bytes, then MR, NR, MC, KC and NC.
template <int64_t VB_, int64_t MR_, int64_t NR_, int64_t MC_, int64_t KC_, int64_t NC_>
struct Blocking {
  static constexpr int64_t VB = VB_;
  static constexpr int64_t MR = MR_, NR = NR_, MC = MC_, KC = KC_, NC = NC_;
};

// Baseline x86-64 has 16 xmm registers: 6x8 float / 6x4 double need 12 accumulators.
template <>
struct GemmBlocking<float, Isa::generic> : Blocking<16, 6, 8, 120, 256, 4080> {};
template <>
struct GemmBlocking<double, Isa::generic> : Blocking<16, 6, 4, 96, 256, 4080> {};
// BLIS haswell/zen: 6x16 float, 6x8 double (12 of the 16 ymm registers hold C).
template <>
struct GemmBlocking<float, Isa::avx2> : Blocking<32, 6, 16, 144, 256, 4080> {};
template <>
struct GemmBlocking<double, Isa::avx2> : Blocking<32, 6, 8, 72, 256, 4080> {};
// BLIS skx-like: two zmm vectors per row and 12 rows, so 24 of the 32 zmm registers hold C,
// leaving room for two B vectors and an A broadcast. A 12x32 float tile does 24 FMAs per
// 2 loads + 12 broadcasts, enough to keep two FMA ports busy from L1.
template <>
struct GemmBlocking<float, Isa::avx512> : Blocking<64, 12, 32, 144, 256, 4096> {};
template <>
struct GemmBlocking<double, Isa::avx512> : Blocking<64, 12, 16, 96, 256, 4096> {};
// The narrow tiles: the same accumulator count (12 ymm, 24 zmm) as one vector by 2*MR rows.
template <>
struct GemmBlocking<float, Isa::avx2, Tile::narrow> : Blocking<32, 12, 8, 144, 256, 4080> {};
template <>
struct GemmBlocking<double, Isa::avx2, Tile::narrow> : Blocking<32, 12, 4, 72, 256, 4080> {};
template <>
struct GemmBlocking<float, Isa::avx512, Tile::narrow> : Blocking<64, 24, 16, 144, 256, 4096> {};
template <>
struct GemmBlocking<double, Isa::avx512, Tile::narrow> : Blocking<64, 24, 8, 96, 256, 4096> {};
// The flat tiles: two vectors by 6 rows (12 zmm accumulators), for products a few rows tall.
template <>
struct GemmBlocking<float, Isa::avx512, Tile::flat> : Blocking<64, 6, 32, 144, 256, 4096> {};
template <>
struct GemmBlocking<double, Isa::avx512, Tile::flat> : Blocking<64, 6, 16, 96, 256, 4096> {};
// The broad tiles: the wide tiles' 24 accumulators as four vectors by 6 rows. Their B
// micro-panel at KC 256 (64 KiB of floats) outgrows L1, yet KC 128 measured slower on every op.
template <>
struct GemmBlocking<float, Isa::avx512, Tile::broad> : Blocking<64, 6, 64, 144, 256, 4096> {};
template <>
struct GemmBlocking<double, Isa::avx512, Tile::broad> : Blocking<64, 6, 32, 96, 256, 4096> {};

// Largest tile over all paths: the size of the driver's edge buffer.
constexpr int64_t kMaxMR = 24;
constexpr int64_t kMaxNR = 64;
// Most elements in one vector register of any path (a zmm of floats).
constexpr int64_t kMaxLanes = 16;

template <class T>
struct DirectLoops;  // depthwise/direct_loops.hpp

// One row of the kernel table (isa.cpp): everything an instruction set brings, the GEMM
// micro-kernels with their blocking and the direct loops (depthwise/direct_loops.hpp). The
// plan's cost models read mr, nr, kc and lanes from here.
template <class T>
struct GemmKernel {
  Isa isa;
  int64_t mr, nr, mc, kc, nc;
  int64_t lanes;  // elements of T in one vector register of the micro-kernels
  Ukernel<T> ukernel;  // nullptr when the path is not built
  UkernelDirectB<T> ukernel_direct_b;
  UkernelDirectA<T> ukernel_direct_a;
  UkernelRowsA<T> ukernel_rows_a;
  const DirectLoops<T>* loops;
  ActivateSpan<T> activate;
  FmaChains<T> fma_chains;  // lanes * 2 * kFmaChains FLOP per iteration; nullptr: no probe
  TransposeBlock<T> transpose_block;  // lanes x lanes; nullptr: none
};

// The table row for a path (its wide tile); isa must be supported.
template <class T>
const GemmKernel<T>& gemm_kernel(Isa isa);

// Every row of a path, the wide tile first: rows[0 .. count); isa must be supported. (A plain
// pair rather than a range: this header defines no function, see above.)
template <class T>
struct KernelRows {
  const GemmKernel<T>* rows;
  int count;
};
template <class T>
KernelRows<T> kernel_rows(Isa isa);

// The path to use given the value of CONVCORE_ISA (nullptr when unset): the named path (any
// case) when it is known and supported, else the best supported one. When a set value is not
// followed, *problem (if given) receives why, the valid names and the path used instead.
Isa choose_isa(const char* env, std::string* problem = nullptr);

}  // namespace convcore::detail
