"""``python -m convcore demo``: train a small CNN on scikit-learn's handwritten digits.

The 1797 real 8x8 digits of :func:`sklearn.datasets.load_digits` (shipped with scikit-learn, no
download) are scaled to [0, 1] and split into a training and a held-out test set. A LeNet-style
network — two convolution + max-pooling stages and a linear classifier — or, with ``--model
resnet``, a small ResNet (batch norm, residual stages, global average pooling) is trained with SGD
and momentum; a progress bar shows each epoch's loss and accuracy. At the end the test accuracy and
the wall time are printed, and, when matplotlib is installed, a PNG with the loss and accuracy
curves and a grid of test digits with their predictions is written. The same seed gives the same
run, whatever the number of threads. With ``--distributed``, under ``mpiexec -n N``, the ranks
share every batch (:mod:`convcore.distributed`) and rank 0 reports.

Needs the ``demo`` extra: ``pip install "convcore[demo]"`` (scikit-learn, tqdm, matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from . import nn
from .optim import SGD
from ._public import public_dir as _public_dir

__all__ = ["add_arguments", "build_model", "build_resnet", "load_data", "main", "run"]
__dir__ = _public_dir(globals())

INSTALL_HINT = 'pip install "convcore[demo]"'
# module name -> package name on PyPI
REQUIRED = {"sklearn": "scikit-learn", "tqdm": "tqdm"}
PLOT_FILE = "convcore_demo.png"
MODEL_FILE = "convcore_demo.npz"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be >= 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value) or value < 0:
        msg = f"must be finite and >= 0, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        msg = f"must be between 0 and 1, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the demo's options to ``parser`` (used by ``python -m convcore demo``)."""
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet",
                        help="lenet (default): two convolution + max-pooling stages; resnet: a stem, "
                             "two residual stages with batch norm, global average pooling")
    parser.add_argument("--epochs", type=_positive_int, default=12, help="passes over the training set (default 12)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="images per SGD step (default 32)")
    parser.add_argument("--lr", type=_non_negative_float, default=0.05, help="initial learning rate, lowered along a cosine over the epochs (default 0.05)")
    parser.add_argument("--momentum", type=_non_negative_float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=_non_negative_float, default=1e-4,
                        help="L2 weight decay on weights, not biases (default 1e-4)")
    parser.add_argument("--micro-batches", type=_positive_int, default=1,
                        help="split each batch into this many pieces and accumulate their gradients "
                             "(same update, less memory; default 1)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for the native layers (default: convcore's default, all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the shuffling and the initial weights (default 0)")
    parser.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of the images held out for testing (default 0.2)")
    parser.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images (quick runs)")
    parser.add_argument("--out", default=".", help="folder for the PNG and the saved parameters (default: current folder)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument("--save", action="store_true", help=f"also save the trained parameters to OUT/{MODEL_FILE}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars: one line per epoch instead")
    parser.add_argument("--distributed", action="store_true",
                        help="train data-parallel across the ranks of an MPI job: run under "
                             "'mpiexec -n N'; each rank takes 1/N of every batch, rank 0 prints "
                             "and writes the files (needs convcore[mpi])")
    return parser


def _missing(modules: Dict[str, str]) -> List[str]:
    """PyPI names of the modules that cannot be imported."""
    missing = []
    for module, package in modules.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def load_data(seed: int, test_fraction: float = 0.2, limit: Optional[int] = None):
    """The digits as ``(x_train, y_train, x_test, y_test)``: float32 ``(N, 1, 8, 8)`` in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = labels.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def build_model(seed: int) -> nn.Sequential:
    """Conv(1->16, 3x3, ReLU) - MaxPool 2 - Conv(16->32, 3x3, ReLU) - MaxPool 2 - Linear(128->10)."""
    s = np.random.SeedSequence(seed).generate_state(3)
    return nn.Sequential(
        nn.Conv2D(1, 16, 3, padding=1, activation="relu", seed=int(s[0])),
        nn.MaxPool2D(2),
        nn.Conv2D(16, 32, 3, padding=1, activation="relu", seed=int(s[1])),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10, seed=int(s[2])),
    )


def build_resnet(seed: int) -> nn.Sequential:
    """A small ResNet for 8x8 digits: stem Conv(1->16, 3x3) - BN - ReLU; a residual stage of
    two 3x3 convolutions at 16 channels; a stage down to 4x4 at 32 channels (projected shortcut:
    1x1 convolution, stride 2, BN); global average pooling; Linear(32->10)."""
    s = iter(int(v) for v in np.random.SeedSequence(seed).generate_state(7))

    def conv_bn(cin, cout, k=3, stride=1):
        return [nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, bias=False, seed=next(s)),
                nn.BatchNorm2D(cout)]

    return nn.Sequential(
        *conv_bn(1, 16), nn.ReLU(),
        nn.Residual(nn.Sequential(*conv_bn(16, 16), nn.ReLU(), *conv_bn(16, 16))), nn.ReLU(),
        nn.Residual(nn.Sequential(*conv_bn(16, 32, stride=2), nn.ReLU(), *conv_bn(32, 32)),
                    projection=nn.Sequential(*conv_bn(16, 32, k=1, stride=2))), nn.ReLU(),
        nn.GlobalAvgPool2D(),
        nn.Linear(32, 10, seed=next(s)),
    )


MODELS = {"lenet": build_model, "resnet": build_resnet}


def predict(model: nn.Sequential, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Predicted classes (argmax of the logits), in evaluation mode (batch norm on its running
    statistics); the model is back in training mode afterwards."""
    model.eval()
    try:
        return np.concatenate([model.forward(x[i:i + batch_size]).argmax(axis=1)
                               for i in range(0, len(x), batch_size)])
    finally:
        model.train()


def _plot(path: str, history: Dict[str, List[float]], x_test, y_test, pred) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.3])
    ax_loss, ax_acc = top.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Softmax cross-entropy")
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, 100 * np.asarray(history["train_acc"]), marker="o", label="training")
    ax_acc.plot(epochs, 100 * np.asarray(history["test_acc"]), marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()

    rows, cols = 3, 12
    # The mistakes first, then the other test digits in order.
    wrong = np.flatnonzero(pred != y_test)
    order = np.concatenate([wrong, np.flatnonzero(pred == y_test)])[:rows * cols]
    bottom.suptitle(f"Test digits with their predictions: {len(wrong)} of {len(y_test)} wrong "
                    "(red, first; true label in brackets)")
    axes = bottom.subplots(rows, cols).ravel()
    for ax, i in zip(axes, order):
        ax.imshow(x_test[i, 0], cmap="gray_r", vmin=0, vmax=1)
        ok = pred[i] == y_test[i]
        ax.set_title(str(pred[i]) if ok else f"{pred[i]} ({y_test[i]})", color="black" if ok else "red",
                     fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.savefig(path, dpi=100)


def run(args: argparse.Namespace) -> int:
    """Runs the demo with parsed options; returns the exit status."""
    if not getattr(args, "distributed", False):
        return _run(args, None)
    try:
        import convcore.distributed as dist
    except ImportError as e:
        print(f"convcore demo --distributed: {e}", file=sys.stderr)
        return 2
    # An error on one rank stops them all; only rank 0 prints (errors still reach stderr).
    with dist.abort_on_error(), contextlib.redirect_stdout(sys.stdout if dist.is_main() else io.StringIO()):
        return _run(args, dist)


def _run(args: argparse.Namespace, dist) -> int:
    """The demo; ``dist`` is ``convcore.distributed`` for a data-parallel run, else None."""
    main_rank = dist is None or dist.is_main()
    missing = _missing(REQUIRED)
    if missing:
        print(f"convcore demo needs {' and '.join(missing)}, not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    plot = not args.no_plot
    if plot and _missing({"matplotlib": "matplotlib"}):
        print(f"matplotlib is not installed, no plot will be written ({INSTALL_HINT})", file=sys.stderr)
        plot = False
    from tqdm import tqdm

    import convcore

    if args.threads is not None:
        convcore.set_num_threads(args.threads)
    elif dist is not None:  # the ranks on this host share its cores
        convcore.set_num_threads(max(1, convcore.get_num_threads() // dist.local_size()))
    x_train, y_train, x_test, y_test = load_data(args.seed, args.test_fraction, args.limit)
    if args.micro_batches > args.batch_size:
        print(f"convcore demo: --micro-batches ({args.micro_batches}) must not exceed --batch-size "
              f"({args.batch_size})", file=sys.stderr)
        return 2
    which = "" if args.model == "lenet" else f"{args.model}, "
    print(f"digits: {which}{len(x_train)} training and {len(x_test)} test images (8x8); {args.epochs} epochs, "
          f"batch {args.batch_size} in {args.micro_batches} micro-batch(es), lr {args.lr}, "
          f"momentum {args.momentum}, {convcore.get_num_threads()} thread(s)"
          f"{'' if dist is None else f' x {dist.world_size()} rank(s)'}, seed {args.seed}")
    if plot:
        print(f"the plot will be written to {os.path.join(args.out, PLOT_FILE)} (--out DIR to change, "
              f"--no-plot to skip)")

    start = time.perf_counter()
    model = MODELS[args.model](args.seed)
    loss_fn = nn.SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if dist is not None:
        dist.broadcast_parameters(model)
        # Each bucket's reduction starts during the last micro-batch's backward pass.
        reducer = dist.DistributedOptimizer(optimizer, model, overlap=True,
                                            backward_passes_per_step=args.micro_batches)
    shuffle = np.random.default_rng([args.seed, 1])
    history: Dict[str, List[float]] = {"loss": [], "train_acc": [], "test_acc": []}
    n = len(x_train)
    steps = -(-n // args.batch_size)
    width = len(str(args.epochs))
    for epoch in range(1, args.epochs + 1):
        # Cosine schedule: the learning rate falls from lr to near 0 over the run (steadier end).
        optimizer.lr = 0.5 * args.lr * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))
        order = shuffle.permutation(n)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(total=steps, desc=f"epoch {epoch:>{width}}/{args.epochs}", unit="batch",
                   disable=args.no_progress or not main_rank, leave=True, dynamic_ncols=True)
        for step in range(steps):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            micro = min(args.micro_batches, len(batch))
            if dist is None:
                loss, ok = nn.train_step(model, loss_fn, optimizer, x_train[batch], y_train[batch], micro)
            else:  # this rank's share of the batch; loss and ok are the whole batch's
                mine = dist.shard(batch)
                loss, ok = dist.train_step(model, loss_fn, reducer, x_train[mine], y_train[mine], micro)
            total_loss += loss * len(batch)
            correct += ok
            seen += len(batch)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100 * correct / seen:.1f}%", refresh=False)
            bar.update(1)
        test_acc = float(np.mean(predict(model, x_test) == y_test)) if main_rank else 0.0
        history["loss"].append(total_loss / seen)
        history["train_acc"].append(correct / seen)
        history["test_acc"].append(test_acc)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100 * correct / seen:.1f}%",
                        test=f"{100 * test_acc:.1f}%")
        bar.close()
        if args.no_progress and main_rank:  # one line per epoch, so that logs keep the learning curve
            print(f"epoch {epoch:>{width}}/{args.epochs}: loss {total_loss / seen:.4f}, "
                  f"acc {100 * correct / seen:.1f}%, test {100 * test_acc:.1f}%")
    if not main_rank:  # every rank holds the same model; rank 0 reports and writes
        return 0
    pred = predict(model, x_test)
    elapsed = time.perf_counter() - start
    accuracy = float(np.mean(pred == y_test))
    print(f"test accuracy {100 * accuracy:.1f}% ({len(y_test)} images) in {elapsed:.1f} s")

    if plot or args.save:
        os.makedirs(args.out, exist_ok=True)
    if args.save:
        path = os.path.join(args.out, MODEL_FILE)
        model.save(path)
        print(f"parameters saved to {path}")
    if plot:
        path = os.path.join(args.out, PLOT_FILE)
        _plot(path, history, x_test, y_test, pred)
        print(f"plot written to {path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m convcore demo [options]``: parses ``argv`` and runs the demo."""
    parser = argparse.ArgumentParser(prog="convcore demo", description=__doc__.split("\n\n")[0])
    return run(add_arguments(parser).parse_args(argv))
