// The path table and its cost models (paths.hpp).
#include "plan/paths.hpp"

#include <algorithm>
#include <cmath>

#include "depthwise/direct_loops.hpp"
#include "depthwise/spread_nhwc.hpp"
#include "ops/nhwc_via_nchw.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace convcore::detail {
namespace {

// Model parameters, in cycles of one core. They describe the machine and the data movement,
// never a tile: tile shapes come from the kernel row.
constexpr double kFmaPipes = 2;     // vector FMAs a core starts per cycle
constexpr double kLoadPorts = 3;    // loads a core starts per cycle (vector, broadcast or pointer)
// A load issued beside the FMAs is not quite free even below the ports' rate (on the Intel Xeon of
// benchmarks/README.md the wide AVX-512 tile's mix, 14 loads per 24 FMAs, runs at 86 % of the FMA
// ceiling, with 2 loads at 99 %; on the AMD EPYC the kernels come to 95 %): the step costs this
// fraction of the cycles the lesser of the two takes on top of the greater. Weighed lightly, so that
// it orders the tiles the rest of the model finds equal (the wide and broad AVX-512 tiles, both 24
// FMAs a step) by the operands they read, and moves no other choice.
constexpr double kLoadOverlap = 0.01;
constexpr double kCopy = 0.25;      // per element copied contiguously (padding, plain packing)
constexpr double kGather = 1.25;    // per element gathered (im2col packing, transposed write)
constexpr double kScatter = 3.75;   // per element col2im adds back into the image, strided
constexpr double kGatherVector = 3;  // per vector of a dx row col2im gathers from one tap's run
constexpr double kScatterRun = 0.25;  // per element added back within a contiguous run (vector adds)
constexpr double kRunStart = 6;      // per contiguous run added back: bounds, loop entry and exit
constexpr double kFarCopy = 0.5;    // extra, per element of a padded copy past half of L2
constexpr double kTileCall = 60;    // per micro-kernel call: set-up, row pointers, loop exit
constexpr double kEdgeCopy = 1.0;   // per element of an edge tile, through the driver's buffer
constexpr double kRowPiece = 100;   // per output row piece the b_in_place epilogue compacts
// Per element transposed between NHWC and NCHW (nhwc_via_nchw): float in 4 x 4 blocks through
// vector registers, read and written once each, twice a contiguous copy; otherwise element by
// element, a gather (measured on the suite, benchmarks/README.md).
constexpr double kTransposeBlocked = 2 * kCopy;
// The vector width of code built for the baseline ISA only (most NHWC depthwise loops).
constexpr int64_t kBaselineVectorBytes = 16;

double ceil_div(double a, double b) { return std::ceil(a / b); }

// How the micro-kernel reads A: from a packed panel or rows consecutive in memory (one load, a
// broadcast, per row and k step), or through a pointer per row (the A-in-place kernel: the
// row's pointer, then the broadcast).
enum class ARead { packed, row_pointers };

// A GEMM of m x n x k on the row of c. A k step of a tile takes its FMAs' cycles, or its loads'
// where they are more (a tall, narrow tile reading A through row pointers), and kLoadOverlap of
// the other.
double gemm_cost(const CostContext& c, double m, double n, double k, ARead a = ARead::packed) {
  const double mt = ceil_div(m, double(c.mr)), nt = ceil_div(n, double(c.nr));
  const double full = std::floor(m / double(c.mr)) * std::floor(n / double(c.nr));
  const double kb = ceil_div(k, double(c.kc));
  const double loads = double(c.nr) / double(c.lanes) +
                       double(c.mr) * (a == ARead::row_pointers ? 2 : 1);
  const double fmas = double(c.mr * c.nr) / (double(c.lanes) * kFmaPipes);
  const double reads = loads / kLoadPorts;
  const double step = std::max(fmas, reads) + kLoadOverlap * std::min(fmas, reads);
  const double tile_io = double(c.mr * c.nr) / double(c.lanes);
  const double edge = double(c.mr * c.nr) * kEdgeCopy;
  return mt * nt * (k * step + kb * (tile_io + kTileCall)) + (mt * nt - full) * kb * edge;
}

// The padded copy of one group of one image, and what copying it costs.
double padded_elems(const Conv2dGeometry& g) {
  const double hp = double(g.oh() - 1) * double(g.sh) + double(g.kh - 1) * double(g.dh) + 1;
  const double wp = double(g.ow() - 1) * double(g.sw) + double(g.kw - 1) * double(g.dw) + 1;
  return double(g.icg()) * hp * wp;
}
double padded_wp(const Conv2dGeometry& g) {
  return double(g.ow() - 1) * double(g.sw) + double(g.kw - 1) * double(g.dw) + 1;
}
double copy_cost(const CostContext& c, double elems) {
  const double bytes = elems * double(c.elem_size);
  return elems * (kCopy + (bytes > c.l2_bytes / 2 ? kFarCopy : 0));
}

bool stride1(const Conv2dGeometry& g) { return g.sh == 1 && g.sw == 1; }
// Which layout a path serves: the nhwc_ paths NHWC only, the others NCHW only (flip and col2im
// have a body for each).
bool nchw(const CostContext& c) { return c.g.layout == Layout::nchw; }
bool nhwc(const CostContext& c) { return c.g.layout == Layout::nhwc; }
// One input channel per group: depthwise layers, and single-channel inputs (groups == 1, ic == 1).
bool one_channel_groups(const CostContext& c) { return nchw(c) && c.g.icg() == 1; }
// The forward's depthwise loops take no crop (the flipped pass's negative padding).
bool fwd_depthwise_ok(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  return one_channel_groups(c) && g.pt >= 0 && g.pb >= 0 && g.pl >= 0 && g.pr >= 0;
}
double images_groups(const Conv2dGeometry& g) { return double(g.mb) * double(g.groups); }

// ---------------------------------------------------------------------------------- forward
// Per image and group: K = icg*kh*kw, N = oh*ow.

bool fwd_gemm_1x1_ok(const CostContext& c) { return nchw(c) && col_is_input(c.g); }
bool fwd_packed_ok(const CostContext& c) { return nchw(c); }
bool fwd_a_in_place_ok(const CostContext& c) {
  const double out = double(c.g.ocg()) * double(c.g.col_cols());
  return nchw(c) && !col_is_input(c.g) &&
         (padded_elems(c.g) + out) * double(c.elem_size) <= kMaxWorkspaceBytes;
}
bool fwd_a_wide_ok(const CostContext& c) {
  const double out = double(c.g.ocg()) * double(c.g.oh()) * padded_wp(c.g);
  return nchw(c) && !col_is_input(c.g) && stride1(c.g) &&
         (padded_elems(c.g) + out) * double(c.elem_size) <= kMaxWorkspaceBytes;
}
bool fwd_b_in_place_ok(const CostContext& c) {
  const double wide = double(c.g.ocg()) * double(c.g.oh()) * padded_wp(c.g);
  return nchw(c) && !col_is_input(c.g) && stride1(c.g) &&
         (padded_elems(c.g) + wide) * double(c.elem_size) <= kMaxWorkspaceBytes;
}

double a_pack(const CostContext& c, double m, double k, double n) {
  return m * k * ceil_div(n, double(c.nc)) * kCopy;
}

double fwd_gemm_1x1_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), N = double(c.g.col_cols()), ocg = double(c.g.ocg());
  return images_groups(c.g) *
         (gemm_cost(c, ocg, N, K) + K * N * kCopy + a_pack(c, ocg, K, N));
}
double fwd_packed_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), N = double(c.g.col_cols()), ocg = double(c.g.ocg());
  return images_groups(c.g) *
         (gemm_cost(c, ocg, N, K) + K * N * kGather + a_pack(c, ocg, K, N));
}
// A transposed product with col^T read in place (DirectA) over m rows (output pixels, ow of them
// an output row) into n columns, k deep. With stride 1 a tile whose rows lie in one output row
// is read as consecutive rows (DirectA::row_run): of the tiles starting anywhere in a row, those
// ow - mr + 1 of ow.
double direct_a_product(const CostContext& c, double m, double n, double k, double ow, int64_t sw) {
  const double mr = double(c.mr);
  const double runs = sw == 1 && ow >= mr ? (ow - mr + 1) / ow : 0;
  return (1 - runs) * gemm_cost(c, m, n, k, ARead::row_pointers) + runs * gemm_cost(c, m, n, k);
}
double fwd_a_in_place_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), N = double(c.g.col_cols()), ocg = double(c.g.ocg());
  // Small images are stacked, a_in_place_batch of them per product.
  const double batch = double(a_in_place_batch(c.g, c.mc, c.elem_size, c.l2_bytes));
  const double product = direct_a_product(c, batch * N, ocg, K, double(c.g.ow()), c.g.sw);
  return images_groups(c.g) *
         (product / batch + copy_cost(c, padded_elems(c.g)) + N * ocg * kGather);
}
// The transposed product over oh*wp rows, of which the wp - ow past each output row are
// computed and dropped by the write-back.
double fwd_a_wide_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), N = double(c.g.col_cols()), ocg = double(c.g.ocg());
  const double m = double(c.g.oh()) * padded_wp(c.g);
  return images_groups(c.g) *
         (gemm_cost(c, m, ocg, K) + copy_cost(c, padded_elems(c.g)) + N * ocg * kGather);
}
double fwd_b_in_place_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), ocg = double(c.g.ocg()), ow = double(c.g.ow());
  const double wp = padded_wp(c.g), n = double(c.g.oh()) * wp;
  // Compaction drops the wp - ow extra columns, one row piece per output row per micro-panel.
  const double compaction = wp != ow ? ocg * (n * kCopy + ceil_div(n, double(c.nr)) * kRowPiece) : 0;
  return images_groups(c.g) * (gemm_cost(c, ocg, n, K) + copy_cost(c, padded_elems(c.g)) +
                               compaction + a_pack(c, ocg, K, n));
}

