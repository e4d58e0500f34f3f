"""Parameters and the SGD optimiser (the tutorial's third step: update w and b)."""

from __future__ import annotations

from typing import Iterable, List, Optional

import numpy as np

from .functional import sgd_update

__all__ = ["Parameter", "SGD"]


class Parameter:
    """A trainable array with its gradient buffer (same shape and dtype, accumulated into).

    ``data`` is updated in place by the optimiser; ``grad`` is added to by backward passes until
    :meth:`zero_grad`; ``velocity`` is created by a momentum optimiser on first use.
    ``decay`` tells whether weight decay applies (False for biases by default).
    """

    def __init__(self, data: np.ndarray, decay: bool = True, name: str = ""):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)
        self.velocity: Optional[np.ndarray] = None
        self.decay = decay
        self.name = name

    def zero_grad(self) -> None:
        """Sets the gradient to 0 (in place: views of it stay valid)."""
        self.grad.fill(0)

    def __repr__(self) -> str:
        return f"Parameter({self.name or 'unnamed'}, shape={self.data.shape}, dtype={self.data.dtype})"


class SGD:
    """Stochastic gradient descent with momentum and weight decay, through the native update.

    ``v = momentum*v + grad + weight_decay*param; param -= lr*v`` for every parameter (weight
    decay only where ``param.decay``). With momentum 0 this is the tutorial's ``w -= lr*dw``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.params: List[Parameter] = list(params)
        for p in self.params:
            if not isinstance(p, Parameter):
                msg = f"params: expected Parameter objects, got {type(p).__name__}"
                raise TypeError(msg)
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not np.isfinite(value) or value < 0:
                msg = f"{name}: must be finite and >= 0, got {value}"
                raise ValueError(msg)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)

    def step(self) -> None:
        """Applies one update to every parameter from its accumulated gradient."""
        for p in self.params:
            if self.momentum != 0 and p.velocity is None:
                p.velocity = np.zeros_like(p.data)
            sgd_update(p.data, p.grad, self.lr, self.momentum,
                       self.weight_decay if p.decay else 0.0,
                       p.velocity if self.momentum != 0 else None)

    def zero_grad(self) -> None:
        """Zeroes the gradient of every parameter."""
        for p in self.params:
            p.zero_grad()
