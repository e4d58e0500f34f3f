"""Transposed and 1-D convolutions and padding modes, with a gradient check by PyTorch's rules."""

import numpy as np

import convcore as cc

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 8, 5, 5), dtype=np.float32)   # (N, in_channels, H, W)
w = rng.standard_normal((8, 4, 3, 3), dtype=np.float32)   # (in_channels, out_channels/groups, kh, kw)
b = rng.standard_normal(4, dtype=np.float32)

# A transposed convolution upsamples 5x5 to 10x10 ...
y = cc.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
dy = rng.standard_normal(y.shape, dtype=np.float32)
dx, dw, db = cc.conv_transpose2d_backward(x, w, dy, stride=2, padding=1, output_padding=1)
print("conv_transpose2d:", x.shape, "->", y.shape, " grads", dx.shape, dw.shape, db.shape)
# ... and is the input gradient of the convolution it transposes.
back = cc.conv2d_input(y.shape, w, x, stride=2, padding=1)
print("== conv2d_input of the convolution:", np.allclose(y, back + b[:, None, None], atol=1e-5))

# 1-D convolution on (N, C, L), here with circular padding.
sig = rng.standard_normal((2, 3, 16), dtype=np.float32)
k = rng.standard_normal((6, 3, 5), dtype=np.float32)
z = cc.conv1d(sig, k, padding="same", padding_mode="circular")
dsig = cc.conv1d_input(sig.shape, k, np.ones_like(z), padding="same", padding_mode="circular")
print("conv1d:", sig.shape, "->", z.shape, " d(sum)/dx is the kernel sum everywhere:",
      np.allclose(dsig, k.sum(axis=(0, 2))[None, :, None], atol=1e-5))

# The layers: a reflect-padded encoder and a transposed-convolution decoder.
net = cc.nn.Sequential(
    cc.nn.Conv2D(1, 8, 3, stride=2, padding=1, padding_mode="reflect", activation="relu", seed=1),
    cc.nn.ConvTranspose2D(8, 1, 4, stride=2, padding=1, seed=2),
)
img = rng.standard_normal((4, 1, 16, 16), dtype=np.float32)
out = net.forward(img)
grad = net.backward(out - img, input_grad=True)   # the default skips the first dx
print("encoder-decoder:", img.shape, "->", out.shape, " backward", grad.shape)
print(net)
