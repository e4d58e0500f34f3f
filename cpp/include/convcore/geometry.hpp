#pragma once
// Conv2dGeometry: the one place where convolution sizes are computed and validated.
//
//   x[mb][ic][ih][iw]   w[oc][ic/groups][kh][kw]   b[oc]   y[mb][oc][oh][ow]
//   oh = (ih + pt + pb - dh*(kh-1) - 1) / sh + 1       ow likewise with pl, pr, dw, kw, sw
//
// Padding is per side (top, bottom, left, right) so that asymmetric "same" padding works.
// The layout says how activations (x, y and their gradients) lie in memory: NCHW as above, or
// NHWC, x[mb][ih][iw][ic] and y[mb][oh][ow][oc]. Weights are [oc][ic/groups][kh][kw] in both.
#include <cstdint>
#include <iosfwd>
#include <string>

namespace convcore {

enum class Layout { nchw, nhwc };

// "NCHW" or "NHWC".
const char* layout_name(Layout layout);
// The layout named `name` ("NCHW" or "NHWC", in any case); false when unknown.
bool parse_layout(const std::string& name, Layout& layout);

struct Conv2dGeometry {
  int64_t mb = 1, ic = 1, ih = 1, iw = 1;
  int64_t oc = 1, kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t pt = 0, pb = 0, pl = 0, pr = 0;
  int64_t dh = 1, dw = 1;
  int64_t groups = 1;
  Layout layout = Layout::nchw;  // of the activations; sizes do not depend on it

  // Output size: the formula above, the only copy of it in the library.
  int64_t oh() const { return (ih + pt + pb - dh * (kh - 1) - 1) / sh + 1; }
  int64_t ow() const { return (iw + pl + pr - dw * (kw - 1) - 1) / sw + 1; }
  // Size of the stride-1 output, i.e. of expand_stride(delta): ih + pt + pb - dh*(kh-1).
  int64_t eh() const { return ih + pt + pb - dh * (kh - 1); }
  int64_t ew() const { return iw + pl + pr - dw * (kw - 1); }

  int64_t icg() const { return ic / groups; }        // input channels per group
  int64_t ocg() const { return oc / groups; }        // output channels per group
  int64_t col_rows() const { return icg() * kh * kw; }  // K of the forward GEMM, per group
  int64_t col_cols() const { return oh() * ow(); }      // N of the forward GEMM, per image

  int64_t src_size() const { return mb * ic * ih * iw; }
  int64_t wei_size() const { return oc * icg() * kh * kw; }
  int64_t dst_size() const { return mb * oc * oh() * ow(); }

  // Throws std::invalid_argument naming the offending field and the rule, or std::overflow_error
  // when an element count does not fit in int64 (checked before anything is allocated).
  // `op` prefixes the message, e.g. "conv2d_forward".
  void validate(const char* op = "conv2d") const;

  // The same geometry with the roles of input and output swapped as the flipped-kernel
  // backward pass sees them: input expand(delta) padded by dh*(kh-1), weights flip_kernels(w),
  // stride 1, output the gradient of the padded input.
  Conv2dGeometry flipped() const;
};

// Canonical problem string (benchdnn style): mb2ic3ih8iw8oc4kh3kw3sh2sw2ph1pw1, with a trailing
// "nhwc" for that layout.
std::ostream& operator<<(std::ostream& os, const Conv2dGeometry& g);

}  // namespace convcore
