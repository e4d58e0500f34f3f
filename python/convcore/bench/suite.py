"""The benchmark suite: the convolution shapes, their FLOP counts and their random inputs."""

from __future__ import annotations

import dataclasses

import numpy as np

OPS = ("fwd", "bwd_input", "bwd_weight")


@dataclasses.dataclass(frozen=True)
class Shape:
    """One convolution of the suite (square kernel, symmetric padding)."""

    name: str
    mb: int
    ic: int
    ih: int
    iw: int
    oc: int
    k: int
    stride: int
    pad: int
    groups: int = 1

    @property
    def oh(self) -> int:
        return (self.ih + 2 * self.pad - self.k) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.iw + 2 * self.pad - self.k) // self.stride + 1

    @property
    def flops(self) -> int:
        """Useful floating-point operations of one op (forward, backward-input or backward-weight)."""
        return 2 * self.mb * self.oc * self.oh * self.ow * (self.ic // self.groups) * self.k * self.k

    @property
    def canonical(self) -> str:
        g = f"g{self.groups}" if self.groups != 1 else ""
        return (f"{g}mb{self.mb}ic{self.ic}ih{self.ih}iw{self.iw}oc{self.oc}kh{self.k}kw{self.k}"
                f"sh{self.stride}sw{self.stride}ph{self.pad}pw{self.pad}")


SUITE = [
    Shape("lenet1", 64, 1, 28, 28, 6, 5, 1, 0),
    Shape("lenet2", 64, 6, 12, 12, 16, 5, 1, 0),
    Shape("small1", 1, 3, 32, 32, 16, 3, 1, 1),
    Shape("small2", 8, 16, 32, 32, 32, 3, 1, 1),
    Shape("res3x3", 8, 64, 56, 56, 64, 3, 1, 1),
    Shape("res3x3s2", 8, 128, 28, 28, 128, 3, 2, 1),
    Shape("res3x3c256", 8, 256, 14, 14, 256, 3, 1, 1),
    Shape("res1x1", 8, 64, 56, 56, 256, 1, 1, 0),
    Shape("stem7x7s2", 8, 3, 224, 224, 64, 7, 2, 3),
    Shape("depthwise", 8, 128, 28, 28, 128, 3, 1, 1, groups=128),
    Shape("tiny", 1, 1, 5, 5, 1, 3, 1, 0),
]
SHAPES = {s.name: s for s in SUITE}
FLOAT64_SHAPES = ("lenet2", "res3x3")
QUICK_SHAPES = ("lenet1", "lenet2", "small1", "small2", "res3x3s2", "depthwise", "tiny")
OVERHEAD_SHAPE = "tiny"


def make_inputs(shape: Shape, dtype: str, seed: int = 0):
    """Random ``x, w, b, dy`` (standard normal) for ``shape``: the same values in every process."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.mb, shape.ic, shape.ih, shape.iw)).astype(dtype)
    w = rng.standard_normal((shape.oc, shape.ic // shape.groups, shape.k, shape.k)).astype(dtype)
    b = rng.standard_normal(shape.oc).astype(dtype)
    dy = rng.standard_normal((shape.mb, shape.oc, shape.oh, shape.ow)).astype(dtype)
    return x, w, b, dy
