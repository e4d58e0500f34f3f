#pragma once
// The two small decodings every convolution loop needs, written once:
//   - a row p of col (or a filter tap) as (input channel, kernel row, kernel column);
//   - the range of output positions whose input position falls inside the image.
#include <algorithm>
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore::detail {

// Row p = (c*kh + r)*kw + s of col as (c, r, s); for a filter tap p < kh*kw, c is 0.
struct Tap {
  int64_t c, r, s;
  static Tap of(int64_t kh, int64_t kw, int64_t p) {
    const int64_t khw = kh * kw;
    return {p / khw, (p % khw) / kw, p % kw};
  }
  static Tap of(const Conv2dGeometry& g, int64_t p) { return of(g.kh, g.kw, p); }
};

// Half-open range [begin, end) of the t in [0, count) with 0 <= c + t*s < n; the rest falls in
// the padding. begin <= end <= count always. Written so that a huge stride cannot overflow;
// divisions only for strides above 1.
struct Range {
  int64_t begin, end;
};

inline Range valid_range(int64_t c, int64_t s, int64_t n, int64_t count) {
  int64_t begin = 0, end = 0;
  if (s == 1) {
    begin = -c;
    end = n - c;
  } else {
    begin = c < 0 ? (-c - 1) / s + 1 : 0;  // ceil(-c / s)
    end = n - c > 0 ? (n - 1 - c) / s + 1 : 0;
  }
  begin = std::clamp<int64_t>(begin, 0, count);
  end = std::clamp<int64_t>(end, begin, count);
  return {begin, end};
}

}  // namespace convcore::detail
