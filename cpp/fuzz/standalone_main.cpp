// Runs the fuzz target without libFuzzer: on the files named on the command line, or on
// CONVCORE_FUZZ_RUNS (default 20000) inputs from a seeded generator (CONVCORE_FUZZ_SEED).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      std::ifstream f(argv[i], std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::printf("fuzz_conv2d: %d files, no failure\n", argc - 1);
    return 0;
  }
  const char* runs_env = std::getenv("CONVCORE_FUZZ_RUNS");
  const char* seed_env = std::getenv("CONVCORE_FUZZ_SEED");
  const long runs = runs_env ? std::atol(runs_env) : 20000;
  std::mt19937 rng(seed_env ? unsigned(std::atol(seed_env)) : 2024u);
  std::vector<uint8_t> bytes(24);
  for (long i = 0; i < runs; ++i) {
    // Bias towards small fields (the top three bits >= 3 select the ordinary range).
    for (auto& b : bytes) b = uint8_t(rng() % 8 == 0 ? rng() : (96 + rng() % 160));
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size() - rng() % 8);
  }
  std::printf("fuzz_conv2d: %ld inputs, no failure\n", runs);
  return 0;
}
