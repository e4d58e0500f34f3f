// How close a loop with a micro-kernel's memory operands can come to the register FMA ceiling, on
// one core of an x86-64 CPU with AVX-512F. Each loop is written in inline assembly with its
// registers fixed (no spills, no moves), so what it measures is the CPU, not a compiler:
//
//   register   12 independent vfmadd231ps chains, no memory operand (the ceiling of
//              `python -m convcore bench`, "% reg")
//   tile       per k step of a 12 x 32 float tile, as the AVX-512 wide micro-kernel: 2 vector
//              loads of B, 12 broadcasts of A, 24 FMAs (24 accumulators)
//   no_bcast   the same without the broadcasts (A's value held in a register)
//   no_loads   the same without the vector loads (B's row held in registers)
//   embedded   the broadcasts folded into the FMAs ({1to16} memory operands, 24 of them)
//
// Build and run (not part of the package; g++ or clang++):
//   g++ -O2 -mavx512f benchmarks/fma_mix_probe.cpp -o fma_mix_probe && ./fma_mix_probe
// Pin it to one idle core (taskset -c 1) on a machine with other work.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace {

#define ACC                                                                                     \
  "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", "zmm11", \
      "zmm12", "zmm13", "zmm14", "zmm15", "zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21",     \
      "zmm22", "zmm23", "zmm24", "zmm25", "zmm26", "zmm27", "zmm28", "zmm29", "zmm30", "zmm31"

#define ZERO24                                                                                   \
  "vpxord %%zmm0,%%zmm0,%%zmm0\n vpxord %%zmm1,%%zmm1,%%zmm1\n vpxord %%zmm2,%%zmm2,%%zmm2\n"    \
  "vpxord %%zmm3,%%zmm3,%%zmm3\n vpxord %%zmm4,%%zmm4,%%zmm4\n vpxord %%zmm5,%%zmm5,%%zmm5\n"    \
  "vpxord %%zmm6,%%zmm6,%%zmm6\n vpxord %%zmm7,%%zmm7,%%zmm7\n vpxord %%zmm8,%%zmm8,%%zmm8\n"    \
  "vpxord %%zmm9,%%zmm9,%%zmm9\n vpxord %%zmm10,%%zmm10,%%zmm10\n"                                \
  "vpxord %%zmm11,%%zmm11,%%zmm11\n vpxord %%zmm12,%%zmm12,%%zmm12\n"                             \
  "vpxord %%zmm13,%%zmm13,%%zmm13\n vpxord %%zmm14,%%zmm14,%%zmm14\n"                             \
  "vpxord %%zmm15,%%zmm15,%%zmm15\n vpxord %%zmm16,%%zmm16,%%zmm16\n"                             \
  "vpxord %%zmm17,%%zmm17,%%zmm17\n vpxord %%zmm18,%%zmm18,%%zmm18\n"                             \
  "vpxord %%zmm19,%%zmm19,%%zmm19\n vpxord %%zmm20,%%zmm20,%%zmm20\n"                             \
  "vpxord %%zmm21,%%zmm21,%%zmm21\n vpxord %%zmm22,%%zmm22,%%zmm22\n"                             \
  "vpxord %%zmm23,%%zmm23,%%zmm23\n"

// Row i of the tile: A[i] (into zmm26) times B's two vectors (zmm24, zmm25) into zmm 2i, 2i+1.
#define FMA2(r0, r1) \
  "vfmadd231ps %%zmm24, %%zmm26, %%zmm" #r0 "\n vfmadd231ps %%zmm25, %%zmm26, %%zmm" #r1 "\n"
#define BCAST(i) "vbroadcastss " #i "*4(%[a]), %%zmm26\n"
#define ROW(i, r0, r1) BCAST(i) FMA2(r0, r1)
#define ROW_NB(i, r0, r1) FMA2(r0, r1)
#define ROW_EMB(i, r0, r1)                                  \
  "vfmadd231ps " #i "*4(%[a])%{1to16%}, %%zmm24, %%zmm" #r0 \
  "\n vfmadd231ps " #i "*4(%[a])%{1to16%}, %%zmm25, %%zmm" #r1 "\n"
#define ROWS(R)                                                                              \
  R(0, 0, 1) R(1, 2, 3) R(2, 4, 5) R(3, 6, 7) R(4, 8, 9) R(5, 10, 11) R(6, 12, 13) R(7, 14, 15) \
      R(8, 16, 17) R(9, 18, 19) R(10, 20, 21) R(11, 22, 23)
#define LOAD_B "vmovups (%[b]), %%zmm24\n vmovups 64(%[b]), %%zmm25\n"
#define NEXT "add $48, %[a]\n add $128, %[b]\n"

// acc -> acc * 0.999 + 1e-3 settles near 1: no overflow, no subnormals.
const float kMul = 0.999f, kAdd = 1e-3f;

