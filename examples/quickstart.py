"""The tutorial's three steps on one layer, checked against the plain-NumPy reference."""

import numpy as np

import convcore as cc
from convcore import reference as ref

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 7, 7))             # input (N, C, H, W)
w = rng.standard_normal((4, 3, 3, 3))             # weight (out_channels, in_channels, kh, kw)
b = np.zeros(4)                                   # bias (out_channels,)

y = cc.conv2d(x, w, b, stride=2, padding=1)       # forward: (2, 4, 4, 4)
delta = rng.standard_normal(y.shape)              # dE/dy, from the layer above

# 1. Propagate the error: zero insertion for the stride, padding, 180-degree flipped kernels.
dx = cc.conv2d_input(x.shape, w, delta, stride=2, padding=1, method="flip")
# 2. Gradients of W and b, added to the gradient buffers.
dw, db = np.zeros_like(w), np.zeros_like(b)
cc.conv2d_weight(x, w.shape, delta, stride=2, padding=1, out=dw, accumulate=True)
cc.conv2d_bias(delta, out=db, accumulate=True)

pads, stride = (1, 1, 1, 1), (2, 2)
print("shapes: y", y.shape, " dx", dx.shape, " dw", dw.shape, " db", db.shape)
print("dx == tutorial steps in NumPy:",
      np.allclose(dx, ref.conv2d_backward_input(delta, w, x.shape, stride, pads)))
print("dw == NumPy reference:      ",
      np.allclose(dw, ref.conv2d_backward_weight(x, delta, w.shape, stride, pads)))

# 3. Update W and b (in place).
cc.sgd_update(w, dw, lr=0.1)
cc.sgd_update(b, db, lr=0.1)
print("bias after one step:", np.round(b, 3))
