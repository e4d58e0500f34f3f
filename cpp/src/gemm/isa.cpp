// Run-time choice of the GEMM path and the kernel table (XNNPACK gemm-config style): the CPU is
// asked once, and the environment variable CONVCORE_ISA=avx512|avx2|generic can lower the choice.
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "convcore/gemm.hpp"
#include "depthwise/depthwise_kernels.hpp"
#include "gemm/ukernel.hpp"

namespace convcore {
namespace detail {

namespace {

template <class T, Isa I, Tile S = Tile::wide>
constexpr GemmKernel<T> make_kernel(Ukernel<T> ukernel, UkernelDirectB<T> direct_b,
                                    UkernelDirectA<T> direct_a,
                                    const DepthwiseKernels<T>* depthwise, ActivateSpan<T> activate,
                                    FmaChains<T> fma_chains) {
  using B = GemmBlocking<T, I, S>;
  static_assert(B::MR <= kMaxMR && B::NR <= kMaxNR, "tile larger than the driver's edge buffer");
  static_assert(B::MC % B::MR == 0 && B::NC % B::NR == 0, "MC, NC must be multiples of MR, NR");
  static_assert(B::KC > 0, "KC must be positive");
  return GemmKernel<T>{I,       B::MR,    B::NR,    B::MC,    B::KC,    B::NC,
                       B::VB / int64_t(sizeof(T)), ukernel, direct_b, direct_a, depthwise,
                       activate, fma_chains};
}

template <class T, Isa I>
constexpr GemmKernel<T> make_ref_kernel(const DepthwiseKernels<T>* depthwise) {
  using B = GemmBlocking<T, I>;
  return make_kernel<T, I>(&ukernel_ref<T, int(B::MR), int(B::NR)>,
                           &ukernel_ref_direct_b<T, int(B::MR), int(B::NR)>,
                           &ukernel_ref_direct_a<T, int(B::MR), int(B::NR)>, depthwise,
                           &activate_span_ref, nullptr);
}

#ifdef CONVCORE_X86_SIMD
constexpr Ukernel<float> kAvx2F32 = &ukernel_6x16__avx2_fma;
constexpr Ukernel<double> kAvx2F64 = &ukernel_6x8__avx2_fma;
constexpr Ukernel<float> kAvx512F32 = &ukernel_12x32__avx512f;
constexpr Ukernel<double> kAvx512F64 = &ukernel_12x16__avx512f;
constexpr UkernelDirectB<float> kAvx2F32DirectB = &ukernel_6x16_direct_b__avx2_fma;
constexpr UkernelDirectB<double> kAvx2F64DirectB = &ukernel_6x8_direct_b__avx2_fma;
constexpr UkernelDirectB<float> kAvx512F32DirectB = &ukernel_12x32_direct_b__avx512f;
constexpr UkernelDirectB<double> kAvx512F64DirectB = &ukernel_12x16_direct_b__avx512f;
constexpr UkernelDirectA<float> kAvx2F32DirectA = &ukernel_6x16_direct_a__avx2_fma;
constexpr UkernelDirectA<double> kAvx2F64DirectA = &ukernel_6x8_direct_a__avx2_fma;
constexpr UkernelDirectA<float> kAvx512F32DirectA = &ukernel_12x32_direct_a__avx512f;
constexpr UkernelDirectA<double> kAvx512F64DirectA = &ukernel_12x16_direct_a__avx512f;
constexpr Ukernel<float> kAvx2NarrowF32 = &ukernel_12x8__avx2_fma;
constexpr Ukernel<double> kAvx2NarrowF64 = &ukernel_12x4__avx2_fma;
constexpr Ukernel<float> kAvx512NarrowF32 = &ukernel_24x16__avx512f;
constexpr Ukernel<double> kAvx512NarrowF64 = &ukernel_24x8__avx512f;
constexpr UkernelDirectB<float> kAvx2NarrowF32DirectB = &ukernel_12x8_direct_b__avx2_fma;
constexpr UkernelDirectB<double> kAvx2NarrowF64DirectB = &ukernel_12x4_direct_b__avx2_fma;
constexpr UkernelDirectB<float> kAvx512NarrowF32DirectB = &ukernel_24x16_direct_b__avx512f;
constexpr UkernelDirectB<double> kAvx512NarrowF64DirectB = &ukernel_24x8_direct_b__avx512f;
constexpr UkernelDirectA<float> kAvx2NarrowF32DirectA = &ukernel_12x8_direct_a__avx2_fma;
constexpr UkernelDirectA<double> kAvx2NarrowF64DirectA = &ukernel_12x4_direct_a__avx2_fma;
constexpr UkernelDirectA<float> kAvx512NarrowF32DirectA = &ukernel_24x16_direct_a__avx512f;
constexpr UkernelDirectA<double> kAvx512NarrowF64DirectA = &ukernel_24x8_direct_a__avx512f;
// The depthwise loops have no AVX-512 copy: the AVX-512 rows use the AVX2 + FMA ones.
constexpr const DepthwiseKernels<float>* kAvx2DepthwiseF32 = &kDepthwiseAvx2F32;
constexpr const DepthwiseKernels<double>* kAvx2DepthwiseF64 = &kDepthwiseAvx2F64;
constexpr ActivateSpan<float> kAvx2ActivateF32 = &activate_span__avx2_fma;
constexpr ActivateSpan<double> kAvx2ActivateF64 = &activate_span__avx2_fma;
constexpr ActivateSpan<float> kAvx512ActivateF32 = &activate_span__avx512f;
constexpr ActivateSpan<double> kAvx512ActivateF64 = &activate_span__avx512f;
constexpr FmaChains<float> kAvx2FmaF32 = &fma_chains__avx2_fma;
constexpr FmaChains<double> kAvx2FmaF64 = &fma_chains__avx2_fma;
constexpr FmaChains<float> kAvx512FmaF32 = &fma_chains__avx512f;
constexpr FmaChains<double> kAvx512FmaF64 = &fma_chains__avx512f;
#else
constexpr Ukernel<float> kAvx2F32 = nullptr;
constexpr Ukernel<double> kAvx2F64 = nullptr;
constexpr Ukernel<float> kAvx512F32 = nullptr;
constexpr Ukernel<double> kAvx512F64 = nullptr;
constexpr UkernelDirectB<float> kAvx2F32DirectB = nullptr;
constexpr UkernelDirectB<double> kAvx2F64DirectB = nullptr;
constexpr UkernelDirectB<float> kAvx512F32DirectB = nullptr;
constexpr UkernelDirectB<double> kAvx512F64DirectB = nullptr;
constexpr UkernelDirectA<float> kAvx2F32DirectA = nullptr;
constexpr UkernelDirectA<double> kAvx2F64DirectA = nullptr;
constexpr UkernelDirectA<float> kAvx512F32DirectA = nullptr;
constexpr UkernelDirectA<double> kAvx512F64DirectA = nullptr;
constexpr Ukernel<float> kAvx2NarrowF32 = nullptr;
constexpr Ukernel<double> kAvx2NarrowF64 = nullptr;
constexpr Ukernel<float> kAvx512NarrowF32 = nullptr;
constexpr Ukernel<double> kAvx512NarrowF64 = nullptr;
constexpr UkernelDirectB<float> kAvx2NarrowF32DirectB = nullptr;
constexpr UkernelDirectB<double> kAvx2NarrowF64DirectB = nullptr;
constexpr UkernelDirectB<float> kAvx512NarrowF32DirectB = nullptr;
constexpr UkernelDirectB<double> kAvx512NarrowF64DirectB = nullptr;
constexpr UkernelDirectA<float> kAvx2NarrowF32DirectA = nullptr;
constexpr UkernelDirectA<double> kAvx2NarrowF64DirectA = nullptr;
constexpr UkernelDirectA<float> kAvx512NarrowF32DirectA = nullptr;
constexpr UkernelDirectA<double> kAvx512NarrowF64DirectA = nullptr;
constexpr const DepthwiseKernels<float>* kAvx2DepthwiseF32 = nullptr;
constexpr const DepthwiseKernels<double>* kAvx2DepthwiseF64 = nullptr;
constexpr ActivateSpan<float> kAvx2ActivateF32 = nullptr;
constexpr ActivateSpan<double> kAvx2ActivateF64 = nullptr;
constexpr ActivateSpan<float> kAvx512ActivateF32 = nullptr;
constexpr ActivateSpan<double> kAvx512ActivateF64 = nullptr;
constexpr FmaChains<float> kAvx2FmaF32 = nullptr;
constexpr FmaChains<double> kAvx2FmaF64 = nullptr;
constexpr FmaChains<float> kAvx512FmaF32 = nullptr;
constexpr FmaChains<double> kAvx512FmaF64 = nullptr;
#endif

// Grouped by Isa, each path's wide row first (kRowsOf gives where a path's rows start).
constexpr GemmKernel<float> kKernelsF32[] = {
    make_ref_kernel<float, Isa::generic>(&kDepthwiseGenericF32),
    make_kernel<float, Isa::avx2>(kAvx2F32, kAvx2F32DirectB, kAvx2F32DirectA, kAvx2DepthwiseF32,
                                  kAvx2ActivateF32, kAvx2FmaF32),
    make_kernel<float, Isa::avx2, Tile::narrow>(kAvx2NarrowF32, kAvx2NarrowF32DirectB,
                                                kAvx2NarrowF32DirectA, kAvx2DepthwiseF32,
                                                kAvx2ActivateF32, kAvx2FmaF32),
    make_kernel<float, Isa::avx512>(kAvx512F32, kAvx512F32DirectB, kAvx512F32DirectA,
                                    kAvx2DepthwiseF32, kAvx512ActivateF32, kAvx512FmaF32),
    make_kernel<float, Isa::avx512, Tile::narrow>(kAvx512NarrowF32, kAvx512NarrowF32DirectB,
                                                  kAvx512NarrowF32DirectA, kAvx2DepthwiseF32,
                                                  kAvx512ActivateF32, kAvx512FmaF32),
};
constexpr GemmKernel<double> kKernelsF64[] = {
    make_ref_kernel<double, Isa::generic>(&kDepthwiseGenericF64),
    make_kernel<double, Isa::avx2>(kAvx2F64, kAvx2F64DirectB, kAvx2F64DirectA, kAvx2DepthwiseF64,
                                   kAvx2ActivateF64, kAvx2FmaF64),
    make_kernel<double, Isa::avx2, Tile::narrow>(kAvx2NarrowF64, kAvx2NarrowF64DirectB,
                                                 kAvx2NarrowF64DirectA, kAvx2DepthwiseF64,
                                                 kAvx2ActivateF64, kAvx2FmaF64),
    make_kernel<double, Isa::avx512>(kAvx512F64, kAvx512F64DirectB, kAvx512F64DirectA,
                                     kAvx2DepthwiseF64, kAvx512ActivateF64, kAvx512FmaF64),
    make_kernel<double, Isa::avx512, Tile::narrow>(kAvx512NarrowF64, kAvx512NarrowF64DirectB,
                                                   kAvx512NarrowF64DirectA, kAvx2DepthwiseF64,
                                                   kAvx512ActivateF64, kAvx512FmaF64),
};
// Where the rows of each path start in the tables above, indexed by Isa (and one past the end).
constexpr int kRowsOf[] = {0, 1, 3, 5};
static_assert(sizeof(kKernelsF32) / sizeof(kKernelsF32[0]) == kRowsOf[3], "rows of the table");

template <class T>
KernelRows<T> rows_of(const GemmKernel<T>* table, Isa isa) {
  const int i = static_cast<int>(isa);
  return {table + kRowsOf[i], kRowsOf[i + 1] - kRowsOf[i]};
}

bool cpu_has(Isa isa) {
#ifdef CONVCORE_X86_SIMD
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  if (isa_supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

// CONVCORE_ISA, read once, with why it was not followed (empty when it was).
struct EnvChoice {
  Isa isa;
  std::string problem;
};

const EnvChoice& env_choice() {
  static const EnvChoice choice = [] {
    EnvChoice c{Isa::generic, {}};
    c.isa = choose_isa(std::getenv("CONVCORE_ISA"), &c.problem);
    return c;
  }();
  return choice;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(env_choice().isa)};
  return slot;
}

std::string supported_names() {
  std::string out;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) continue;
    out += (out.empty() ? "'" : ", '") + std::string(isa_name(isa)) + "'";
  }
  return out;
}

}  // namespace

Isa choose_isa(const char* env, std::string* problem) {
  const Isa best = best_isa();
  if (env == nullptr) return best;
  Isa named;
  std::string why;
  if (!parse_isa(env, named)) {
    why = "CONVCORE_ISA='" + std::string(env) +
          "' is not a kernel path: expected 'generic', 'avx2' or 'avx512' (any case)";
  } else if (!isa_supported(named)) {
    why = "CONVCORE_ISA='" + std::string(env) + "': this CPU or build cannot run the " +
          isa_name(named) + " path; it runs " + supported_names();
  } else {
    // Supported paths are nested (avx512 implies avx2 here), so a supported path is never
    // better than the best one.
    return named;
  }
  if (problem != nullptr) *problem = why + "; using '" + isa_name(best) + "'";
  return best;
}

template <>
const GemmKernel<float>& gemm_kernel<float>(Isa isa) {
  return *rows_of(kKernelsF32, isa).rows;
}
template <>
const GemmKernel<double>& gemm_kernel<double>(Isa isa) {
  return *rows_of(kKernelsF64, isa).rows;
}
template <>
KernelRows<float> kernel_rows<float>(Isa isa) {
  return rows_of(kKernelsF32, isa);
}
template <>
KernelRows<double> kernel_rows<double>(Isa isa) {
  return rows_of(kKernelsF64, isa);
}

}  // namespace detail

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa& isa) {
  for (Isa candidate : {Isa::generic, Isa::avx2, Isa::avx512}) {
    const char* want = isa_name(candidate);
    if (name.size() != std::strlen(want)) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size(); ++i)
      same = same && std::tolower(static_cast<unsigned char>(name[i])) == want[i];
    if (same) {
      isa = candidate;
      return true;
    }
  }
  return false;
}

const std::string& isa_env_problem() { return detail::env_choice().problem; }

bool isa_supported(Isa isa) {
  static const bool supported[] = {detail::cpu_has(Isa::generic), detail::cpu_has(Isa::avx2),
                                   detail::cpu_has(Isa::avx512)};
  const int i = static_cast<int>(isa);
  return i >= 0 && i < 3 && supported[i];
}

Isa active_isa() { return static_cast<Isa>(detail::active_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("set_isa: the ") + isa_name(isa) +
                                " path is not supported by this CPU or build");
  }
  detail::active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace convcore
