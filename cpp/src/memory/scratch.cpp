#include "memory/scratch.hpp"

#include <algorithm>
#include <mutex>
#include <new>

namespace convcore::detail {
namespace {

constexpr std::align_val_t kAlign{64};

struct Pool {
  std::mutex mutex;
  std::vector<Scratch::Block> idle;  // by size, smallest first; small
  int64_t idle_bytes = 0;
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: leases may end during static destruction
  return *p;
}

void release(Scratch::Block b) { ::operator delete(b.ptr, kAlign); }

bool smaller(const Scratch::Block& a, const Scratch::Block& b) { return a.bytes < b.bytes; }

}  // namespace

Scratch::Scratch(int64_t count, int64_t bytes_each) {
  blocks_.reserve(static_cast<size_t>(count));
  if (bytes_each < 1) bytes_each = 1;
  Pool& p = pool();
  try {
    for (int64_t i = 0; i < count; ++i) {
      Block b;
      {
        std::lock_guard<std::mutex> lock(p.mutex);
        // Take the smallest idle block that is large enough; else allocate a new one below.
        const auto best =
            std::lower_bound(p.idle.begin(), p.idle.end(), Block{nullptr, bytes_each}, smaller);
        if (best != p.idle.end()) {
          b = *best;
          p.idle_bytes -= b.bytes;
          p.idle.erase(best);
        }
      }
      if (b.bytes < bytes_each) {
        b.ptr = ::operator new(static_cast<size_t>(bytes_each), kAlign);  // may throw bad_alloc
        b.bytes = bytes_each;
      }
      blocks_.push_back(b);
    }
  } catch (...) {
    for (Block& b : blocks_) release(b);
    throw;
  }
}

Scratch::~Scratch() {
  if (blocks_.empty()) return;
  Pool& p = pool();
  std::vector<Block> drop;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    for (Block& b : blocks_) {
      p.idle.insert(std::upper_bound(p.idle.begin(), p.idle.end(), b, smaller), b);
      p.idle_bytes += b.bytes;
    }
    // Keep the pool bounded: free the largest idle blocks first.
    while (p.idle_bytes > kKeepBytes && !p.idle.empty()) {
      p.idle_bytes -= p.idle.back().bytes;
      drop.push_back(p.idle.back());
      p.idle.pop_back();
    }
  }
  for (Block& b : drop) release(b);
}

}  // namespace convcore::detail
