#include "convcore/geometry.hpp"

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "test_util.hpp"

using convcore::Conv2dGeometry;
using testutil::geom;

static std::string message_of(const Conv2dGeometry& g) {
  try {
    g.validate("op");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

int main() {
  // Output size against the formula written out by hand for a few cases.
  CHECK(geom(1, 1, 5, 5, 1, 3, 3).oh() == 3);
  CHECK(geom(1, 1, 7, 8, 1, 3, 3, 2, 2).oh() == 3);                // (7-3)/2+1
  CHECK(geom(1, 1, 7, 8, 1, 3, 3, 2, 2).ow() == 3);                // (8-3)/2+1 = 3 (floor)
  CHECK(geom(1, 1, 5, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1).oh() == 5);    // "same"
  CHECK(geom(1, 1, 6, 6, 1, 3, 3, 2, 2, 0, 1, 0, 1).oh() == 3);    // asymmetric
  CHECK(geom(1, 1, 9, 9, 1, 3, 3, 1, 1, 0, 0, 0, 0, 3, 3).oh() == 3);  // dilated extent 7
  CHECK(geom(1, 1, 7, 8, 1, 3, 3, 2, 2).eh() == 5);
  CHECK(geom(1, 1, 7, 8, 1, 3, 3, 2, 2).ew() == 6);

  // Flipped geometry: stride 1, swapped channels, k-1-p padding; its output is the input size.
  const Conv2dGeometry g = geom(2, 6, 7, 8, 4, 3, 2, 2, 3, 1, 0, 2, 1, 1, 2, 2);
  const Conv2dGeometry f = g.flipped();
  CHECK(f.ic == 4 && f.oc == 6 && f.sh == 1 && f.sw == 1 && f.groups == 2);
  CHECK(f.ih == g.eh() && f.iw == g.ew());
  CHECK(f.oh() == g.ih && f.ow() == g.iw);
  CHECK(f.pt == 1 && f.pb == 2 && f.pl == 0 && f.pr == 1);
  const Conv2dGeometry big_pad = geom(1, 1, 4, 4, 1, 3, 3, 1, 1, 3, 3, 3, 3);
  CHECK(big_pad.flipped().pt == -1 && big_pad.flipped().oh() == 4);

  // Canonical string.
  std::ostringstream os;
  os << geom(2, 3, 8, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1);
  CHECK(os.str() == "mb2ic3ih8iw8oc4kh3kw3sh2sw2ph1pw1");

  // Validation: each rule, with the argument named in the message.
  CHECK(message_of(geom(1, 1, 5, 5, 1, 3, 3)).empty());
  CHECK(message_of(geom(0, 1, 5, 5, 1, 3, 3)).empty());  // empty batch is valid
  CHECK(message_of(geom(-1, 1, 5, 5, 1, 3, 3)).find("mb") != std::string::npos);
  CHECK(message_of(geom(1, 0, 5, 5, 1, 3, 3)).find("ic") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 0, 3, 3)).find("oc") != std::string::npos);
  CHECK(message_of(geom(1, 1, 0, 5, 1, 1, 1)).find("height") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 1, 0, 3)).find("kernel") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 1, 3, 3, 0, 1)).find("stride") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 1, 3, 3, 1, 1, -1)).find("padding") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 0, 0, 0, 1)).find("dilation") !=
        std::string::npos);
  CHECK(message_of(geom(1, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 2)).find("divisible") !=
        std::string::npos);
  CHECK(message_of(geom(1, 4, 5, 5, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 2)).find("oc=3") !=
        std::string::npos);
  CHECK(message_of(geom(1, 1, 2, 5, 1, 3, 3)).find("exceeds") != std::string::npos);
  CHECK(message_of(geom(1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 0, 0, 3, 1)).find("exceeds") !=
        std::string::npos);
  CHECK_THROWS(geom(1, 1, 5, 5, 1, 3, 3, 1, 1, -1).validate(), std::invalid_argument);

  // Products that overflow 64 bits are refused with overflow_error, before any allocation.
  const int64_t huge = int64_t{1} << 40;
  CHECK_THROWS(geom(huge, huge, 4, 4, 1, 1, 1).validate(), std::overflow_error);
  CHECK_THROWS(geom(1, 1, huge, huge, 1, 1, 1).validate(), std::overflow_error);
  // A tiny output of a hugely padded, hugely dilated input: the padded plane itself overflows.
  CHECK_THROWS(geom(1, 1, 5, 5, 1, 2, 2, 1, 1, huge, 0, huge, 0, huge, huge).validate(),
               std::overflow_error);
  CHECK_THROWS(geom(1, 1, 4, 4, 1, 1, 1, 1, 1, std::numeric_limits<int64_t>::max()).validate(),
               std::overflow_error);
  CHECK_THROWS(geom(1, 1, 8, 8, 1, 3, 3, 1, 1, 0, 0, 0, 0, std::numeric_limits<int64_t>::max())
                   .validate(),
               std::overflow_error);
  return check::report("geometry");
}