constexpr int64_t kSteps = 128;  // k steps per call: A 6 KiB and B 16 KiB, in L1
alignas(64) float a_panel[12 * kSteps];
alignas(64) float b_panel[kSteps * 32];

// The loops: kSteps k steps (4 per iteration) over the panels above.
void tile(const float* a, const float* b) {
  int64_t k = kSteps / 4;
  asm volatile(ZERO24 "1:\n" LOAD_B ROWS(ROW) NEXT LOAD_B ROWS(ROW) NEXT LOAD_B ROWS(ROW) NEXT
                   LOAD_B ROWS(ROW) NEXT "dec %[k]\n jnz 1b\n"
               : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
               :
               : ACC, "memory", "cc");
}
void no_bcast(const float* a, const float* b) {
  int64_t k = kSteps / 4;
  asm volatile(ZERO24 "vbroadcastss (%[a]), %%zmm26\n"
               "1:\n" LOAD_B ROWS(ROW_NB) NEXT LOAD_B ROWS(ROW_NB) NEXT LOAD_B ROWS(ROW_NB) NEXT
                   LOAD_B ROWS(ROW_NB) NEXT "dec %[k]\n jnz 1b\n"
               : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
               :
               : ACC, "memory", "cc");
}
void no_loads(const float* a, const float* b) {
  int64_t k = kSteps / 4;
  asm volatile(ZERO24 LOAD_B "1:\n" ROWS(ROW) NEXT ROWS(ROW) NEXT ROWS(ROW) NEXT ROWS(ROW) NEXT
               "dec %[k]\n jnz 1b\n"
               : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
               :
               : ACC, "memory", "cc");
}
void embedded(const float* a, const float* b) {
  int64_t k = kSteps / 4;
  asm volatile(ZERO24 "1:\n" LOAD_B ROWS(ROW_EMB) NEXT LOAD_B ROWS(ROW_EMB) NEXT LOAD_B
                   ROWS(ROW_EMB) NEXT LOAD_B ROWS(ROW_EMB) NEXT "dec %[k]\n jnz 1b\n"
               : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k)
               :
               : ACC, "memory", "cc");
}
// 12 chains of kSteps * 2 FMAs each: the same FMA count as a call of the loops above.
void register_chains(const float*, const float*) {
  int64_t k = kSteps / 4;
  asm volatile(ZERO24
               "vbroadcastss %[m], %%zmm30\n vbroadcastss %[c], %%zmm31\n"
               "1:\n"
#define CHAINS                                                                             \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm0\n vfmadd132ps %%zmm30, %%zmm31, %%zmm1\n"          \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm2\n vfmadd132ps %%zmm30, %%zmm31, %%zmm3\n"          \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm4\n vfmadd132ps %%zmm30, %%zmm31, %%zmm5\n"          \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm6\n vfmadd132ps %%zmm30, %%zmm31, %%zmm7\n"          \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm8\n vfmadd132ps %%zmm30, %%zmm31, %%zmm9\n"          \
  "vfmadd132ps %%zmm30, %%zmm31, %%zmm10\n vfmadd132ps %%zmm30, %%zmm31, %%zmm11\n"
               CHAINS CHAINS CHAINS CHAINS CHAINS CHAINS CHAINS CHAINS
               "dec %[k]\n jnz 1b\n"
#undef CHAINS
               : [k] "+r"(k)
               : [m] "m"(kMul), [c] "m"(kAdd)
               : ACC, "memory", "cc");
}

// GFLOP/s of f: the best of five 0.2 s runs. Each call is 96 * kSteps FMAs of 16 lanes.
double rate(void (*f)(const float*, const float*)) {
  using clock = std::chrono::steady_clock;
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    const auto start = clock::now();
    int64_t calls = 0;
    double elapsed = 0;
    do {
      for (int i = 0; i < 1000; ++i) f(a_panel, b_panel);
      calls += 1000;
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < 0.2);
    best = std::max(best, 2.0 * 16 * 24 * double(kSteps) * double(calls) / elapsed / 1e9);
  }
  return best;
}

}  // namespace

int main() {
  std::fill(a_panel, a_panel + 12 * kSteps, 1e-3f);
  std::fill(b_panel, b_panel + 32 * kSteps, 1e-3f);
  rate(register_chains);  // clocks up
  const double ceiling = rate(register_chains);
  std::printf("%-10s %8.1f GFLOP/s  (the ceiling, one core)\n", "register", ceiling);
  const struct {
    const char* name;
    void (*f)(const float*, const float*);
  } loops[] = {{"tile", tile}, {"no_bcast", no_bcast}, {"no_loads", no_loads},
               {"embedded", embedded}};
  for (const auto& l : loops) {
    const double r = rate(l.f);
    std::printf("%-10s %8.1f GFLOP/s  %5.1f %% of the ceiling\n", l.name, r, 100 * r / ceiling);
  }
  return 0;
}
