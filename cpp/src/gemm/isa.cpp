// Run-time choice of the GEMM path and the kernel table (XNNPACK gemm-config style): the CPU is
// asked once, and the environment variable CONVCORE_ISA=avx512|avx2|generic can lower the choice.
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "convcore/gemm.hpp"
#include "depthwise/direct_loops.hpp"
#include "gemm/ukernel.hpp"

namespace convcore {
namespace detail {

namespace {

// The micro-kernels of one tile.
template <class T>
struct TileKernels {
  Ukernel<T> packed;
  UkernelDirectB<T> direct_b;
  UkernelDirectA<T> direct_a;
  UkernelRowsA<T> rows_a;
};

// What a path brings besides its tiles.
template <class T>
struct PathExtras {
  const DirectLoops<T>* loops;
  ActivateSpan<T> activate;
  FmaChains<T> fma_chains;
  TransposeBlock<T> transpose_block;
};

template <class T, Isa I, Tile S = Tile::wide>
constexpr GemmKernel<T> make_kernel(const TileKernels<T>& k, const PathExtras<T>& x) {
  using B = GemmBlocking<T, I, S>;
  static_assert(B::MR <= kMaxMR && B::NR <= kMaxNR, "tile larger than the driver's edge buffer");
  static_assert(B::MC % B::MR == 0 && B::NC % B::NR == 0, "MC, NC must be multiples of MR, NR");
  static_assert(B::KC > 0, "KC must be positive");
  return GemmKernel<T>{I,         B::MR,      B::NR,      B::MC,       B::KC,
                       B::NC,     B::VB / int64_t(sizeof(T)), k.packed, k.direct_b,
                       k.direct_a, k.rows_a,  x.loops, x.activate, x.fma_chains,
                       x.transpose_block};
}

template <class T>
constexpr TileKernels<T> ref_kernels() {
  using B = GemmBlocking<T, Isa::generic>;
  constexpr int mr = int(B::MR), nr = int(B::NR);
  return {&ukernel_ref<T, mr, nr>, &ukernel_ref_direct_b<T, mr, nr>,
          &ukernel_ref_direct_a<T, mr, nr>, &ukernel_ref_rows_a<T, mr, nr>};
}

#ifdef CONVCORE_X86_SIMD
// The four kernels of a tile declared by CONVCORE_DECLARE_TILE (ukernel.hpp).
#define CONVCORE_TILE(TILE, ISA)                                                     \
  {&ukernel_##TILE##__##ISA, &ukernel_##TILE##_direct_b__##ISA,                      \
   &ukernel_##TILE##_direct_a__##ISA, &ukernel_##TILE##_rows_a__##ISA}
constexpr TileKernels<float> kAvx2F32 CONVCORE_TILE(6x16, avx2_fma);
constexpr TileKernels<float> kAvx2NarrowF32 CONVCORE_TILE(12x8, avx2_fma);
constexpr TileKernels<double> kAvx2F64 CONVCORE_TILE(6x8, avx2_fma);
constexpr TileKernels<double> kAvx2NarrowF64 CONVCORE_TILE(12x4, avx2_fma);
constexpr TileKernels<float> kAvx512F32 CONVCORE_TILE(12x32, avx512f);
constexpr TileKernels<float> kAvx512NarrowF32 CONVCORE_TILE(24x16, avx512f);
constexpr TileKernels<float> kAvx512FlatF32 CONVCORE_TILE(6x32, avx512f);
constexpr TileKernels<double> kAvx512F64 CONVCORE_TILE(12x16, avx512f);
constexpr TileKernels<double> kAvx512NarrowF64 CONVCORE_TILE(24x8, avx512f);
constexpr TileKernels<double> kAvx512FlatF64 CONVCORE_TILE(6x16, avx512f);
constexpr TileKernels<float> kAvx512BroadF32 CONVCORE_TILE(6x64, avx512f);
constexpr TileKernels<double> kAvx512BroadF64 CONVCORE_TILE(6x32, avx512f);
#undef CONVCORE_TILE
constexpr PathExtras<float> kAvx2ExtrasF32{&kDirectLoopsAvx2F32, &activate_span__avx2_fma,
                                           &fma_chains__avx2_fma,
    &transpose_block__avx2_fma};
constexpr PathExtras<double> kAvx2ExtrasF64{&kDirectLoopsAvx2F64, &activate_span__avx2_fma,
                                            &fma_chains__avx2_fma,
    &transpose_block__avx2_fma};
constexpr PathExtras<float> kAvx512ExtrasF32{&kDirectLoopsAvx512F32, &activate_span__avx512f,
                                             &fma_chains__avx512f,
    &transpose_block__avx512f};
constexpr PathExtras<double> kAvx512ExtrasF64{&kDirectLoopsAvx512F64, &activate_span__avx512f,
                                              &fma_chains__avx512f,
    &transpose_block__avx512f};
#else
// A build without the SIMD files: their rows exist (the table's shape does not change) but hold
// no kernels, and isa_supported() never enables them.
constexpr TileKernels<float> kAvx2F32{}, kAvx2NarrowF32{}, kAvx512F32{}, kAvx512NarrowF32{},
    kAvx512FlatF32{}, kAvx512BroadF32{};
constexpr TileKernels<double> kAvx2F64{}, kAvx2NarrowF64{}, kAvx512F64{}, kAvx512NarrowF64{},
    kAvx512FlatF64{}, kAvx512BroadF64{};
constexpr PathExtras<float> kAvx2ExtrasF32{}, kAvx512ExtrasF32{};
constexpr PathExtras<double> kAvx2ExtrasF64{}, kAvx512ExtrasF64{};
#endif

constexpr PathExtras<float> kGenericExtrasF32{&kDirectLoopsGenericF32, &activate_span_ref, nullptr,
                                              nullptr};
constexpr PathExtras<double> kGenericExtrasF64{&kDirectLoopsGenericF64, &activate_span_ref, nullptr,
                                              nullptr};

// Grouped by Isa, each path's wide row first (kRowsOf gives where a path's rows start).
constexpr GemmKernel<float> kKernelsF32[] = {
    make_kernel<float, Isa::generic>(ref_kernels<float>(), kGenericExtrasF32),
    make_kernel<float, Isa::avx2>(kAvx2F32, kAvx2ExtrasF32),
    make_kernel<float, Isa::avx2, Tile::narrow>(kAvx2NarrowF32, kAvx2ExtrasF32),
    make_kernel<float, Isa::avx512>(kAvx512F32, kAvx512ExtrasF32),
    make_kernel<float, Isa::avx512, Tile::narrow>(kAvx512NarrowF32, kAvx512ExtrasF32),
    make_kernel<float, Isa::avx512, Tile::flat>(kAvx512FlatF32, kAvx512ExtrasF32),
    make_kernel<float, Isa::avx512, Tile::broad>(kAvx512BroadF32, kAvx512ExtrasF32),
};
constexpr GemmKernel<double> kKernelsF64[] = {
    make_kernel<double, Isa::generic>(ref_kernels<double>(), kGenericExtrasF64),
    make_kernel<double, Isa::avx2>(kAvx2F64, kAvx2ExtrasF64),
    make_kernel<double, Isa::avx2, Tile::narrow>(kAvx2NarrowF64, kAvx2ExtrasF64),
    make_kernel<double, Isa::avx512>(kAvx512F64, kAvx512ExtrasF64),
    make_kernel<double, Isa::avx512, Tile::narrow>(kAvx512NarrowF64, kAvx512ExtrasF64),
    make_kernel<double, Isa::avx512, Tile::flat>(kAvx512FlatF64, kAvx512ExtrasF64),
    make_kernel<double, Isa::avx512, Tile::broad>(kAvx512BroadF64, kAvx512ExtrasF64),
};
// Where the rows of each path start in the tables above, indexed by Isa (and one past the end).
constexpr int kRowsOf[] = {0, 1, 3, 7};
static_assert(sizeof(kKernelsF32) / sizeof(kKernelsF32[0]) == kRowsOf[3], "rows of the table");
static_assert(sizeof(kKernelsF64) / sizeof(kKernelsF64[0]) == kRowsOf[3], "rows of the table");

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
