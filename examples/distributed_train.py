"""Data-parallel training with convcore.distributed: an ordinary training loop plus two lines.

    mpiexec -n 2 python examples/distributed_train.py     # any number of ranks; also runs alone

Every rank loads the digits and builds the network; each trains on its share of every batch of
64, and the optimiser averages the gradients across the ranks before each step, so the printed
accuracy is the same for 1, 2 or 3 ranks (to float rounding). Needs convcore[mpi,demo].
"""

import numpy as np
from sklearn.datasets import load_digits

import convcore as cc
import convcore.distributed as dist
from convcore import nn

images, labels = load_digits(return_X_y=True)
x = (images / 16).astype(np.float32).reshape(-1, 1, 8, 8)
y = labels.astype(np.int64)

model = nn.Sequential(nn.Conv2D(1, 16, 3, padding=1, activation="relu", seed=1), nn.MaxPool2D(2),
                      nn.Flatten(), nn.Linear(16 * 4 * 4, 10, seed=2))
dist.broadcast_parameters(model)                                                  # extra line 1
opt = dist.DistributedOptimizer(cc.SGD(model.parameters(), lr=0.1, momentum=0.9), model)  # line 2
loss_fn = nn.SoftmaxCrossEntropy()

sampler = dist.DistributedSampler(len(x), shuffle=True, seed=0)
for epoch in range(3):
    sampler.set_epoch(epoch)
    for idx in sampler.batches(64):  # this rank's share of each global batch of 64
        nn.train_step(model, loss_fn, opt, x[idx], y[idx])
    if dist.is_main():
        accuracy = np.mean(model.forward(x).argmax(axis=1) == y)
        print(f"epoch {epoch}: accuracy on all {len(x)} digits {100 * accuracy:.2f}% "
              f"({dist.world_size()} rank(s))")
