"""Whole-network benchmark: one training step of the same network in convcore and PyTorch eager.

``python -m convcore bench --network NAME``. Both libraries start from the same weights and train
on the same random batch: forward, softmax cross-entropy, backward, SGD with momentum. Before
timing, five steps are taken in each from the same start and their losses must agree to 1e-4
relative; then steps are timed in alternating rounds (convcore, torch, convcore, ...) and the
median per step is reported, with images per second.

``--user-matmul`` also times the same network with convcore's :class:`~convcore.nn.Linear`
replaced by a user's own NumPy layer (``np.matmul`` forward and backward), so that NumPy's BLAS
runs between convcore's layers as it does in any program that mixes the two, and reports what
that costs per step. NumPy's BLAS keeps its default thread count outside the training step.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

LOSS_RTOL = 1e-4
CHECK_STEPS = 5
USER_MATMUL = "convcore+np.matmul"


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    input_shape: Tuple[int, int, int]  # (C, H, W)
    channels: Tuple[int, ...]  # conv outputs, each conv 3x3 padding 1 + ReLU + 2x2 max pooling
    classes: int = 10
    batch: int = 32
    # A ResNet instead: channels is then the stem (conv 3x3 + BN + ReLU) and blocks the channels of
    # the residual stages (one basic block each, stride 2 from the second, 1x1 projected shortcut).
    blocks: Tuple[int, ...] = ()

    @property
    def features(self) -> int:
        if self.blocks:
            return self.blocks[-1]
        c, h, w = self.input_shape
        pools = len(self.channels)
        return self.channels[-1] * (h >> pools) * (w >> pools)

    def describe(self) -> str:
        c, h, w = self.input_shape
        if self.blocks:
            return (f"{self.name}: {c}x{h}x{w}, stem Conv {c}->{self.channels[0]} + BN + ReLU, residual stages "
                    f"{'/'.join(map(str, self.blocks))} (two Conv 3x3 + BN each, stride 2 and a 1x1 projection "
                    f"from the second), global average pooling, Linear {self.features}->{self.classes}; "
                    f"batch {self.batch}")
        convs = ", ".join(f"Conv {a}->{b}, pool" for a, b in zip((c,) + self.channels, self.channels))
        return f"{self.name}: {c}x{h}x{w}, {convs}, Linear {self.features}->{self.classes}; batch {self.batch}"


NETWORKS: Dict[str, Network] = {n.name: n for n in (
    Network("digits", (1, 8, 8), (16, 32)),
    Network("lenet-cifar", (3, 32, 32), (32, 64)),
    Network("resnet8", (3, 32, 32), (16,), blocks=(16, 32, 64)),
)}


class NumpyLinear:
    """A user's own fully connected layer in plain NumPy (``np.matmul``), following convcore's
    Module protocol, so that NumPy's BLAS runs between convcore's layers."""

    def __init__(self, layer):
        self.weight_param, self.bias_param = layer.weight_param, layer.bias_param
        self._x: Optional[np.ndarray] = None

    def parameters(self):
        return [self.weight_param, self.bias_param]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def forward(self, x):
        self._x = x
        return np.matmul(x, self.weight_param.data.T) + self.bias_param.data

    def backward(self, dy):
        self.weight_param.grad += np.matmul(dy.T, self._x)
        self.bias_param.grad += dy.sum(axis=0)
        return np.matmul(dy, self.weight_param.data)


def build_convcore(net: Network, seed: int = 0, user_matmul: bool = False):
    from .. import nn

    if net.blocks:
        return _build_resnet(net, seed, user_matmul)
    seeds = np.random.SeedSequence(seed).generate_state(len(net.channels) + 1)
    layers: List = []
    c = net.input_shape[0]
    for out, s in zip(net.channels, seeds):
        layers += [nn.Conv2D(c, out, 3, padding=1, activation="relu", seed=int(s)), nn.MaxPool2D(2)]
        c = out
    linear = nn.Linear(net.features, net.classes, seed=int(seeds[-1]))
    layers += [nn.Flatten(), NumpyLinear(linear) if user_matmul else linear]
    return nn.Sequential(*layers)


def _build_resnet(net: Network, seed: int, user_matmul: bool):
    """Stem conv-BN-ReLU, one basic block per stage (conv-BN-ReLU-conv-BN plus the shortcut, then
    ReLU), global average pooling, Linear."""
    from .. import nn

    seeds = iter(int(v) for v in np.random.SeedSequence(seed).generate_state(3 * len(net.blocks) + 2))

    def conv_bn(cin, cout, k=3, stride=1):
        return [nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, bias=False, seed=next(seeds)),
                nn.BatchNorm2D(cout)]

    c = net.channels[0]
    layers: List = [*conv_bn(net.input_shape[0], c), nn.ReLU()]
    for i, out in enumerate(net.blocks):
        stride = 1 if i == 0 else 2
        block = nn.Sequential(*conv_bn(c, out, stride=stride), nn.ReLU(), *conv_bn(out, out))
        proj = None if stride == 1 and out == c else nn.Sequential(*conv_bn(c, out, k=1, stride=stride))
        layers += [nn.Residual(block, proj), nn.ReLU()]
        c = out
    linear = nn.Linear(c, net.classes, seed=next(seeds))
    layers += [nn.GlobalAvgPool2D(), NumpyLinear(linear) if user_matmul else linear]
    return nn.Sequential(*layers)


def build_torch(model):
    """PyTorch eager twin of a convcore Sequential (nested Sequentials and Residual blocks too),
    with copies of its weights and batch-norm statistics."""
    import torch

    from .. import nn

    class TorchResidual(torch.nn.Module):
        def __init__(self, block, projection):
            super().__init__()
            self.block, self.projection = block, projection

        def forward(self, x):
            return self.block(x) + (x if self.projection is None else self.projection(x))

    def twin(layer) -> List:
        if isinstance(layer, nn.Sequential):
            return [torch.nn.Sequential(*[t for inner in layer for t in twin(inner)])]
        if isinstance(layer, nn.Residual):
            proj = None if layer.projection is None else torch.nn.Sequential(*twin(layer.projection))
            return [TorchResidual(torch.nn.Sequential(*twin(layer.block)), proj)]
        if isinstance(layer, nn.Conv2D):
            t = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                layer.padding, layer.dilation, layer.groups, bias=layer.bias is not None)
            out = [t]
            if layer.activation == "relu":
                out.append(torch.nn.ReLU())
            elif layer.activation not in (None, "identity"):
                raise ValueError(f"no torch twin for activation {layer.activation!r}")
        elif isinstance(layer, nn.BatchNorm2D):
            t = torch.nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, layer.affine,
                                     layer.track_running_stats)
            with torch.no_grad():
                for name, b in layer.named_buffers():
                    getattr(t, name).copy_(torch.from_numpy(np.asarray(b)))
            out = [t]
        elif isinstance(layer, nn.MaxPool2D):
            out = [torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation)]
        elif isinstance(layer, nn.GlobalAvgPool2D):
            out = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
        elif isinstance(layer, nn.Flatten):
            out = [torch.nn.Flatten()]
        elif isinstance(layer, (nn.Linear, NumpyLinear)):
            w = layer.weight_param.data
            t = torch.nn.Linear(w.shape[1], w.shape[0])
            out = [t]
        elif isinstance(layer, nn.ReLU):
            out = [torch.nn.ReLU()]
        else:
            raise TypeError(f"no torch twin for {type(layer).__name__}")
        if getattr(layer, "weight_param", None) is not None:
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(layer.weight_param.data))
                if layer.bias_param is not None:
                    t.bias.copy_(torch.from_numpy(layer.bias_param.data))
        return out

    return torch.nn.Sequential(*[t for layer in model for t in twin(layer)])


def make_batch(net: Network, seed: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((net.batch,) + net.input_shape).astype(np.float32)
    labels = rng.integers(0, net.classes, net.batch)
    return x, labels


def convcore_step(net: Network, x, labels, lr: float, momentum: float, user_matmul: bool = False):
    """A callable that takes one training step of a fresh convcore model and returns the loss."""
    from .. import nn
    from ..optim import SGD

    model = build_convcore(net, user_matmul=user_matmul)
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)

    def step() -> float:
        return float(nn.train_step(model, loss_fn, opt, x, labels)[0])

    return model, step


def torch_step(model, x, labels, lr: float, momentum: float):
    import torch

    tmodel = build_torch(model)
    opt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> float:
        opt.zero_grad()
        out = tmodel(xt)
        loss = loss_fn(out, yt)
        loss.backward()
        opt.step()
        int((out.argmax(1) == yt).sum())  # convcore's train_step counts the correct predictions
        return loss.item()

    return step


def _minor_faults() -> int:
    """Minor page faults of this process so far (fresh memory touched for the first time)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _median_ms(samples: List[float]) -> float:
    return 1e3 * statistics.median(samples)