// NHWC. nhwc_1x1: the whole batch, one product per group, A (the image) packed.
bool fwd_nhwc_1x1_ok(const CostContext& c) { return nhwc(c) && col_is_input(c.g); }
double fwd_nhwc_1x1_cost(const CostContext& c) {
  const double m = double(c.g.mb) * double(c.g.col_cols());
  const double K = double(c.g.col_rows()), ocg = double(c.g.ocg());
  return double(c.g.groups) * (gemm_cost(c, m, ocg, K) + a_pack(c, m, K, ocg));
}
// nhwc_in_place: per band of an image, a padded copy of all channels (bands overlap by the
// kernel's halo), then per group the product with col^T read in place; the output needs no
// write-back of its own.
bool fwd_nhwc_in_place_ok(const CostContext& c) { return nhwc(c); }
double nhwc_copy_cost(const CostContext& c) {
  double rows = 1, bytes = 0;
  padded_band_nhwc_size(c.g, c.elem_size, rows, bytes);
  const double bands = std::ceil(double(c.g.oh()) / rows);
  return double(c.g.mb) * bands * (bytes / double(c.elem_size)) *
         (kCopy + (bytes > c.l2_bytes / 2 ? kFarCopy : 0));
}
double fwd_nhwc_in_place_cost(const CostContext& c) {
  const double K = double(c.g.col_rows()), N = double(c.g.col_cols()), ocg = double(c.g.ocg());
  // col^T's rows (pixels) are read through a pointer each (DirectA).
  return images_groups(c.g) * gemm_cost(c, N, ocg, K, ARead::row_pointers) + nhwc_copy_cost(c);
}

