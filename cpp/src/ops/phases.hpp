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
#include <algorithm>
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

// The padding of the one copy of dy that every phase reads: on each side, the most any phase
// with taps pads there (none where every phase crops). Phase ph's window starts at row
// top - ph.g.pt and column left - ph.g.pl of it.
struct PhaseCopyPadding {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};
inline PhaseCopyPadding phase_copy_padding(const std::vector<Phase>& phases) {
  PhaseCopyPadding p;
  for (const Phase& ph : phases) {
    if (!ph.has_taps()) continue;
    p.top = std::max(p.top, ph.g.pt);
    p.bottom = std::max(p.bottom, ph.g.pb);
    p.left = std::max(p.left, ph.g.pl);
    p.right = std::max(p.right, ph.g.pr);
  }
  return p;
}

// The geometry of that copy as an image to pad: dy's group of channels (g's ocg) with the
// padding above and a 1 x 1 kernel, so that PaddedImage::of gives its sizes and fill makes it.
inline Conv2dGeometry phase_copy_geometry(const Conv2dGeometry& g, const PhaseCopyPadding& p) {
  Conv2dGeometry c = g;
  c.ic = g.oc;
  c.oc = g.ic;
  c.ih = g.oh();
  c.iw = g.ow();
  c.kh = c.kw = c.sh = c.sw = c.dh = c.dw = 1;
  c.pt = p.top;
  c.pb = p.bottom;
  c.pl = p.left;
  c.pr = p.right;
  return c;
}

}  // namespace convcore::detail
