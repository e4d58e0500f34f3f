#pragma once
// The phase (sub-pixel) decomposition of a strided layer's input gradient.
//
// With stride s, row a of dx receives dy row i through tap r exactly when a + pt = i*s + r*dh.
// The rows a of one residue rho = a mod s therefore see a fixed subset of the taps,
//
//   r = r0, r0 + t, r0 + 2t, ...   (M of them; t = s / gcd(s, dh), r0 the first with
//                                   (rho + pt - r0*dh) divisible by s),
//
// and dx[rho + s*u] = sum_m w[r0 + m*t] * dy[u - c0 - m*dh'],  c0 = (r0*dh - rho - pt) / s,
// dh' = dh / gcd(s, dh): a stride-1 correlation of dy with the taps in reverse order, dilation dh',
// padded by c0 + (M-1)*dh' on top (negative: a crop) and cut to the U = ceil((ih - rho) / s) rows
// of the residue. Columns likewise. Each of the sh*sw phases is then a stride-1 forward
// convolution of dy (oc channels in, ic out) with no zero inserted, and the phases together
// write every element of dx once (a phase without taps writes zeros).
#include <cstdint>
#include <numeric>
#include <vector>

#include "convcore/geometry.hpp"

namespace convcore::detail {

// One axis of one phase.
struct PhaseAxis {
  int64_t rho;       // residue of the dx rows (columns) of the phase
  int64_t taps;      // M: taps of the sub-kernel (0: nothing reaches these rows)
  int64_t first;     // r0, the first tap, and
  int64_t step;      // t, the step between taps, in the layer's kernel
  int64_t dilation;  // dh' of the sub-kernel
  int64_t pad_lo, pad_hi;  // padding of dy (negative: a crop)
  int64_t out;       // U: dx rows (columns) of the phase
};

// size: ih; out: oh; k: kh; s: sh; p: pt; d: dh.
inline PhaseAxis phase_axis(int64_t rho, int64_t size, int64_t out, int64_t k, int64_t s,
                            int64_t p, int64_t d) {
  const int64_t g = std::gcd(s, d);
  PhaseAxis a{rho, 0, 0, s / g, d / g, 0, 0, rho < size ? (size - rho + s - 1) / s : 0};
  int64_t r0 = 0;
  while (r0 < a.step && r0 < k && (rho + p - r0 * d) % s != 0) ++r0;
  if (r0 >= a.step || r0 >= k || a.out == 0) return a;  // no tap reaches these rows
  a.first = r0;
  a.taps = (k - 1 - r0) / a.step + 1;
  const int64_t c0 = (r0 * d - rho - p) / s;  // exact
  a.pad_lo = c0 + (a.taps - 1) * a.dilation;
  a.pad_hi = a.out + a.dilation * (a.taps - 1) - out - a.pad_lo;
  return a;
}

struct Phase {
  PhaseAxis h, w;
  Conv2dGeometry g;  // the stride-1 forward dy -> this phase of dx (valid when both have taps)
  bool has_taps() const { return h.taps > 0 && w.taps > 0; }
};

// The sh*sw phases of g's input gradient, rows' residues outer.
inline std::vector<Phase> input_phases(const Conv2dGeometry& g) {
  std::vector<Phase> phases;
  for (int64_t rh = 0; rh < g.sh; ++rh)
    for (int64_t rw = 0; rw < g.sw; ++rw) {
      Phase ph{phase_axis(rh, g.ih, g.oh(), g.kh, g.sh, g.pt, g.dh),
               phase_axis(rw, g.iw, g.ow(), g.kw, g.sw, g.pl, g.dw), g};
      Conv2dGeometry& f = ph.g;
      f.ic = g.oc;
      f.oc = g.ic;
      f.ih = g.oh();
      f.iw = g.ow();
      f.kh = ph.h.taps;
      f.kw = ph.w.taps;
      f.sh = f.sw = 1;
      f.dh = ph.h.dilation;
      f.dw = ph.w.dilation;
      f.pt = ph.h.pad_lo;
      f.pb = ph.h.pad_hi;
      f.pl = ph.w.pad_lo;
      f.pr = ph.w.pad_hi;
      phases.push_back(ph);
    }
  return phases;
}

}  // namespace convcore::detail
