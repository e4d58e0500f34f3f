#pragma once
// Batch normalisation over (N, C, H*W) — or (N, H*W, C) in NHWC — as torch.nn.BatchNorm2d. Per
// channel c, over its M = N*H*W values:
//   y = (x - mean) * invstd * gamma + beta,    invstd = 1 / sqrt(var + eps)
// With batch statistics (training, or no running statistics): mean and the biased variance of
// the batch; the running statistics, when given, move by `momentum` towards the batch mean and
// the UNBIASED variance (var * M / (M - 1)), as PyTorch's. Otherwise the running statistics are
// used as they are. gamma/beta null means 1/0 (affine=False).
//
// NCHW (x[n][c][hw]) runs one channel per parallel item. NHWC (x[n][hw][c]) is a [M x C] matrix:
// every loop runs along rows, over the channels (vectorised, a few rows at a time when C is
// small); the statistics are column sums in double over fixed blocks of rows, added block after
// block. Both orders of summation are fixed,
// so results are bitwise identical for any number of threads; the two layouts agree to rounding.
#include <cstdint>

#include "convcore/geometry.hpp"

namespace convcore {

struct BatchNormShape {
  int64_t n = 0, c = 0, hw = 0;  // batch, channels, spatial size (H*W)
  Layout layout = Layout::nchw;  // of x, y, dy and dx
};

// Throws std::invalid_argument (touching nothing) on a bad shape, eps <= 0 or not finite,
// momentum outside [0, 1], M < 2 with batch statistics, or a missing running statistic without
// batch statistics. save_mean / save_invstd (c values each) receive the statistics used.
template <class T>
void batchnorm_forward(const BatchNormShape& s, const T* x, const T* gamma, const T* beta,
                       bool batch_stats, double eps, double momentum, T* running_mean,
                       T* running_var, T* save_mean, T* save_invstd, T* y);

// Gradients of batchnorm_forward from the statistics it saved. dgamma and dbeta (either may be
// null) are added to with accumulate, else overwritten; dx (may be null) is always overwritten:
//   batch statistics: dx = gamma*invstd * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M)
//   fixed statistics: dx = gamma*invstd * dy
template <class T>
void batchnorm_backward(const BatchNormShape& s, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, bool batch_stats, T* dx,
                        T* dgamma, T* dbeta, bool accumulate);

}  // namespace convcore