def run(net_name: str, threads: int, repeat: int = 7, steps: int = 20, user_matmul: bool = False,
        use_torch: bool = True, log: Callable = print) -> dict:
    """Times one training step of ``net_name`` in convcore (and PyTorch). Returns the figures."""
    import convcore as cc

    net = NETWORKS[net_name]
    lr, momentum = 0.01, 0.9
    x, labels = make_batch(net)
    cc.set_num_threads(threads)
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            log("PyTorch is not installed: timing convcore only")
    if torch is not None:
        torch.set_num_threads(threads)

    fns: Dict[str, Callable[[], float]] = {}
    model, fns["convcore"] = convcore_step(net, x, labels, lr, momentum)
    if user_matmul:
        _, fns[USER_MATMUL] = convcore_step(net, x, labels, lr, momentum, user_matmul=True)
    check = None
    if torch is not None:
        fns["torch"] = torch_step(model, x, labels, lr, momentum)
        losses = {k: [float(fn()) for _ in range(CHECK_STEPS)] for k, fn in fns.items()}
        rel = max(abs(a - b) / max(abs(b), 1e-30) for k in fns if k != "torch"
                  for a, b in zip(losses[k], losses["torch"]))
        check = {**losses, "max_rel": rel, "ok": bool(rel <= LOSS_RTOL)}
        if not check["ok"]:
            return {"network": net_name, "check": check}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    faults: Dict[str, int] = {k: 0 for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            f0 = _minor_faults()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            samples[k].append((time.perf_counter() - t0) / steps)
            faults[k] += _minor_faults() - f0
    ms = {k: _median_ms(v) for k, v in samples.items()}
    result = {"network": net_name, "description": net.describe(), "user_matmul": user_matmul,
              "threads": threads, "batch": net.batch, "ms_per_step": ms,
              "images_per_s": {k: net.batch / (v * 1e-3) for k, v in ms.items()},
              "page_faults_per_step": {k: v / (repeat * steps) for k, v in faults.items()},
              "samples_ms": {k: [1e3 * s for s in v] for k, v in samples.items()}, "check": check}
    if "torch" in ms:
        result["speedup"] = {k: ms["torch"] / v for k, v in ms.items() if k != "torch"}
    if user_matmul:
        result["user_matmul_slowdown"] = ms[USER_MATMUL] / ms["convcore"] - 1
    return result


def format_result(r: dict) -> str:
    if "ms_per_step" not in r:
        c = r["check"]
        return (f"{r['network']}: losses disagree (max relative difference {c['max_rel']:.2e} > {LOSS_RTOL}): "
                f"convcore {c['convcore']}, torch {c['torch']}")
    w = max(len(k) for k in r["ms_per_step"])
    lines = [r["description"],
             f"{'':<{w}} {'ms/step':>9} {'images/s':>10} {'page faults/step':>17} {'torch/this':>11}"]
    for k, v in r["ms_per_step"].items():
        speed = r.get("speedup", {}).get(k)
        lines.append(f"{k:<{w}} {v:>9.3f} {r['images_per_s'][k]:>10.0f} {r['page_faults_per_step'][k]:>17.1f} "
                     + (f"{speed:>10.2f}x" if speed else f"{'':>11}"))
    if r.get("check"):
        lines.append(f"losses of the first {CHECK_STEPS} steps agree to {r['check']['max_rel']:.1e} (relative)")
    if "user_matmul_slowdown" in r:
        lines.append(f"{USER_MATMUL}: the classifier is the user's own NumPy layer (np.matmul between convcore's "
                     f"layers): {100 * r['user_matmul_slowdown']:+.1f} % per step")
    return "\n".join(lines)


def main(names: Sequence[str], args, log: Callable = print) -> int:
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        log(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORKS)}")
        return 2
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        return _run_networks(names, args, log)
    finally:  # run() sets both libraries' thread counts
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)


def _run_networks(names: Sequence[str], args, log: Callable) -> int:
    results, failed = [], False
    for name in names:
        r = run(name, args.threads, args.repeat, args.steps, user_matmul=args.user_matmul,
                use_torch=not args.no_torch, log=log)
        failed |= "ms_per_step" not in r
        log(format_result(r))
        results.append(r)
    if args.json:
        import datetime
        import json

        import types

        from .report import _cpuinfo, machine_info

        torch = sys.modules.get("torch")
        # NumPy's BLAS keeps its own thread count here (outside the training steps).
        machine = machine_info(args.threads, torch, types.SimpleNamespace(done=False, how="unchanged"))
        cpu = _cpuinfo()
        machine["cpu_family"], machine["avx512f"] = cpu["family"], "avx512f" in cpu["flags"]
        with open(args.json, "w") as f:
            json.dump({"schema": "convcore-bench-network/1",
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "argv": getattr(args, "argv", None), "machine": machine, "networks": results}, f, indent=1)
    return 1 if failed else 0
