#pragma once
// Scratch memory for the ops: a process-wide pool of 64-byte-aligned blocks that outlive the call,
// so repeated calls neither allocate nor page-fault. A Scratch leases `count` blocks for one call
// (before any parallel region, so std::bad_alloc surfaces as an ordinary exception) and gives them
// back when it goes out of scope. Thread-safe: concurrent calls lease different blocks.
// The pool keeps at most kKeepBytes of idle blocks; larger leftovers are freed.
#include <cstdint>
#include <vector>

namespace convcore::detail {

class Scratch {
 public:
  Scratch(int64_t count, int64_t bytes_each);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <class T>
  T* get(int64_t i) const { return static_cast<T*>(blocks_[i].ptr); }

  struct Block {
    void* ptr = nullptr;
    int64_t bytes = 0;
  };
  static constexpr int64_t kKeepBytes = int64_t{128} << 20;

 private:
  std::vector<Block> blocks_;
};

}  // namespace convcore::detail
