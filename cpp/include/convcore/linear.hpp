#pragma once
// The fully connected layer on the library's GEMM (the same product as the convolutions), so that
// a network of convcore layers runs on one thread pool:
//
//   forward   y[n x out] = x[n x in] * W[out x in]^T + b          (b broadcast over the rows)
//   backward  dW[out x in] (+)= dy^T * x,  db[out] (+)= sum over rows of dy,  dx[n x in] = dy * W
//
// Row-major, contiguous. Bias, db and dx may be null (no bias; input gradient not wanted).
// With accumulate the weight and bias gradients are added to dw / db, otherwise overwritten.
// Bitwise reproducible for any thread count (the GEMM's k is never split; db sums rows in order).
#include <cstdint>

namespace convcore {

struct LinearShape {
  int64_t n;    // rows (batch), >= 0
  int64_t in;   // input features, >= 1
  int64_t out;  // output features, >= 1
};

// Throws std::invalid_argument when a size is out of range, std::overflow_error when a product
// of sizes does not fit in 64 bits.
void validate_linear(const LinearShape& s, const char* op = "linear");

template <class T>
void linear_forward(const LinearShape& s, const T* x, const T* w, const T* b, T* y);

template <class T>
void linear_backward(const LinearShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                     T* db, bool accumulate);

}  // namespace convcore