// The depthwise loops: stride 1 runs several taps per pass over a padded plane at one vector
// FMA per element and tap; other strides run strided scalar loops (one per lanes / 4: the
// vectoriser packs a few).
double depthwise_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double macs = double(g.mb) * double(g.oc) * double(g.oh()) * double(g.ow()) *
                      double(g.kh) * double(g.kw);
  const double rate = stride1(g) ? double(c.dw_lanes) : double(c.dw_lanes) / 4;
  const double planes =
      double(g.mb) * double(g.oc) * (double(g.oh()) + double(g.kh)) * padded_wp(g);
  return macs / rate + planes * kCopy;
}

// NHWC depthwise loops: one multiply-add per channel, tap and output pixel, vectorised along the
// channels (a vector of at most oc lanes; a channel multiplier > 1 gathers its input, lanes / 4),
// plus a pass over the output. With multiplier 1 the three ops run the row's depthwise loops
// (nhwc_taps, nhwc_tap_sums); multipliers > 1 are built for the baseline ISA only, whatever the
// row: 16-byte vectors.
bool nhwc_depthwise_ok(const CostContext& c) {
  return nhwc(c) && c.g.icg() == 1 && c.g.groups > 1;
}
double nhwc_depthwise_cost(const CostContext& c, double lanes) {
  const Conv2dGeometry& g = c.g;
  const double pixels = double(g.mb) * double(g.oh()) * double(g.ow());
  const double macs = pixels * double(g.oc) * double(g.kh) * double(g.kw);
  const double rate = g.ocg() == 1 ? std::min(lanes, double(g.oc)) : lanes / 4;
  return macs / rate + pixels * double(g.oc) * kCopy;
}
double baseline_lanes(const CostContext& c) { return double(kBaselineVectorBytes / c.elem_size); }
double row_nhwc_depthwise_cost(const CostContext& c) {
  return nhwc_depthwise_cost(c, c.g.ocg() == 1 ? double(c.dw_lanes) : baseline_lanes(c));
}

