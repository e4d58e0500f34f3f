#pragma once
// The branch-free maximum shared by the pooling kernels of both layouts (pool.cpp, pool_nhwc.cpp).
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace convcore::detail {

// Same-width integer of T: the masks of the branch-free maximum.
template <class T>
using MaskInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// The rule of a window's maximum, one cell at a time, with integer masks (the form the vectoriser
// accepts): v replaces best when best is not NaN and v is greater or NaN, so ties keep the first
// and the first NaN wins; won records tap t when v is taken. No branch: on random data a branch
// on the comparison is mispredicted half the time.
template <class T>
inline void take_max_masked(T v, MaskInt<T> t, T& best, MaskInt<T>& won) {
  using M = MaskInt<T>;
  const M take = -M((best == best) & !(v <= best));
  M vb, mb;
  std::memcpy(&vb, &v, sizeof(T));
  std::memcpy(&mb, &best, sizeof(T));
  mb = (vb & take) | (mb & ~take);
  std::memcpy(&best, &mb, sizeof(T));
  won = (t & take) | (won & ~take);
}

}  // namespace convcore::detail
