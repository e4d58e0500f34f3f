// Conv2dPlan (convcore/plan.hpp): validation, the choice of path and kernel row per op, and the
// executors that run them.
#include "convcore/plan.hpp"

#include <cctype>
#include <sstream>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "convcore/error.hpp"
#include "ops/exec.hpp"
#include "plan/paths.hpp"

namespace convcore {
namespace detail {
namespace {

std::string tile_name(int64_t mr, int64_t nr) { return std::to_string(mr) + "x" + std::to_string(nr); }

// The kernel rows a plan may use: those of isa (every path up to the active one when empty),
// widest ISA first, narrowed to the rows with micro-tile `tile` when it is set.
template <class T>
std::vector<const GemmKernel<T>*> enabled_rows(const std::string& isa, const std::string& tile) {
  std::vector<const GemmKernel<T>*> rows;
  const Isa all[] = {Isa::avx512, Isa::avx2, Isa::generic};
  const auto add = [&rows](Isa i) {
    const KernelRows<T> r = kernel_rows<T>(i);
    for (int t = 0; t < r.count; ++t) rows.push_back(r.rows + t);
  };
  if (!isa.empty()) {
    std::string want;
    for (char ch : isa) want += char(std::tolower(static_cast<unsigned char>(ch)));
    std::string names;
    for (Isa i : all) {
      if (!isa_supported(i)) continue;
      if (want == isa_name(i)) add(i);
      names += std::string(names.empty() ? "" : ", ") + isa_name(i);
    }
    if (rows.empty())
      throw std::invalid_argument("isa: '" + isa + "' is not a kernel path this CPU and build " +
                                  "can run; supported: " + names);
  } else {
    // The portable row is the fallback of CPUs without a SIMD row, never a rival to one: its
    // kernels have no FMA, which the cost model does not price.
    const Isa active = active_isa();
    for (Isa i : all)
      if (isa_supported(i) && int(i) <= int(active) && (i != Isa::generic || rows.empty())) add(i);
  }
  if (tile.empty()) return rows;
  std::vector<const GemmKernel<T>*> kept;
  std::string tiles;
  for (const GemmKernel<T>* k : rows) {
    const std::string name = tile_name(k->mr, k->nr);
    if (name == tile) kept.push_back(k);
    tiles += (tiles.empty() ? "" : ", ") + name;
  }
  if (kept.empty())
    throw std::invalid_argument("tile: '" + tile + "' is not the micro-tile of a kernel row " +
                                "enabled here; tiles: " + tiles);
  return kept;
}

template <class T, class Path, size_t n>
Path choose(const char* op, const PathInfo<Path> (&table)[n], const Conv2dGeometry& g,
            const std::vector<const GemmKernel<T>*>& rows, const std::string& forced,
            const GemmKernel<T>*& row, OpChoice& choice) {
  bool known = forced.empty();
  for (const auto& p : table) known = known || forced == p.name;
  if (!known) {
    std::string names;
    for (const auto& p : table) names += std::string(names.empty() ? "" : ", ") + p.name;
    throw std::invalid_argument(concat(op, ": unknown path '", forced, "'; paths: ", names));
  }
  Path best = table[0].path;
  double best_cost = INFINITY;
  std::string supported;
  for (const auto& p : table) {
    bool any = false;
    for (const GemmKernel<T>* k : rows) {
      const CostContext c = cost_context(g, *k);
      PathEstimate e{p.name, isa_name(k->isa), p.supports(c), 0.0, tile_name(k->mr, k->nr)};
      if (e.supported) {
        e.cost = p.cost(c);
        any = true;
        if ((forced.empty() || forced == p.name) && e.cost < best_cost) {
          best = p.path;
          best_cost = e.cost;
          row = k;
          choice.path = p.name;
          choice.isa = e.isa;
          choice.tile = e.tile;
        }
      }
      choice.candidates.push_back(e);
    }
    if (any) supported += std::string(supported.empty() ? "" : ", ") + p.name;
  }
  if (!std::isfinite(best_cost))
    throw std::invalid_argument(concat(op, ": path '", forced, "' does not support ", g,
                                       "; supported here: ", supported));
  choice.forced = !forced.empty();
  return best;
}

template <class Path, size_t n>
const char* name_of(const PathInfo<Path> (&table)[n], Path path) {
  for (const auto& p : table)
    if (p.path == path) return p.name;
  return "?";
}

}  // namespace

template <class T>
struct PlanImpl {
  PlanImpl(const Conv2dGeometry& geometry, const PlanOptions& options);