// nhwc_spread (depthwise/spread_nhwc.hpp): one input channel per group, stride 1, each band's
// spread copy and the repeated weights within the workspace bound. Its loops run along runs of
// pixels times channels, priced as the other depthwise loops: a vector of the row's depthwise
// loops per tap, whatever the channel count (the point of the path: six channels fill vectors
// as well as sixty-four), plus the band copies.
bool spread_ok(const CostContext& c, SpreadOp op) {
  const Conv2dGeometry& g = c.g;
  if (!nhwc(c) || g.icg() != 1 || !stride1(g)) return false;
  const double eh = double(g.dh) * double(g.kh - 1), ew = double(g.dw) * double(g.kw - 1);
  const double width = double(op == SpreadOp::backward_input ? g.iw : g.ow()), oc = double(g.oc);
  const double band = (1 + eh) * (width + ew) * oc;
  const double taps = double(g.kh) * double(g.kw) * (oc * double(c.dw_lanes) + oc + 256);
  return (band + taps) * double(c.elem_size) <= kMaxWorkspaceBytes;
}
bool fwd_spread_ok(const CostContext& c) { return spread_ok(c, SpreadOp::forward); }
bool bwi_spread_ok(const CostContext& c) { return spread_ok(c, SpreadOp::backward_input); }
bool bww_spread_ok(const CostContext& c) { return spread_ok(c, SpreadOp::backward_weight); }
double spread_cost(const CostContext& c, SpreadOp op) {
  const Conv2dGeometry& g = c.g;
  const SpreadSizes s = spread_sizes(g, op, c.dw_lanes);
  const bool input = op == SpreadOp::backward_input;
  const double width = double(input ? g.iw : g.ow()), rows = double(input ? g.ih : g.oh());
  const double oc = double(g.oc), L = double(c.dw_lanes), run = double(s.run);
  // Runs of `run` pixels, the last of a row fewer.
  const double full = std::floor(width / run);
  const double vectors = full * ceil_div(run * oc, L) + ceil_div((width - full * run) * oc, L);
  const double taps = double(g.kh) * double(g.kw);
  const double copies = double(s.bands) * double(s.band_elems) * kCopy;
  // The input gradient with m > 1 adds each pixel's m values per input channel (strided).
  const double sum_channels = input && g.ocg() > 1 ? width * oc * kGather : 0;
  return double(g.mb) * (rows * (vectors * taps + sum_channels) + copies);
}
double fwd_spread_cost(const CostContext& c) { return spread_cost(c, SpreadOp::forward); }
double bwi_spread_cost(const CostContext& c) { return spread_cost(c, SpreadOp::backward_input); }
// The weight gradient's sums, [kh*kw][run*oc] per chunk, read back once.
double bww_spread_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double run = double(spread_sizes(g, SpreadOp::backward_weight, c.dw_lanes).run);
  const double sums =
      double(weight_chunks(g, c.elem_size)) * double(g.kh) * double(g.kw) * run * double(g.oc);
  return spread_cost(c, SpreadOp::backward_weight) + sums * kCopy;
}

// ---------------------------------------------------------------------------- backward input

bool bwi_any(const CostContext&) { return true; }
bool bwi_col2im_ok(const CostContext&) { return true; }

