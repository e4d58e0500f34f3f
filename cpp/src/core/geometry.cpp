#include "convcore/geometry.hpp"

#include <cctype>
#include <ostream>

#include "convcore/error.hpp"

namespace convcore {
namespace {

// a * b, or std::overflow_error naming what was being sized.
int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw std::overflow_error(detail::concat(op, ": ", what, " overflows a 64-bit size"));
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw std::overflow_error(detail::concat(op, ": ", what, " overflows a 64-bit size"));
  return r;
}

}  // namespace

const char* layout_name(Layout layout) { return layout == Layout::nhwc ? "NHWC" : "NCHW"; }

bool parse_layout(const std::string& name, Layout& layout) {
  std::string upper;
  for (char ch : name) upper += char(std::toupper(static_cast<unsigned char>(ch)));
  if (upper == "NCHW") layout = Layout::nchw;
  else if (upper == "NHWC") layout = Layout::nhwc;
  else return false;
  return true;
}

void Conv2dGeometry::validate(const char* op) const {
  CONVCORE_CHECK(mb >= 0, op, ": batch size mb must be >= 0, got ", mb);
  CONVCORE_CHECK(ic >= 1, op, ": input channels ic must be >= 1, got ", ic);
  CONVCORE_CHECK(oc >= 1, op, ": output channels oc must be >= 1, got ", oc);
  CONVCORE_CHECK(ih >= 1 && iw >= 1, op, ": input height and width must be >= 1, got ", ih, "x", iw);
  CONVCORE_CHECK(kh >= 1 && kw >= 1, op, ": kernel size must be >= 1, got ", kh, "x", kw);
  CONVCORE_CHECK(sh >= 1 && sw >= 1, op, ": stride: must be >= 1, got (", sh, ", ", sw, ")");
  CONVCORE_CHECK(dh >= 1 && dw >= 1, op, ": dilation: must be >= 1, got (", dh, ", ", dw, ")");
  CONVCORE_CHECK(pt >= 0 && pb >= 0 && pl >= 0 && pr >= 0, op,
                 ": padding must be >= 0, got (top, bottom, left, right) = (", pt, ", ", pb, ", ",
                 pl, ", ", pr, ")");
  CONVCORE_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
  CONVCORE_CHECK(ic % groups == 0, op, ": input channels ic=", ic,
                 " must be divisible by groups=", groups);
  CONVCORE_CHECK(oc % groups == 0, op, ": output channels oc=", oc,
                 " must be divisible by groups=", groups);

  // Sizes that the output formula and the buffers need, each checked before use.
  const int64_t ph_sum = checked_add(checked_add(ih, pt, op, "padded height"), pb, op, "padded height");
  const int64_t pw_sum = checked_add(checked_add(iw, pl, op, "padded width"), pr, op, "padded width");
  const int64_t ekh = checked_add(checked_mul(dh, kh - 1, op, "dilated kernel height"), 1, op,
                                  "dilated kernel height");
  const int64_t ekw = checked_add(checked_mul(dw, kw - 1, op, "dilated kernel width"), 1, op,
                                  "dilated kernel width");
  // Kernels that copy the padded plane index it with int64 too.
  checked_mul(ph_sum, pw_sum, op, "padded input plane (ih+pt+pb)*(iw+pl+pr)");
  CONVCORE_CHECK(ekh <= ph_sum && ekw <= pw_sum, op, ": kernel ", kh, "x", kw, " (dilated ", ekh,
                 "x", ekw, ") exceeds the padded input ", ph_sum, "x", pw_sum);

  // Every element count the library allocates or indexes must fit in int64.
  const int64_t hw = checked_mul(ih, iw, op, "input size ih*iw");
  checked_mul(checked_mul(mb, ic, op, "input size"), hw, op, "input size mb*ic*ih*iw");
  const int64_t khw = checked_mul(kh, kw, op, "kernel size kh*kw");
  const int64_t k = checked_mul(ic / groups, khw, op, "im2col rows ic/groups*kh*kw");
  checked_mul(oc, k, op, "weight size oc*ic/groups*kh*kw");
  const int64_t ohw = checked_mul(oh(), ow(), op, "output size oh*ow");
  checked_mul(checked_mul(mb, oc, op, "output size"), ohw, op, "output size mb*oc*oh*ow");
  checked_mul(k, ohw, op, "im2col buffer ic/groups*kh*kw*oh*ow");
  checked_mul(checked_mul(oc / groups, khw, op, "backward im2col buffer"), hw, op,
              "backward im2col buffer oc/groups*kh*kw*ih*iw");
  checked_mul(checked_mul(oc, eh(), op, "expanded delta"), ew(), op, "expanded delta oc*eh*ew");
}

Conv2dGeometry Conv2dGeometry::flipped() const {
  Conv2dGeometry f = *this;
  f.ic = oc;
  f.oc = ic;
  f.ih = eh();
  f.iw = ew();
  f.sh = f.sw = 1;
  // Pad the expanded delta by the dilated kernel extent less the forward padding ("k-1-p").
  // Where the forward padding is larger, the negative amount crops the padded-input gradient.
  f.pt = dh * (kh - 1) - pt;
  f.pb = dh * (kh - 1) - pb;
  f.pl = dw * (kw - 1) - pl;
  f.pr = dw * (kw - 1) - pr;
  return f;
}

std::ostream& operator<<(std::ostream& os, const Conv2dGeometry& g) {
  os << "mb" << g.mb << "ic" << g.ic << "ih" << g.ih << "iw" << g.iw << "oc" << g.oc << "kh" << g.kh
     << "kw" << g.kw << "sh" << g.sh << "sw" << g.sw;
  if (g.pt == g.pb && g.pl == g.pr)
    os << "ph" << g.pt << "pw" << g.pl;
  else
    os << "pt" << g.pt << "pb" << g.pb << "pl" << g.pl << "pr" << g.pr;
  if (g.dh != 1 || g.dw != 1) os << "dh" << g.dh << "dw" << g.dw;
  if (g.groups != 1) os << "g" << g.groups;
  if (g.layout == Layout::nhwc) os << "nhwc";
  return os;
}

}  // namespace convcore