  Conv2dGeometry g;
  PlanOptions opt;
  PlanDescription desc;
  std::unique_ptr<ForwardExec<T>> fwd;
  std::unique_ptr<InputExec<T>> bwi;
  std::unique_ptr<WeightExec<T>> bww;
};

template <class T>
PlanImpl<T>::PlanImpl(const Conv2dGeometry& geometry, const PlanOptions& options)
    : g(geometry), opt(options) {
  g.validate("Conv2dPlan");
  const auto rows = enabled_rows<T>(opt.isa, opt.tile);
  std::ostringstream canonical;
  canonical << g;
  desc.geometry = canonical.str();
  desc.dtype = sizeof(T) == 4 ? "float32" : "float64";

  // NHWC activations with one channel (x and y alike) lie in memory exactly as NCHW ones: an op
  // whose path is not forced is then planned and run on the NCHW geometry, with no transposes
  // to skip and no NHWC executor around the NCHW one.
  const bool one_channel = g.layout == Layout::nhwc && g.ic == 1 && g.oc == 1;
  Conv2dGeometry twin = g;
  twin.layout = Layout::nchw;
  const auto geometry_for = [&](const std::string& forced) -> const Conv2dGeometry& {
    return one_channel && forced.empty() ? twin : g;
  };
  const auto note_twin = [&twin](const Conv2dGeometry& used, std::string& detail) {
    if (&used != &twin) return;
    detail = "one channel: the NHWC arrays are the NCHW ones, planned as NCHW" +
             (detail.empty() ? std::string() : "; " + detail);
  };

  const GemmKernel<T>* row = rows.front();
  const Conv2dGeometry& gf = geometry_for(opt.forward);
  const ForwardPath fp = choose("forward", kForwardPaths, gf, rows, opt.forward, row, desc.forward);
  fwd = std::make_unique<ForwardExec<T>>(gf, fp, *row);
  if (fwd->nchw)
    desc.forward.detail = std::string("NCHW path: ") + name_of(kForwardPaths, fwd->nchw->path);
  note_twin(gf, desc.forward.detail);

  const Conv2dGeometry& gi = geometry_for(opt.backward_input);
  const InputPath ip =
      choose("backward_input", kInputPaths, gi, rows, opt.backward_input, row, desc.backward_input);
  ForwardPath flipped_path = ForwardPath::packed;
  if (ip == InputPath::flip) {
    flipped_path = cheapest_forward(cost_context(gi.flipped(), *row));
    desc.backward_input.detail = std::string("flipped forward: ") +
                                 name_of(kForwardPaths, flipped_path);
  }
  bwi = std::make_unique<InputExec<T>>(gi, ip, *row, flipped_path);
  if (bwi->nchw)
    desc.backward_input.detail = std::string("NCHW path: ") + name_of(kInputPaths, bwi->nchw->path);
  note_twin(gi, desc.backward_input.detail);

  const Conv2dGeometry& gw = geometry_for(opt.backward_weight);
  const WeightPath wp = choose("backward_weight", kWeightPaths, gw, rows, opt.backward_weight, row,
                               desc.backward_weight);
  bww = std::make_unique<WeightExec<T>>(gw, wp, *row);
  if (bww->nchw)
    desc.backward_weight.detail =
        std::string("NCHW path: ") + name_of(kWeightPaths, bww->nchw->path);
  note_twin(gw, desc.backward_weight.detail);

  desc.backward_bias.path = "lanes";
  desc.backward_bias.isa = "generic";
  desc.backward_bias.candidates.push_back({"lanes", "generic", true, 0.0, ""});
}

}  // namespace detail

const char* plan_op_name(PlanOp op) {
  switch (op) {
    case PlanOp::forward: return "forward";
    case PlanOp::backward_input: return "backward_input";
    case PlanOp::backward_weight: return "backward_weight";
    case PlanOp::backward_bias: return "backward_bias";
  }
  return "unknown";
}

template <class T>
Conv2dPlan<T>::Conv2dPlan(const Conv2dGeometry& g, const PlanOptions& options)
    : impl_(std::make_unique<detail::PlanImpl<T>>(g, options)) {}
template <class T>
Conv2dPlan<T>::~Conv2dPlan() = default;
template <class T>
Conv2dPlan<T>::Conv2dPlan(Conv2dPlan&&) noexcept = default;
template <class T>
Conv2dPlan<T>& Conv2dPlan<T>::operator=(Conv2dPlan&&) noexcept = default;

template <class T>
const Conv2dGeometry& Conv2dPlan<T>::geometry() const {
  return impl_->g;
}
template <class T>
const PlanOptions& Conv2dPlan<T>::options() const {
  return impl_->opt;
}

template <class T>
void Conv2dPlan<T>::forward(const T* x, const T* w, const T* bias, T* y) const {
  impl_->fwd->run(impl_->g.mb, x, w, bias, y, impl_->opt.activation);
}
template <class T>
void Conv2dPlan<T>::backward_input(const T* w, const T* dy, T* dx) const {
  impl_->bwi->run(w, dy, dx);
}
template <class T>
void Conv2dPlan<T>::backward_weight(const T* x, const T* dy, T* dw, bool accumulate) const {
  impl_->bww->run(x, dy, dw, accumulate);
}
template <class T>
void Conv2dPlan<T>::backward_bias(const T* dy, T* db, bool accumulate) const {
  detail::backward_bias_run(impl_->g, dy, db, accumulate);
}

template <class T>
PlanDescription Conv2dPlan<T>::describe() const {
  return impl_->desc;
}

template <class T>
std::vector<std::string> Conv2dPlan<T>::path_names(PlanOp op) {
  std::vector<std::string> names;
  const auto add = [&](const auto& table) {
    for (const auto& p : table) names.emplace_back(p.name);
  };
  switch (op) {
    case PlanOp::forward: add(detail::kForwardPaths); break;
    case PlanOp::backward_input: add(detail::kInputPaths); break;
    case PlanOp::backward_weight: add(detail::kWeightPaths); break;
    case PlanOp::backward_bias: names.emplace_back("lanes"); break;
  }
  return names;
}

template class Conv2dPlan<float>;
template class Conv2dPlan<double>;

}  // namespace convcore