// The flipped pass: zero insertion (stride > 1), then a stride-1 forward of g.flipped() on its
// cheapest path, plus the kernel flip.
double bwi_flip_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const Conv2dGeometry f = g.flipped();
  const CostContext cf = on_geometry(c, f);
  double fwd = 0;
  cheapest_forward(cf, &fwd);
  const double expand =
      stride1(g) ? 0 : double(g.mb) * double(g.oc) * double(g.eh()) * double(g.ew()) * kCopy;
  return fwd + expand + double(g.wei_size()) * kCopy;
}
// dcol[K x N] = W_g^T[K x ocg] dY_g[ocg x N], then col2im.
double bwi_col2im_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double K = double(g.col_rows()), N = double(g.col_cols()), ocg = double(g.ocg());
  if (nhwc(c)) {  // dcol^T[N x K] = dY_g[N x ocg] Wr_g[ocg x K], then icg-vectors added back
    // Runs of a kernel row's kw*ic values per pixel (nhwc_col2im_runs), else icg values per tap.
    const double runs = nhwc_col2im_runs(g) ? N * double(g.kh) : 0;
    const double scatter = col_is_input(g) ? 0
                           : runs > 0      ? K * N * kScatterRun + runs * kRunStart
                                           : K * N * kScatter / double(std::min(g.icg(), c.lanes));
    return images_groups(g) * (gemm_cost(c, N, K, ocg) + a_pack(c, N, ocg, K) + scatter) +
           double(g.mb) * double(g.ic) * double(g.ih) * double(g.iw) * kCopy;
  }
  const double plane = double(g.icg()) * double(g.ih) * double(g.iw);
  // Where the stride is 1 across, dx's rows are gathered: each output row of a dcol row (K*oh
  // runs of ow) is added into the vectors of dx's row it spans. Else dx is zeroed and dcol
  // scattered back value by value.
  const double spans = ceil_div(double(g.ow()) + double(c.lanes - 1), double(c.lanes));
  const double back = g.sw == 1 ? K * double(g.oh()) * spans * kGatherVector
                                 : K * N * kScatter + plane * kCopy;
  const double scatter = col_is_input(g) ? 0 : back;
  // Each group's W_g^T packed once for all the images (and all of dcol's column blocks).
  return images_groups(g) * (gemm_cost(c, K, N, ocg) + ocg * N * kCopy + scatter) +
         double(g.groups) * K * ocg * kCopy;
}

// The phases: per residue class of dx rows and columns, a stride-1 forward of dy computed
// transposed with col^T read in place (as a_in_place does), every phase from one padded copy of
// dy, `phases_batch` images a product; W^T of each packed through a table from w (a gather);
// one pass transposes the products into dx's planes and interleaves them (stride 2 across: in
// blocks through registers). Strided layers only (with stride 1 it is the flip), with no more
// phases than taps (beyond, phases would certainly get no tap: windows far apart), and a copy
// and products within the workspace bound. Either layout (NHWC: one copy of every channel for the
// groups; the products copied back a pixel's channels at a time).
bool bwi_phases_ok(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  if (stride1(g) || double(g.sh) * double(g.sw) > double(g.kh) * double(g.kw)) return false;
  return phases_image_bytes(g, c.elem_size) <= kMaxWorkspaceBytes;
}
double bwi_phases_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const std::vector<Phase> phases = input_phases(g);
  const double batch = double(phases_batch(g, phases, c.mc, c.elem_size));
  const Conv2dGeometry copy = phase_copy_geometry(g, phase_copy_padding(phases));
  const double plane = double(g.icg()) * double(g.ih) * double(g.iw);
  double product = 0;
  for (const Phase& ph : phases) {
    if (!ph.has_taps()) continue;
    const CostContext cp = on_geometry(c, ph.g);
    // NHWC: the copy's pixels are a pixel's channels apart, every tile read through row
    // pointers (no row runs).
    product += direct_a_product(cp, batch * double(ph.g.col_cols()), double(g.icg()),
                                double(ph.g.col_rows()), nhwc(c) ? 0 : double(ph.g.ow()), 1) /
               batch;
  }
  // NHWC: a pixel's channels copied as one run; NCHW: transposed into the planes.
  const double interleave =
      plane * (nhwc(c) ? kCopy
               : g.sw == 2 && transposes_in_blocks(c.elem_size) ? kTransposeBlocked
                                                                  : kGather);
  const double copies = nhwc(c) ? double(g.mb) : images_groups(g);  // NHWC: once for the groups
  return images_groups(g) * (product + interleave) +
         copies * copy_cost(c, phase_copy_elems(g, copy)) + double(g.wei_size()) * kGather;
}

// --------------------------------------------------------------------------- backward weight

bool bww_a_in_place_ok(const CostContext& c) {
  return nchw(c) && padded_elems(c.g) * double(c.elem_size) <= kMaxWorkspaceBytes;
}
double chunk_sums(const CostContext& c) {
  const double chunks = double(weight_chunks(c.g, c.elem_size));
  return chunks > 1 ? chunks * double(c.g.wei_size()) * kCopy : 0;
}
// dW_g^T[K x ocg] (+)= col[K x N] dY_g^T[N x ocg].
double bww_a_in_place_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double K = double(g.col_rows()), N = double(g.col_cols()), ocg = double(g.ocg());
  const double product = gemm_cost(c, K, ocg, N, ARead::row_pointers);
  // dY^T's panels: rows contiguous along k, transposed through SSE registers (pack.hpp).
  const double pack_b = transposes_in_blocks(c.elem_size) ? kTransposeBlocked : kGather;
  return images_groups(g) * (product + copy_cost(c, padded_elems(g)) + N * ocg * pack_b) +
         chunk_sums(c);
}
// NHWC: dW_g^T[K x ocg] (+)= col[K x N] dY_g[N x ocg], col read in place from a band's copy.
bool bww_nhwc_ok(const CostContext& c) { return nhwc(c); }
double bww_nhwc_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double K = double(g.col_rows()), N = double(g.col_cols()), ocg = double(g.ocg());
  // col's rows are read through a pointer each (DirectA), as the NCHW path's.
  const double product = gemm_cost(c, K, ocg, N, ARead::row_pointers);
  return images_groups(g) * (product + N * ocg * kCopy) + nhwc_copy_cost(c) + chunk_sums(c);
}
bool bww_packed_ok(const CostContext& c) { return nchw(c); }
// dW_g[ocg x K] (+)= dY_g[ocg x N] col^T[N x K].
double bww_packed_cost(const CostContext& c) {
  const Conv2dGeometry& g = c.g;
  const double K = double(g.col_rows()), N = double(g.col_cols()), ocg = double(g.ocg());
  return images_groups(g) * (gemm_cost(c, ocg, K, N) + K * N * kGather + a_pack(c, ocg, N, K)) +
         (weight_columns_split(g, c.nr) ? 0 : chunk_sums(c));
}

// nhwc_via_nchw: the activations transposed to NCHW, the op on its cheapest NCHW path for the
// same geometry (on the same row), the result transposed back. A tensor of one channel is the
// same array in both layouts and is not transposed; an image's tensor larger than L2 is read and
// written from further out (both pay kFarCopy).
double transpose_cost(const CostContext& c, int64_t elems, int64_t channels) {
  if (channels == 1 || c.g.mb == 0) return 0;
  double per = transposes_in_blocks(c.elem_size) ? kTransposeBlocked : kGather;
  if (double(elems / c.g.mb) * double(c.elem_size) > c.l2_bytes) per += 2 * kFarCopy;
  return double(elems) * per;
}
template <class Path, size_t n>
Path cheapest(const PathInfo<Path> (&table)[n], const CostContext& c, double* cost);
template <class Path, size_t n>
double nchw_twin_cost(const PathInfo<Path> (&table)[n], const CostContext& c,
                      Path* path = nullptr) {
  Conv2dGeometry t = c.g;
  t.layout = Layout::nchw;
  double cost = 0;
  const Path p = cheapest(table, on_geometry(c, t), &cost);
  if (path) *path = p;
  return cost;
}
double fwd_via_nchw_cost(const CostContext& c) {
  return nchw_twin_cost(kForwardPaths, c) + transpose_cost(c, c.g.src_size(), c.g.ic) +
         transpose_cost(c, c.g.dst_size(), c.g.oc);
}
// Where the twin's path is col2im, its product packs dy from NHWC order (a transposed panel in
// place of the contiguous one the twin's cost counts) and dy is not transposed.
double bwi_via_nchw_cost(const CostContext& c) {
  InputPath p = InputPath::flip;
  const double twin = nchw_twin_cost(kInputPaths, c, &p);
  const double dy = transpose_cost(c, c.g.dst_size(), c.g.oc) -
                    (p == InputPath::col2im && c.g.oc > 1 ? double(c.g.dst_size()) * kCopy : 0);
  return twin + dy + transpose_cost(c, c.g.src_size(), c.g.ic);
}
double bww_via_nchw_cost(const CostContext& c) {
  return nchw_twin_cost(kWeightPaths, c) + transpose_cost(c, c.g.src_size(), c.g.ic) +
         transpose_cost(c, c.g.dst_size(), c.g.oc);
}

template <class Path, size_t n>
Path cheapest(const PathInfo<Path> (&table)[n], const CostContext& c, double* cost) {
  Path best = table[0].path;
  double best_cost = INFINITY;
  for (const auto& p : table) {
    if (!p.supports(c)) continue;
    const double v = p.cost(c);
    if (v < best_cost) best = p.path, best_cost = v;
  }
  if (cost) *cost = best_cost;
  return best;
}

}  // namespace

template <class T>
CostContext cost_context(const Conv2dGeometry& g, const GemmKernel<T>& k) {
  return {g,         k.mr, k.nr, k.mc, k.kc, k.nc, k.lanes, k.loops->dot_lanes,
          int64_t(sizeof(T)), l2_cache_bytes()};
}
template CostContext cost_context<float>(const Conv2dGeometry&, const GemmKernel<float>&);
template CostContext cost_context<double>(const Conv2dGeometry&, const GemmKernel<double>&);

const PathInfo<ForwardPath> kForwardPaths[11] = {
    {ForwardPath::gemm_1x1, "gemm_1x1", fwd_gemm_1x1_ok, fwd_gemm_1x1_cost},
    {ForwardPath::packed, "packed", fwd_packed_ok, fwd_packed_cost},
    {ForwardPath::a_in_place, "a_in_place", fwd_a_in_place_ok, fwd_a_in_place_cost},
    {ForwardPath::a_wide, "a_wide", fwd_a_wide_ok, fwd_a_wide_cost},
    {ForwardPath::b_in_place, "b_in_place", fwd_b_in_place_ok, fwd_b_in_place_cost},
    {ForwardPath::depthwise, "depthwise", fwd_depthwise_ok, depthwise_cost},
    {ForwardPath::nhwc_1x1, "nhwc_1x1", fwd_nhwc_1x1_ok, fwd_nhwc_1x1_cost},
    {ForwardPath::nhwc_in_place, "nhwc_in_place", fwd_nhwc_in_place_ok, fwd_nhwc_in_place_cost},
    {ForwardPath::nhwc_depthwise, "nhwc_depthwise", nhwc_depthwise_ok, row_nhwc_depthwise_cost},
    {ForwardPath::nhwc_spread, "nhwc_spread", fwd_spread_ok, fwd_spread_cost},
    {ForwardPath::nhwc_via_nchw, "nhwc_via_nchw", nhwc, fwd_via_nchw_cost},
};
const PathInfo<InputPath> kInputPaths[7] = {
    {InputPath::flip, "flip", bwi_any, bwi_flip_cost},
    {InputPath::col2im, "col2im", bwi_col2im_ok, bwi_col2im_cost},
    {InputPath::phases, "phases", bwi_phases_ok, bwi_phases_cost},
    {InputPath::depthwise, "depthwise", one_channel_groups, depthwise_cost},
    {InputPath::nhwc_depthwise, "nhwc_depthwise", nhwc_depthwise_ok, row_nhwc_depthwise_cost},
    {InputPath::nhwc_spread, "nhwc_spread", bwi_spread_ok, bwi_spread_cost},
    {InputPath::nhwc_via_nchw, "nhwc_via_nchw", nhwc, bwi_via_nchw_cost},
};
const PathInfo<WeightPath> kWeightPaths[7] = {
    {WeightPath::a_in_place, "a_in_place", bww_a_in_place_ok, bww_a_in_place_cost},
    {WeightPath::packed, "packed", bww_packed_ok, bww_packed_cost},
    {WeightPath::depthwise, "depthwise", one_channel_groups, depthwise_cost},
    {WeightPath::nhwc_in_place, "nhwc_in_place", bww_nhwc_ok, bww_nhwc_cost},
    {WeightPath::nhwc_depthwise, "nhwc_depthwise", nhwc_depthwise_ok, row_nhwc_depthwise_cost},
    {WeightPath::nhwc_spread, "nhwc_spread", bww_spread_ok, bww_spread_cost},
    {WeightPath::nhwc_via_nchw, "nhwc_via_nchw", nhwc, bww_via_nchw_cost},
};

ForwardPath cheapest_forward(const CostContext& c, double* cost) {
  return cheapest(kForwardPaths, c, cost);
}
InputPath cheapest_input(const CostContext& c, double* cost) {
  return cheapest(kInputPaths, c, cost);
}
WeightPath cheapest_weight(const CostContext& c, double* cost) {
  return cheapest(kWeightPaths, c, cost);
}

double l2_cache_bytes() {
  static const double bytes = [] {
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (v > 0) return double(v);
#endif
    return double(512 * 1024);
  }();
  return bytes;
}

}  // namespace convcore::detail
